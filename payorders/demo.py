"""Demo pay-order setup for `seed_demo`: registers extended PUBLIC keys for the demo
organization so its pay orders can issue deposit addresses on the sandbox chain.

The keys below are account-level public keys of a throwaway wallet whose private half was never
kept: nothing sent to these addresses on a real chain could ever be spent. They exist for the
sandbox only. Idempotent: a key already registered is left alone."""

from __future__ import annotations

from accounts.models import Organization
from payorders.models import XpubKey
from payorders.services.addresses import xpub_key_register

DEMO_XPUBS = {
    "bitcoin": "zpub6qmTPoASKsZQGqAAa7MKtDfh7KC1xoXLB3R3YTjtYEGRkv6pHApgCV5ptUGHcdSEuzmoc2MxRekR6j8HoezPXEYSZhh4H3VuZ72cKWb9r98",
    "ethereum": "xpub6DC29R8KFUjwpbyE3dG98jprMCZxQeM3K4AYSLq2fTbSds5PTuu7T3PKKNFNEeSpAXmMYh3NNsHt1HioJjdgTRs7J72VcjYvUQVdGiyRwLX",
}


def seed_payorders_demo(stdout, *, organization: Organization) -> None:
    for chain, xpub in DEMO_XPUBS.items():
        if XpubKey.objects.filter(organization=organization, chain=chain, is_active=True).exists():
            continue
        xpub_key_register(organization=organization, chain=chain, xpub=xpub)
        stdout.write(f"payorders demo: registered a {chain} extended public key for {organization.name}")
