"""Pay orders made while the sandbox chain was on are test mode for good (core.livemode): 0004
gave every existing order `livemode=True`, including the sandbox's (paid on the sandbox chain,
to addresses whose keys were thrown away). Run on a sandbox deployment, this marks them test
mode, so they can never pass for live orders if the deployment later goes live; on a live
deployment it changes nothing."""

from django.db import migrations

from core.livemode import deployment_livemode


def sandbox_orders_are_test_mode(apps, schema_editor):
    if deployment_livemode():
        return
    apps.get_model("payorders", "PayOrder").objects.filter(livemode=True).update(livemode=False)


class Migration(migrations.Migration):

    dependencies = [
        ("payorders", "0004_payorder_livemode"),
    ]

    operations = [
        migrations.RunPython(sandbox_orders_are_test_mode, migrations.RunPython.noop),
    ]
