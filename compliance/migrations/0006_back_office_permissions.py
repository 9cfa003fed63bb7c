"""The staff roles' permissions over the rest of the back office (SPEC 8).

- compliance officer: reads the ledger, pay orders and payouts; edits customers (KYC levels) and
  suspends/activates wallets (the wallet admin's actions need `ledger.change_wallet`).
- auditor: reads all of it, changes nothing.
- support: reads customers, wallets, transactions and pay orders to answer questions.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEW_ALL = [
    ("accounts", "view_customer"), ("accounts", "view_organization"),
    ("ledger", "view_asset"), ("ledger", "view_wallet"), ("ledger", "view_transaction"), ("ledger", "view_entry"),
    ("ledger", "view_hold"),
    ("payorders", "view_payorder"), ("payorders", "view_payorderpayment"), ("payorders", "view_refund"),
    ("wallets", "view_payout"), ("wallets", "view_exchangequote"),
]
GROUP_PERMISSIONS = {
    "compliance officer": VIEW_ALL + [("accounts", "change_customer"), ("ledger", "change_wallet")],
    "auditor": VIEW_ALL,
    "support": [("accounts", "view_customer"), ("ledger", "view_wallet"), ("ledger", "view_transaction"),
                ("ledger", "view_entry"), ("payorders", "view_payorder")],
}


def grant(apps, schema_editor):
    for label in ("accounts", "ledger", "payorders", "wallets"):
        app_config = apps.get_app_config(label)
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, perms in GROUP_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        for app_label, codename in perms:
            permission = Permission.objects.get(content_type__app_label=app_label, codename=codename)
            group.permissions.add(permission)


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, perms in GROUP_PERMISSIONS.items():
        group = Group.objects.filter(name=name).first()
        if group is None:
            continue
        for app_label, codename in perms:
            group.permissions.remove(*Permission.objects.filter(content_type__app_label=app_label, codename=codename))


class Migration(migrations.Migration):
    dependencies = [
        ("compliance", "0005_seed_defaults"),
        ("accounts", "0003_twofactor"),
        ("ledger", "0003_seed_assets"),
        ("payorders", "0002_payorders_refunds"),
        ("wallets", "0001_initial"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
