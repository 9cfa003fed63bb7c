"""`manage.py rotate_field_keys`: re-encrypt stored secrets under the first FIELD_ENCRYPTION_KEY
(accounts.fieldkeys explains the rotation). Exits non-zero, naming the rows, if a secret cannot be
decrypted with any configured key: keep the key it needs in the list until it can."""

from django.core.management.base import BaseCommand, CommandError

from accounts.fieldkeys import field_keys_rotate


class Command(BaseCommand):
    help = "Re-encrypt API-key, webhook, authenticator, payout- and schedule-beneficiary secrets under the first FIELD_ENCRYPTION_KEY."

    def handle(self, *args, **options):
        report = field_keys_rotate()
        for label, count in sorted(report.rotated.items()):
            self.stdout.write(f"{label}: {count} re-encrypted")
        if not report.rotated:
            self.stdout.write("no stored secrets")
        if report.unreadable:
            raise CommandError(
                f"{len(report.unreadable)} secret(s) cannot be decrypted with any configured key: "
                + ", ".join(report.unreadable)
            )
        self.stdout.write(self.style.SUCCESS("every stored secret is encrypted under the current field key"))
