"""Seed the platform assets of SPEC 3 and their issuance-account shards."""

from django.conf import settings
from django.db import migrations

ASSETS = [
    ("USD", "US Dollar", 2, "fiat"),
    ("EUR", "Euro", 2, "fiat"),
    ("GBP", "Pound Sterling", 2, "fiat"),
    ("BTC", "Bitcoin", 8, "crypto"),
    ("ETH", "Ether", 18, "crypto"),
    ("USDC", "USD Coin", 6, "crypto"),
    ("SOL", "Solana", 9, "crypto"),
]


def seed(apps, schema_editor):
    Asset = apps.get_model("ledger", "Asset")
    Wallet = apps.get_model("ledger", "Wallet")
    shards = max(1, int(getattr(settings, "LEDGER_HOT_ACCOUNT_SHARDS", 16)))
    for code, name, exponent, kind in ASSETS:
        asset, _ = Asset.objects.get_or_create(
            code=code, organization=None, defaults={"name": name, "exponent": exponent, "kind": kind}
        )
        for shard in range(shards):
            Wallet.objects.get_or_create(
                asset=asset, purpose="issuance", shard=shard, customer=None, organization=None,
                defaults={"kind": "issuance", "label": f"platform issuance #{shard}"},
            )


def unseed(apps, schema_editor):
    # Assets are referenced by the ledger; never delete them on the way back.
    pass


class Migration(migrations.Migration):
    dependencies = [("ledger", "0002_ledger_guards")]
    operations = [migrations.RunPython(seed, unseed)]
