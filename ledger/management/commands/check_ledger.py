"""`manage.py check_ledger`: verify the ledger invariants; exit 1 on any breach."""

import sys

from django.core.management.base import BaseCommand

from ledger.checks import ledger_check


class Command(BaseCommand):
    help = "Verify the ledger invariants (SPEC 4: sums, balances, balance_after chains, non-negativity). Exit 1 on any breach."

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=100, help="Report at most this many breaches per check.")

    def handle(self, *args, limit: int, **options):
        breaches = ledger_check(limit=limit)
        if breaches:
            for breach in breaches:
                self.stderr.write(f"BREACH: {breach}")
            self.stderr.write(self.style.ERROR(f"{len(breaches)} ledger breach(es) found."))
            sys.exit(1)
        self.stdout.write(self.style.SUCCESS("Ledger OK: every invariant holds."))
