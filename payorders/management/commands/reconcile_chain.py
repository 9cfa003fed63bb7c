"""`manage.py reconcile_chain --chain ethereum [--from-block N] [--to-block M] [--organization SLUG] [--json]`:
on-chain receipts to our deposit addresses against settled pay orders
(`payorders.services.reconciliation.chain_reconcile`). Exit status 1 when anything is reported,
so a scheduler can alert on it."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Organization
from core.errors import CofferError
from payorders.chains import CHAINS
from payorders.services.reconciliation import chain_reconcile


class Command(BaseCommand):
    help = "Report on-chain receipts without a settled pay order and settled pay orders without a receipt."

    def add_arguments(self, parser):
        parser.add_argument("--chain", required=True, choices=CHAINS)
        parser.add_argument("--from-block", type=int, default=0)
        parser.add_argument("--to-block", type=int, default=None, help="Default: the chain's head.")
        parser.add_argument("--organization", default=None, help="Only this organization's addresses and orders (id or slug).")
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args, chain, from_block, to_block, organization, json: bool, **options):  # noqa: A002
        org = None
        if organization:
            lookup = {"pk": int(organization)} if organization.isdigit() else {"slug": organization}
            org = Organization.objects.filter(**lookup).first()
            if org is None:
                raise CommandError(f"No organization {organization!r}.")
        if from_block < 0 or (to_block is not None and to_block < from_block):
            raise CommandError("--from-block must be >= 0 and not after --to-block.")
        try:
            report = chain_reconcile(chain=chain, from_block=from_block, to_block=to_block, organization=org)
        except CofferError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None
        if json:
            self.stdout.write(_dumps(report.as_dict()))
        else:
            self.stdout.write(
                f"{report.chain} blocks {report.from_block}-{report.to_block}: {report.addresses} addresses, "
                f"{report.receipts} receipts, {report.explained} matched to settled orders."
            )
            for r in report.receipts_without_settled_order:
                self.stdout.write(f"RECEIPT WITHOUT SETTLED ORDER {r.tx_hash}#{r.log_index} {r.amount.normalize():f} {r.asset} "
                                  f"to {r.to_address} (block {r.block_number}): {r.reason}")
            for m in report.settled_orders_without_receipt:
                self.stdout.write(f"SETTLED ORDER WITHOUT RECEIPT {m.pay_order} ({m.order_status}): {m.tx_hash}#{m.log_index} "
                                  f"{m.amount.normalize():f} {m.asset} to {m.to_address} (block {m.block_number}) not on chain.")
            if report.clean:
                self.stdout.write("Clean.")
        if not report.clean:
            raise SystemExit(1)


def _dumps(data) -> str:
    return json.dumps(data, indent=2, default=str)
