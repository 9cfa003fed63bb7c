"""Run as `python -m tests.scaleout.seed N` with DATABASE_URL set: migrates that database and
prints, as JSON, N users with a customer profile, a funded USD wallet and an access token (the
scale-out tests start gunicorn on databases the test runner does not manage)."""

import json
import os
import sys
from decimal import Decimal


def seed_users(count: int) -> list[dict]:
    """Migrate, then `count` users with a customer profile, a funded USD wallet and a token."""
    from django.contrib.auth.hashers import make_password
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from accounts.identity.tokens import token_pair_for_user
    from accounts.models import Customer, User
    from ledger.models import Asset
    from ledger.posting import Issue, ledger_post
    from ledger.services import wallet_open

    usd, _ = Asset.objects.get_or_create(code="USD", organization=None, defaults={"name": "US Dollar", "exponent": 2, "kind": "fiat"})
    users = []
    for i in range(count):
        user = User.objects.create(email=f"scaleout-{i}@test.invalid", first_name="Scale", last_name=f"Out {i}", password=make_password(None))
        customer = Customer.objects.create(user=user, name=user.full_name, email=user.email, kyc_level=Customer.KycLevel.BASIC)
        wallet = wallet_open(asset=usd, customer=customer)
        ledger_post(type="deposit", operations=[Issue(wallet=wallet, amount=Decimal("1000.00"))], customer=customer).raise_for_error()
        users.append({"user": user.pk, "wallet": wallet.pk, "token": token_pair_for_user(user=user)["access_token"]})
    return users


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    import django

    django.setup()
    print(json.dumps(seed_users(int(sys.argv[1]))))


if __name__ == "__main__":
    main()
