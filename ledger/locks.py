"""Row-lock querysets. One order everywhere (STYLE 4): a transaction or pay order first, then the
customer, then wallets by ascending primary key, then holds. Entries are insert-only and never
locked. `of=("self",)` keeps joined rows (the asset) unlocked."""

from django.db.models import QuerySet

from ledger.models import Hold, Transaction, Wallet


def wallets_for_update() -> QuerySet[Wallet]:
    return Wallet.objects.select_related("asset").order_by("pk").select_for_update(of=("self",))


def transactions_for_update() -> QuerySet[Transaction]:
    return Transaction.objects.order_by("pk").select_for_update(of=("self",))


def holds_for_update() -> QuerySet[Hold]:
    return Hold.objects.order_by("pk").select_for_update(of=("self",))
