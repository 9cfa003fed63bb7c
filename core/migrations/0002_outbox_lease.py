"""The one outbox: an explicit status (pending / done / dead) and a lease (owner, expiry), so a
dispatcher claims a message in a short committed transaction and runs its handlers with none
open."""

import django.utils.timezone
from django.db import migrations, models


def forwards(apps, schema_editor):
    OutboxMessage = apps.get_model("core", "OutboxMessage")
    OutboxMessage.objects.filter(done_at__isnull=False).update(status="done")
    OutboxMessage.objects.filter(dead_at__isnull=False).update(status="dead")


def backwards(apps, schema_editor):
    """The old table has no status column: `done_at` / `dead_at` already say it."""


class Migration(migrations.Migration):
    dependencies = [("core", "0001_initial")]

    operations = [
        migrations.RemoveIndex(model_name="outboxmessage", name="outbox_message_due"),
        migrations.RenameField(model_name="outboxmessage", old_name="dispatched_at", new_name="done_at"),
        migrations.RenameField(model_name="outboxmessage", old_name="failed_at", new_name="dead_at"),
        migrations.AlterField(
            model_name="outboxmessage",
            name="dead_at",
            field=models.DateTimeField(blank=True, help_text="Gave up after the maximum attempts or age.", null=True),
        ),
        migrations.AddField(
            model_name="outboxmessage",
            name="status",
            field=models.CharField(choices=[("pending", "Pending"), ("done", "Done"), ("dead", "Dead (gave up)")], default="pending", max_length=8),
        ),
        migrations.AddField(
            model_name="outboxmessage",
            name="lease_owner",
            field=models.CharField(blank=True, default="", help_text="The dispatcher running it now.", max_length=100),
        ),
        migrations.AddField(
            model_name="outboxmessage",
            name="lease_expires_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="outboxmessage",
            name="created_at",
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
        migrations.AlterField(
            model_name="outboxmessage",
            name="attempts",
            field=models.PositiveIntegerField(default=0, help_text="Claims so far (a claim whose worker died counts)."),
        ),
        migrations.AlterField(
            model_name="outboxmessage",
            name="next_attempt_at",
            field=models.DateTimeField(help_text="When a dispatcher may claim it next (the lease expiry while leased)."),
        ),
        migrations.RunPython(forwards, backwards),
        migrations.AddIndex(
            model_name="outboxmessage",
            index=models.Index(condition=models.Q(("status", "pending")), fields=["next_attempt_at"], name="outbox_message_due"),
        ),
    ]
