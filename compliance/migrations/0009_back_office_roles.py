"""The staff roles over the back office's new tables: compliance officers see the KYC history and
screening hits and clear false positives (whitelist); auditors read them."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

READ = [("compliance", "view_kycchange"), ("compliance", "view_screeninghit"), ("compliance", "view_sanctionsclearance")]
GROUP_PERMISSIONS = {
    "compliance officer": READ + [("compliance", "change_screeninghit"), ("compliance", "add_sanctionsclearance")],
    "auditor": READ,
}


def grant(apps, schema_editor):
    app_config = apps.get_app_config("compliance")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, perms in GROUP_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        for app_label, codename in perms:
            group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, perms in GROUP_PERMISSIONS.items():
        group = Group.objects.filter(name=name).first()
        if group is not None:
            for app_label, codename in perms:
                group.permissions.remove(*Permission.objects.filter(content_type__app_label=app_label, codename=codename))


class Migration(migrations.Migration):
    dependencies = [("compliance", "0008_back_office")]

    operations = [migrations.RunPython(grant, revoke)]
