"""`manage.py archive_entries --month 2026-01 --to /archive/ledger`: dump one month of
ledger_entry to a checksummed CSV, record its per-wallet totals and drop its partition
(`ledger.archive`). Exit 0 when archived (or already), 1 when refused (nothing dropped)."""

import sys

from django.core.management.base import BaseCommand

from ledger.archive import entries_archive, month_parse
from ledger.errors import ArchiveRefused


class Command(BaseCommand):
    help = ("Archive one month of ledger entries: write it to <to>/ledger_entry_pYYYY_MM.csv with a checksum manifest, record"
            " its per-wallet totals, then detach and drop its partition. Resumable; a month already archived is a no-op.")

    def add_arguments(self, parser):
        parser.add_argument("--month", required=True, help="The month to archive, YYYY-MM (UTC).")
        parser.add_argument("--to", required=True, help="Directory for the CSV and its manifest (created if missing).")
        parser.add_argument("--lock-timeout-ms", type=int, default=None,
                            help="How long the DETACH waits for ledger_entry's lock (default LEDGER_ARCHIVE_LOCK_TIMEOUT_MS).")

    def handle(self, *args, month: str, to: str, lock_timeout_ms: int | None, **options):
        try:
            outcome = entries_archive(month=month_parse(month), to=to, lock_timeout_ms=lock_timeout_ms)
        except ArchiveRefused as exc:
            self.stderr.write(self.style.ERROR(f"Refused: {exc.message}"))
            sys.exit(1)
        if outcome.status == "already archived":
            self.stdout.write(f"{outcome.month:%Y-%m} was already archived ({outcome.rows} entries in {outcome.path},"
                              f" sha256 {outcome.sha256}); nothing to do.")
            return
        self.stdout.write(self.style.SUCCESS(
            f"Archived {outcome.month:%Y-%m}: {outcome.rows} entries of {outcome.wallets} wallets in {outcome.path}"
            f" (sha256 {outcome.sha256}); partition {outcome.partition} dropped."
        ))
