"""Row-lock querysets of pay orders: the only places that take their locks.

Lock order (everywhere, after the idempotency record): the pay order, then its refund, then the
organization's xpub key (address allocation), then the money path's locks (customer, wallets in
id order). Never call a chain or price provider while holding one: ask first, re-check under
the lock.
"""

from __future__ import annotations

from django.db.models import QuerySet

from payorders.models import PayOrder, Refund, XpubKey


def payorders_for_update() -> QuerySet[PayOrder]:
    return PayOrder.objects.select_for_update(of=("self",))


def refunds_for_update() -> QuerySet[Refund]:
    return Refund.objects.select_for_update(of=("self",))


def xpub_keys_for_update() -> QuerySet[XpubKey]:
    return XpubKey.objects.order_by("pk").select_for_update(of=("self",))
