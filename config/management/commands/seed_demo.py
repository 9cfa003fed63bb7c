"""Demo data for `make run` (SPEC 10). Idempotent: a second run finds everything in place,
changes nothing and prints the same logins.

Creates a staff superuser, a demo user with their Customer, a second user, and an organization
"Demo Shop" owned by the demo user; then `ledger.demo.seed_ledger_demo` adds assets and funded
wallets; funds the platform's FX float and registers the demo organization's extended public keys
(sandbox chain). A command of `config`, the top of the import layers: it uses every app.

The demo organization's API key secret exists in plain text only in the run that creates it: that
run prints it in the final summary (not in the middle of the log, where `make run` buries it);
later runs name the key and point to the dashboard's API-keys page, where an owner makes another.
"""

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import Organization, User
from accounts.identity.services import user_create
from accounts.orgs.services import organization_create
from ledger.demo import seed_ledger_demo
from payorders.demo import seed_payorders_demo

ADMIN_EMAIL, ADMIN_PASSWORD = "admin@coffer.local", "coffer-admin-demo"
DEMO_EMAIL, BOB_EMAIL, USER_PASSWORD = "demo@coffer.local", "bob@coffer.local", "coffer-demo-pass"
ORGANIZATION_NAME = "Demo Shop"


class Command(BaseCommand):
    help = "Create demo users, an organization and (through the ledger app) funded wallets; print the logins."

    def handle(self, *args, **options):
        self._api_key = None  # (key id, secret) when this run created the demo organization
        with transaction.atomic():
            self._admin()
            demo = self._user(DEMO_EMAIL, "Demo", "User")
            self._user(BOB_EMAIL, "Bob", "Builder")
            self._organization(owner=demo)
        seed_ledger_demo(self.stdout)
        # The platform's FX float, so currency exchange works out of the box (idempotent).
        call_command("fund_fx_float", stdout=self.stdout)
        organization = Organization.objects.filter(name=ORGANIZATION_NAME, memberships__user__email=DEMO_EMAIL).first()
        if organization is not None:
            with transaction.atomic():
                seed_payorders_demo(self.stdout, organization=organization)
        self._print_logins()

    def _admin(self) -> None:
        if User.objects.filter(email=ADMIN_EMAIL).exists():
            return
        User.objects.create_superuser(email=ADMIN_EMAIL, password=ADMIN_PASSWORD, first_name="Coffer", last_name="Admin")
        self.stdout.write(f"created staff superuser {ADMIN_EMAIL}")

    def _user(self, email: str, first_name: str, last_name: str) -> User:
        user = User.objects.filter(email=email).first()
        if user is None:
            user = user_create(email=email, password=USER_PASSWORD, first_name=first_name, last_name=last_name)
            self.stdout.write(f"created user {email}")
        return user

    def _organization(self, *, owner: User) -> None:
        if Organization.objects.filter(name=ORGANIZATION_NAME, memberships__user=owner).exists():
            return
        # The demo's key is a TEST key (core.livemode): its orders are test mode even if this
        # deployment is later switched to a live chain, so they can never point at mainnet.
        created = organization_create(name=ORGANIZATION_NAME, owner_email=owner.email, key_livemode=False)
        self._api_key = (created.api_key.key_id, created.secret)
        self.stdout.write(f"created organization {ORGANIZATION_NAME} with a TEST API key (its secret is in the summary below)")

    def _api_key_line(self, base: str) -> str:
        if self._api_key is not None:
            key_id, secret = self._api_key
            return (f"  API key:    {key_id}   secret: {secret}\n"
                    f"              (a TEST key: sandbox chain, testnet payment links; shown this once: copy it now;"
                    f" make more keys at {base}/dashboard/api-keys/)")
        from accounts.models import ApiKey

        key = ApiKey.objects.filter(organization__name=ORGANIZATION_NAME, revoked_at__isnull=True).order_by("created_at", "id").first()
        named = f"{key.key_id} " if key else ""
        return f"  API key:    {named}(its secret was printed when it was made; make a new key at {base}/dashboard/api-keys/)"

    def _print_logins(self) -> None:
        base = settings.PUBLIC_BASE_URL.rstrip("/")
        lines = [
            "",
            "Coffer demo is ready.",
            f"  URL:        {base}/",
            f"  Admin:      {base}/admin/   {ADMIN_EMAIL} / {ADMIN_PASSWORD}",
            f"  Dashboard:  {base}/dashboard/   (log in as the demo user; API keys are made there too)",
            f"  API docs:   {base}/api/docs/   (ReDoc: {base}/api/redoc/)",
            f"  Demo user:  {DEMO_EMAIL} / {USER_PASSWORD}   (owner of '{ORGANIZATION_NAME}')",
            f"  Second user: {BOB_EMAIL} / {USER_PASSWORD}",
            f"  Get a token: curl -s -X POST {base}/api/v1/auth/token -d username={DEMO_EMAIL} -d password={USER_PASSWORD}",
            self._api_key_line(base),
            "",
        ]
        self.stdout.write("\n".join(lines))
