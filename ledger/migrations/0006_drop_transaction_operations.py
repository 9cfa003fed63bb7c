"""`Transaction.operations` (JSON) is gone: its rows are `ledger_posting` (0005)."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('ledger', '0005_postings'),
    ]

    operations = [
        migrations.RemoveField(
            model_name='transaction',
            name='operations',
        ),
    ]
