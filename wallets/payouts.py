"""Payout providers: how a withdrawal leaves Coffer for a bank account or another rail.

Interface (`PayoutProvider`):
- `send(payout) -> PayoutResult`: hand the payout over. Must be idempotent on
  `payout.reference` (a resend after a crash must not pay twice: real providers take it as their
  idempotency key). Returns `accepted` (in flight; ask again at `check_at`), `completed` or
  `failed` (with a reason).
- `status(payout) -> PayoutResult`: where an accepted payout stands now: `accepted` (still in
  flight, ask again at `check_at`), `completed` or `failed`.
A provider reads the beneficiary in plain text with `wallets.beneficiaries.beneficiary_open`
(the one place besides sanctions screening: it is stored encrypted, shown masked).
Neither is ever called inside a database transaction or under a row lock (STYLE 4):
`wallets.movements.payouts.payout_send` claims the payout (pending -> sending, committed), calls `send`
with no transaction open and records the answer in a new short transaction that locks the payout
row; `payout_settle` calls `status` the same way. Both run as outbox handlers (`payout.send`,
`payout.check`), so a call can be repeated after a crash: hence the idempotency on `reference`.

`SandboxPayoutProvider` (default, PAYOUT_PROVIDER=sandbox) needs no network. It accepts every
payout and settles it PAYOUT_SANDBOX_SETTLE_SECONDS (default 5) after it was sent: the delay is
a time the worker comes back (a `payout.check` outbox message due at the payout's
`next_check_at`), never a sleep. It can be told to fail: a beneficiary name containing "FAIL" (any case) fails at
settlement, one containing "REJECT" is refused at send, and PAYOUT_SANDBOX_FAIL=true fails
every payout at settlement.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from wallets.beneficiaries import beneficiary_open

ACCEPTED, COMPLETED, FAILED = "accepted", "completed", "failed"


@dataclass(frozen=True)
class PayoutResult:
    status: str  # accepted | completed | failed
    provider_reference: str = ""
    check_at: datetime | None = None
    reason: str = ""


class PayoutProvider(ABC):
    name = "abstract"

    @abstractmethod
    def send(self, payout) -> PayoutResult:
        ...

    @abstractmethod
    def status(self, payout) -> PayoutResult:
        ...


def settle_seconds() -> float:
    return float(getattr(settings, "PAYOUT_SANDBOX_SETTLE_SECONDS", 5))


class SandboxPayoutProvider(PayoutProvider):
    name = "sandbox"

    def send(self, payout) -> PayoutResult:
        reference = f"sbx_{payout.reference}"  # deterministic: a resend is the same payout
        if "REJECT" in beneficiary_open(payout).name.upper():
            return PayoutResult(FAILED, reference, reason="The sandbox bank refused the beneficiary.")
        sent_at = payout.sent_at or timezone.now()
        return PayoutResult(ACCEPTED, reference, check_at=sent_at + timedelta(seconds=settle_seconds()))

    def status(self, payout) -> PayoutResult:
        due = (payout.sent_at or timezone.now()) + timedelta(seconds=settle_seconds())
        if timezone.now() < due:
            return PayoutResult(ACCEPTED, payout.provider_reference, check_at=due)
        if getattr(settings, "PAYOUT_SANDBOX_FAIL", False) or "FAIL" in beneficiary_open(payout).name.upper():
            return PayoutResult(FAILED, payout.provider_reference, reason="The sandbox bank returned the payout.")
        return PayoutResult(COMPLETED, payout.provider_reference)


_PROVIDERS: dict[str, type[PayoutProvider]] = {"sandbox": SandboxPayoutProvider}


def register_payout_provider(name: str, cls: type[PayoutProvider]) -> None:
    _PROVIDERS[name] = cls


def get_payout_provider(name: str | None = None) -> PayoutProvider:
    name = name or getattr(settings, "PAYOUT_PROVIDER", "sandbox")
    try:
        return _PROVIDERS[name]()
    except KeyError:
        raise ImproperlyConfigured(f"Unknown PAYOUT_PROVIDER {name!r}: one of {', '.join(sorted(_PROVIDERS))}") from None
