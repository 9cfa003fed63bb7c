"""`create_organization NAME --owner EMAIL`: an organization, its owner and one API key.

The secret is printed once, here; Coffer keeps only its keyed hash and an encrypted copy."""

from django.core.management.base import BaseCommand, CommandError

from accounts.orgs.services import organization_create
from core.errors import CofferError


class Command(BaseCommand):
    help = "Create an organization with an owner (created if missing) and an API key; prints the key id and secret once."

    def add_arguments(self, parser):
        parser.add_argument("name", help="The organization's name.")
        parser.add_argument("--owner", required=True, metavar="EMAIL", help="The owner's email (a user is created if none exists).")

    def handle(self, *args, name: str, owner: str, **options):
        if "@" not in owner:
            raise CommandError(f"--owner must be an email address, got {owner!r}")
        try:
            created = organization_create(name=name, owner_email=owner)
        except CofferError as exc:
            raise CommandError(exc.message) from exc
        org = created.organization
        self.stdout.write(f"Organization: {org.name} (id {org.pk}, slug {org.slug})")
        if created.owner_created:
            self.stdout.write(
                f"Owner: {created.owner.email} (new user without a password; set one with: "
                f"python manage.py changepassword {created.owner.email})"
            )
        else:
            self.stdout.write(f"Owner: {created.owner.email} (existing user)")
        self.stdout.write(f"Key id: {created.api_key.key_id}")
        self.stdout.write(f"Scopes: {', '.join(created.api_key.scopes)}")
        self.stdout.write(f"Secret: {created.secret}")
        self.stdout.write("Store the secret now: it is not shown again.")
