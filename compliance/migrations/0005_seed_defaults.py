"""Seed the defaults of SPEC 11 (all editable in the admin afterwards), and grant the staff
groups their permissions on the new models.

Fees: transfers free; withdrawals 1% (to an IBAN with a minimum of 1.00; to other destinations
no minimum, because a minimum in major units cannot suit every asset); exchanges 0.5% of the
source amount; pay-order settlement 1%; deposits free.
Limits: per KYC level, for every movement type and direction a customer's money takes, with
blank currency (so in the major units of whichever asset moves): none 1,000 / 2,000 / 5,000;
basic 10,000 / 20,000 / 50,000; verified 100,000 / 200,000 / 1,000,000; enhanced no limit.
Risk rules: velocity, structuring, new-account large movement (review), sanctions (reject); an
amount-threshold rule is seeded inactive as a template.

The data lives here, not imported from app code, so the migration keeps meaning the same thing;
tests that flush the database re-seed through `seed(apps=django.apps.apps)`.
"""

from decimal import Decimal

from django.contrib.auth.management import create_permissions
from django.db import migrations

FEE_RULES = [
    # movement_type, destination_type, percent, fixed, minimum, maximum, description
    ("deposit", "", "0", "0", None, None, "Deposits are free"),
    ("transfer", "", "0", "0", None, None, "Transfers between wallets are free"),
    ("withdrawal", "IBAN", "1", "0", "1.00", None, "Withdrawal to a bank account: 1%, minimum 1.00"),
    ("withdrawal", "", "1", "0", None, None, "Withdrawal: 1%"),
    ("exchange", "", "0.5", "0", None, None, "Currency exchange: 0.5% of the source amount"),
    ("settlement", "", "1", "0", None, None, "Pay-order settlement: 1%, charged to the merchant"),
]

LIMITS = {
    # kyc_level: (single, daily, monthly); None = no limit
    "none": ("1000", "2000", "5000"),
    "basic": ("10000", "20000", "50000"),
    "verified": ("100000", "200000", "1000000"),
    "enhanced": (None, None, None),
}
LIMIT_SCOPES = [
    ("deposit", "incoming"),
    ("withdrawal", "outgoing"),
    ("transfer", "outgoing"),
    ("transfer", "incoming"),
    ("exchange", "outgoing"),
    ("exchange", "incoming"),
]

RISK_RULES = [
    # name, kind, params, action, active, description
    ("Velocity", "velocity", {"max_count": 100, "window_minutes": 10}, "review", True,
     "More than 100 outgoing movements from one wallet in 10 minutes"),
    ("Structuring", "structuring", {"min_count": 3, "window_hours": 24, "band_percent": "10"}, "review", True,
     "Three or more movements in 24 h each within 10% under the customer's single limit"),
    ("New account, large movement", "new_account_large", {"fraction": "0.5", "window_hours": 24}, "review", True,
     "A first outgoing movement over half the single limit within 24 h of sign-up"),
    ("Sanctions name match", "sanctions", {"threshold": 90}, "reject", True,
     "A beneficiary name matching the sanctions list"),
    ("Large amount", "amount_threshold", {"threshold": "50000", "currency": "", "movement_types": []}, "review", False,
     "Template: hold any movement of 50,000 or more for review (inactive until switched on)"),
]

GROUP_PERMISSIONS = {
    "compliance officer": [
        "view_feerule", "change_feerule", "add_feerule",
        "view_limitrule", "change_limitrule", "add_limitrule",
        "view_riskrule", "change_riskrule", "add_riskrule",
        "view_sanctionsentry", "change_sanctionsentry", "add_sanctionsentry",
        "view_reviewcase", "change_reviewcase",
    ],
    "auditor": ["view_feerule", "view_limitrule", "view_riskrule", "view_sanctionsentry", "view_reviewcase"],
    "support": ["view_reviewcase"],
}


def _d(value):
    return None if value is None else Decimal(value)


def seed(apps, schema_editor=None):
    FeeRule = apps.get_model("compliance", "FeeRule")
    LimitRule = apps.get_model("compliance", "LimitRule")
    RiskRule = apps.get_model("compliance", "RiskRule")
    for movement_type, destination_type, percent, fixed, minimum, maximum, description in FEE_RULES:
        FeeRule.objects.get_or_create(
            movement_type=movement_type, destination_type=destination_type, currency="",
            defaults={"percent": _d(percent), "fixed": _d(fixed), "minimum": _d(minimum), "maximum": _d(maximum),
                      "description": description, "active": True},
        )
    for level, (single, daily, monthly) in LIMITS.items():
        for movement_type, direction in LIMIT_SCOPES:
            LimitRule.objects.get_or_create(
                kyc_level=level, movement_type=movement_type, direction=direction, currency="",
                defaults={"single_limit": _d(single), "daily_limit": _d(daily), "monthly_limit": _d(monthly)},
            )
    for name, kind, params, action, active, description in RISK_RULES:
        RiskRule.objects.get_or_create(
            kind=kind, name=name, defaults={"params": params, "action": action, "active": active, "description": description}
        )


def grant(apps, schema_editor):
    app_config = apps.get_app_config("compliance")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in GROUP_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*Permission.objects.filter(content_type__app_label="compliance", codename__in=codenames))


def forwards(apps, schema_editor):
    seed(apps, schema_editor)
    grant(apps, schema_editor)


def backwards(apps, schema_editor):
    for model in ("FeeRule", "LimitRule", "RiskRule"):
        apps.get_model("compliance", model).objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("compliance", "0004_fees_limits_risk"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
