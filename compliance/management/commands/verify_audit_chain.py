from django.core.management.base import BaseCommand, CommandError

from compliance.audit import audit_verify


class Command(BaseCommand):
    help = "Verify the keyed hash chain of the audit log against its last checkpoint; exit 1, naming the first invalid event and what is wrong, when broken."

    def handle(self, *args, **options):
        result = audit_verify()
        if result["valid"]:
            self.stdout.write(
                self.style.SUCCESS(f"Audit chain valid: {result['checked']} events checked, head {result['head_hash'] or '(empty)'}")
            )
            return
        self.stdout.write(
            f"Audit chain BROKEN: first invalid event id {result['first_invalid_id']} ({result['checked']} events checked): {result['reason']}"
        )
        raise CommandError(f"audit chain broken at event {result['first_invalid_id']}: {result['reason']}", returncode=1)
