"""Run as `python -m tests.scaleout.seed_platform USERS MERCHANT_WEBHOOK_URL [STORM_WEBHOOK_URL]` with
DATABASE_URL set: migrates that database and prints, as JSON, what the queue and topology tests
drive over HTTP:

- `users`: USERS customers with a funded USD wallet and an access token (tests/scaleout/seed.py);
- `merchant`: an organization with an API key (every scope), extended public keys for its
  deposit addresses (the BIP39 test mnemonic's account 0; public keys only), a webhook endpoint
  at MERCHANT_WEBHOOK_URL subscribed to every event, and its webhook secret;
- `storm` (with STORM_WEBHOOK_URL): a second organization whose endpoint there receives the
  webhook flood (tests.scaleout.flood).

The platform assets, fee rules and FX float are the migrations' seeds.
"""

import json
import os
import sys


def _organization(name: str, webhook_url: str, *, xpubs: bool) -> dict:
    from accounts.orgs.scopes import ALL_SCOPES
    from accounts.orgs.services import api_key_create, organization_create
    from accounts.webhooks.services import webhook_endpoint_create

    created = organization_create(name=name, owner_email=f"{name.lower()}@test.invalid")
    _, secret = api_key_create(organization=created.organization, name="scaleout", actor=created.owner, scopes=ALL_SCOPES)
    endpoint, webhook_secret = webhook_endpoint_create(organization=created.organization, url=webhook_url, events=["*"])
    if xpubs:
        from bip_utils import Bip39SeedGenerator, Bip44, Bip44Coins, Bip84, Bip84Coins

        from payorders.services.addresses import xpub_key_register

        seed = Bip39SeedGenerator(" ".join(["abandon"] * 11 + ["about"])).Generate()
        eth = Bip44.FromSeed(seed, Bip44Coins.ETHEREUM).Purpose().Coin().Account(0).PublicKey().ToExtended()
        btc = Bip84.FromSeed(seed, Bip84Coins.BITCOIN).Purpose().Coin().Account(0).PublicKey().ToExtended()
        xpub_key_register(organization=created.organization, chain="ethereum", xpub=eth)
        xpub_key_register(organization=created.organization, chain="bitcoin", xpub=btc)
    return {"id": created.organization.pk, "api_key": secret, "endpoint": endpoint.pk, "webhook_secret": webhook_secret}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    import django

    django.setup()
    from tests.scaleout.seed import seed_users

    users = seed_users(int(sys.argv[1]))  # migrates first
    out = {"users": users, "merchant": _organization("Merchant", sys.argv[2], xpubs=True)}
    if len(sys.argv) > 3:
        out["storm"] = _organization("Storm", sys.argv[3], xpubs=False)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
