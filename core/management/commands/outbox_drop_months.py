"""`manage.py outbox_drop_months [--include-dead] [--detach-only] [--dry-run]`: detach and drop the
months of the outbox (PostgreSQL partitions of core_outboxmessage) past OUTBOX_RETENTION_DAYS
whose rows are all done, or also dead with --include-dead (`core.outbox.outbox_drop_months`; the
hourly purge drops the all-done months by itself). With --detach-only each month stays as a plain
table of its own name, to archive (pg_dump -t) and drop by hand."""

from django.core.management.base import BaseCommand

from core.outbox import outbox_drop_months


class Command(BaseCommand):
    help = ("Detach and drop the outbox's old months (past OUTBOX_RETENTION_DAYS, every row done; --include-dead: or dead)."
            " PostgreSQL only; a month with a pending or recent row stays.")

    def add_arguments(self, parser):
        parser.add_argument("--include-dead", action="store_true", help="Drop months whose dead messages are past the retention too.")
        parser.add_argument("--detach-only", action="store_true", help="Detach each month and keep it as a plain table to archive.")
        parser.add_argument("--dry-run", action="store_true", help="Only name the months that would go.")

    def handle(self, *args, include_dead: bool, detach_only: bool, dry_run: bool, **options):
        months = outbox_drop_months(include_dead=include_dead, detach_only=detach_only, dry_run=dry_run)
        verb = "would go" if dry_run else ("detached (archive, then DROP TABLE)" if detach_only else "dropped")
        for name, rows in months:
            self.stdout.write(f"{name}: {rows} messages {verb}")
        self.stdout.write(self.style.SUCCESS(f"{len(months)} month(s) {verb}."))
