"""Limits, fees and the 2FA threshold in a reference currency (issue 13 item 7).

The blank-currency limit and fee rules are now the defaults in the reference currency
(settings.LIMITS_REFERENCE_CURRENCY, USD by default) rather than in each asset's own units: the
SPEC 11 figures seeded by 0005 (limits none 1,000 / 2,000 / 5,000, basic 10,000 / 20,000 /
50,000, verified 100,000 / 200,000 / 1,000,000, enhanced none; the IBAN withdrawal fee's minimum
1.00) now read as USD. This migration states the new meaning in the fields' help, seeds any
SPEC 11 default rule that is missing (an edited one is left as the admin set it), and names
the currency in the seeded IBAN fee's description. A rule naming an asset keeps its own units
and wins over the default (the per-asset override, in the admin).
"""

import django.core.validators
from decimal import Decimal
from django.db import migrations, models

SEEDED_IBAN_DESCRIPTION = "Withdrawal to a bank account: 1%, minimum 1.00"
IBAN_DESCRIPTION = "Withdrawal to a bank account: 1%, minimum USD 1.00 (reference currency, converted at the rate)"


def seed_reference_defaults(apps, schema_editor):
    from importlib import import_module

    seed = import_module("compliance.migrations.0005_seed_defaults")
    LimitRule = apps.get_model("compliance", "LimitRule")
    FeeRule = apps.get_model("compliance", "FeeRule")
    for level, (single, daily, monthly) in seed.LIMITS.items():
        for movement_type, direction in seed.LIMIT_SCOPES:
            LimitRule.objects.get_or_create(
                kyc_level=level, movement_type=movement_type, direction=direction, currency="",
                defaults={"single_limit": seed._d(single), "daily_limit": seed._d(daily), "monthly_limit": seed._d(monthly)},
            )
    for movement_type, destination_type, percent, fixed, minimum, maximum, description in seed.FEE_RULES:
        FeeRule.objects.get_or_create(
            movement_type=movement_type, destination_type=destination_type, currency="",
            defaults={"percent": seed._d(percent), "fixed": seed._d(fixed), "minimum": seed._d(minimum), "maximum": seed._d(maximum),
                      "description": description, "active": True},
        )
    FeeRule.objects.filter(movement_type="withdrawal", destination_type="IBAN", currency="", description=SEEDED_IBAN_DESCRIPTION).update(
        description=IBAN_DESCRIPTION
    )


def unseed_description(apps, schema_editor):
    FeeRule = apps.get_model("compliance", "FeeRule")
    FeeRule.objects.filter(movement_type="withdrawal", destination_type="IBAN", currency="", description=IBAN_DESCRIPTION).update(
        description=SEEDED_IBAN_DESCRIPTION
    )


class Migration(migrations.Migration):

    dependencies = [
        ('compliance', '0009_back_office_roles'),
    ]

    operations = [
        migrations.AlterField(
            model_name='feerule',
            name='currency',
            field=models.CharField(blank=True, default='', help_text='Asset code (fixed, minimum and maximum in that asset), or blank for every asset (in the reference currency, LIMITS_REFERENCE_CURRENCY).', max_length=16),
        ),
        migrations.AlterField(
            model_name='feerule',
            name='fixed',
            field=models.DecimalField(decimal_places=18, default=Decimal('0'), help_text="Added to the percentage part (major units of the rule's currency).", max_digits=38, validators=[django.core.validators.MinValueValidator(Decimal('0'))]),
        ),
        migrations.AlterField(
            model_name='feerule',
            name='maximum',
            field=models.DecimalField(blank=True, decimal_places=18, help_text="Major units of the rule's currency; blank for none.", max_digits=38, null=True, validators=[django.core.validators.MinValueValidator(Decimal('0'))]),
        ),
        migrations.AlterField(
            model_name='feerule',
            name='minimum',
            field=models.DecimalField(blank=True, decimal_places=18, help_text="Major units of the rule's currency; blank for none.", max_digits=38, null=True, validators=[django.core.validators.MinValueValidator(Decimal('0'))]),
        ),
        migrations.AlterField(
            model_name='limitrule',
            name='currency',
            field=models.CharField(blank=True, default='', help_text='Asset code (limits in that asset, overriding the default), or blank for the default of every asset (limits in the reference currency, LIMITS_REFERENCE_CURRENCY).', max_length=16),
        ),
        migrations.AlterField(
            model_name='limitrule',
            name='daily_limit',
            field=models.DecimalField(blank=True, decimal_places=18, help_text="Per UTC day, in the rule's currency; blank: no limit.", max_digits=38, null=True, validators=[django.core.validators.MinValueValidator(Decimal('0'))]),
        ),
        migrations.AlterField(
            model_name='limitrule',
            name='monthly_limit',
            field=models.DecimalField(blank=True, decimal_places=18, help_text="Per UTC calendar month, in the rule's currency; blank: no limit.", max_digits=38, null=True, validators=[django.core.validators.MinValueValidator(Decimal('0'))]),
        ),
        migrations.AlterField(
            model_name='limitrule',
            name='single_limit',
            field=models.DecimalField(blank=True, decimal_places=18, help_text="In the rule's currency. Blank: no limit.", max_digits=38, null=True, validators=[django.core.validators.MinValueValidator(Decimal('0'))]),
        ),
        migrations.RunPython(seed_reference_defaults, unseed_description),
    ]
