"""Fund the platform's FX float: top up every shard of the FX account of each asset by issuing
into it (`wallets.movements.exchanges.fx_float_fund`). Idempotent: shards already at the target get nothing.

    python manage.py fund_fx_float                      # the defaults below
    python manage.py fund_fx_float --currency EUR --per-shard 50000
"""

from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError

from core.money import format_amount, parse_amount
from ledger.selectors import platform_asset
from wallets.movements.exchanges import fx_float_fund

# Per shard (LEDGER_HOT_ACCOUNT_SHARDS rows per asset): about 1M USD worth per asset in total.
DEFAULTS = {"USD": "62500", "EUR": "58000", "GBP": "49000", "USDC": "62500", "BTC": "1", "ETH": "20", "SOL": "400"}


class Command(BaseCommand):
    help = "Top up the platform's FX float (every FX shard of each asset) by issuing into it."

    def add_arguments(self, parser):
        parser.add_argument("--currency", action="append", help="Asset code (repeatable); default: every seeded asset.")
        parser.add_argument("--per-shard", help="Target balance of each FX shard, in major units.")

    def handle(self, *args, currency=None, per_shard=None, **options):
        codes = [c.upper() for c in currency] if currency else list(DEFAULTS)
        for code in codes:
            asset = platform_asset(code)
            if asset is None:
                if currency:
                    raise CommandError(f"Unknown currency {code}")
                continue
            raw = per_shard or DEFAULTS.get(code)
            if raw is None:
                raise CommandError(f"Give --per-shard for {code}")
            amount = parse_amount(str(raw), exponent=asset.exponent, field="per_shard")
            tx = fx_float_fund(asset=asset, per_shard=Decimal(amount))
            shown = format_amount(amount, asset.exponent)
            self.stdout.write(f"{code}: FX shards at {shown} each" + (f" (transaction {tx.pk})" if tx else " (already funded)"))
