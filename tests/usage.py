"""Test helper: move a posted transaction back in time, as if it had been made then. Its usage
moves with it (the counters count a movement on the day it was created; ledger.usage)."""

import datetime as dt

from ledger.models import Transaction
from ledger.usage import transaction_charges, usage_apply, usage_day


def backdate_transaction(tx: Transaction, when: dt.datetime) -> None:
    tx = Transaction.objects.get(pk=tx.pk)
    charges = transaction_charges(tx) if tx.status in ("completed", "pending", "in_review") else {}
    usage_apply(charges, day=usage_day(tx.created_at), sign=-1)
    Transaction.objects.filter(pk=tx.pk).update(created_at=when)
    usage_apply(charges, day=usage_day(when))
