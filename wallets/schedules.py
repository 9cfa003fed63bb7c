"""Recurring payments (`/api/v1/schedules`, seed 004's "next step"): a schedule pays `amount`
from a wallet on every instance of an RFC 5545 RRULE, each instance through the one money path.

Why `wallets/`: the app's one rule is "anything that moves money goes through `wallets/`"
(`ledger/` keeps the books and serves reads of them). A schedule is a customer's money movement
repeated in time: each occurrence IS a transfer or a withdrawal, made by the very services the
API calls (`transfer_create`, `withdrawal_create` for users; `organization_transaction_post` for
organizations), so limits, step-up, risk, fees, usage counters, webhooks and audit are the API's.

Invariants:
* Owners. A user schedules from their own wallets (404 otherwise) to any customer wallet of the
  same asset, or to an IBAN/EXTERNAL beneficiary exactly as `POST /withdrawals` takes it (kept
  as a payout's beneficiary is: encrypted, masked, hashed; wallets.beneficiaries). An
  organization schedules between its wallets (its customers' and its system wallets, as
  `POST /transactions` allows); an IBAN destination is a 400 for organizations (Coffer has no
  organization payout endpoint to run it through).
* Rules. `rule` is one RRULE (with or without the `RRULE:` prefix), evaluated by python-dateutil
  (`rrulestr`) in UTC from `start_at`, bounded by `end_at`. Refused with 400 naming `rule`:
  anything dateutil cannot parse, DTSTART/RDATE/EXDATE or several lines (`start_at` is the one
  start), FREQ=SECONDLY|MINUTELY, two occurrences closer than SCHEDULE_MIN_INTERVAL_SECONDS
  (default one hour; checked over the first RULE_SAMPLE occurrences), and a rule with no
  occurrence between start_at and end_at found within RULE_EVALUATION_SECONDS (an impossible
  rule such as FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30 makes dateutil scan to the year 9999).
* 2FA (decision). A user's schedule of TWO_FACTOR_THRESHOLD or more is created only with a valid
  `X-2FA-Code` (spent then); such a schedule is `step_up_authorized`, and its occurrences, each of
  exactly the schedule's `amount` (a schedule's amount never changes), run without a second
  factor. A schedule created below the threshold is not authorized: should the threshold later
  drop under its amount, its occurrences fail with 2FA_REQUIRED (not retried) and the owner is
  told. Organizations have no second factor (as on every organization endpoint).
* States (django-fsm-2, `Schedule`): active <-> paused; active|paused -> cancelled;
  active|paused -> completed when the rule (or end_at) has no further instance. Anything else is
  409 INVALID_STATE. Pausing or cancelling drops pending retries (occurrence `skipped`). Resuming
  pays from the first instance after the resume: instances that fell due while paused are not
  paid late. Create, pause, resume, cancel and completion are audited.
* Running (beat task `wallets.tasks.run_schedules`, every SCHEDULE_RUN_SECONDS). Each occurrence
  runs in ONE database transaction: lock the schedule row (`FOR UPDATE SKIP LOCKED` over the
  partial index on `next_run_at`; the schedule is the parent row of the global lock order, before
  the customer and the wallets the money path locks), pay through the money path, INSERT the
  `ScheduleOccurrence` (unique per schedule and instance), advance `next_run_at`, commit. A second
  worker or a double beat skips the locked row or finds it advanced; a worker that dies before
  the commit leaves nothing (the payment goes with it) and the next run pays once; a twin that
  somehow paid the same instance loses on the unique constraint and its payment rolls back. Each
  attempt posts with the ledger reference `schedule:<id>:<instance>:<attempt>` (unique per
  customer or organization: a second line of defence). Instances missed while the worker was down
  are paid when it returns, oldest first, each once.
* Failures and retries. A refused occurrence is recorded on its row with the code and reason
  (the money path also records what it recorded for the API: the failed ledger transaction, the
  risk rejection). INSUFFICIENT_FUNDS, LIMIT_EXCEEDED and WALLET_INACTIVE may cure themselves: the
  occurrence is `retrying` and tried again after each of SCHEDULE_RETRY_DELAYS_SECONDS (default 1 h
  then 23 h: 3 tries over 24 h), then `failed`. Other refusals (TRANSACTION_REJECTED,
  2FA_REQUIRED, a beneficiary or wallet gone...) fail at once. An occurrence held for review is
  `in_review` and never retried (a retry could pay twice once a reviewer approves). Every failed
  attempt and every review hold notifies the owner in the same transaction: organizations by the
  `schedule.occurrence_failed` webhook, users by an e-mail (outbox topic SCHEDULE_EMAIL_TOPIC).
  A scheduled withdrawal whose payout fails later (the rail returns it) turns its occurrence
  `failed` (PAYOUT_FAILED, not retried) and is notified the same way (`schedule_payout_failed`).
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import threading
from dataclasses import dataclass
from typing import Any

from dateutil.rrule import rrule, rrulestr
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction as db_transaction
from django.db.models import QuerySet
from django.utils import timezone
from django_fsm import TransitionNotAllowed

from accounts.models import Organization, User
from accounts.orgs.services import principal_audit_data
from accounts.webhooks import webhook_publish
from compliance.audit import audit_record
from core.livemode import mode_q, object_livemode, principal_livemode
from core.errors import CofferError, InvalidState, NotFound, ValidationFailed
from core.money import parse_amount
from core.models import OutboxMessage
from core.outbox import outbox_emit
from ledger.errors import CurrencyMismatch, WalletInactive, WalletNotFound
from ledger.models import Transaction, Wallet
from ledger.selectors import organization_wallets_get
from wallets.beneficiaries import beneficiary_open, beneficiary_sealed_fields
from wallets.models import Schedule, ScheduleOccurrence
from wallets.selectors import transfer_wallets_get, wallet_get_for_user

logger = logging.getLogger("coffer.wallets.schedules")

SCHEDULE_EMAIL_TOPIC = "wallets.schedule.occurrence_failed_email"
WEBHOOK_EVENT = "schedule.occurrence_failed"
RULE_SAMPLE = 500
RULE_EVALUATION_SECONDS = 2.0
START_TOLERANCE = dt.timedelta(minutes=5)  # a start_at of "now" sent a moment ago is still accepted
LATEST = dt.datetime(2200, 1, 1, tzinfo=dt.timezone.utc)  # far enough for any payment, short of the calendar's end
RETRYABLE = frozenset({"INSUFFICIENT_FUNDS", "LIMIT_EXCEEDED", "WALLET_INACTIVE"})
IN_REVIEW_CODE = "IN_REVIEW"
PAST = {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}
_FREQUENCIES = ("YEARLY", "MONTHLY", "WEEKLY", "DAILY", "HOURLY")


def _field_error(name: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{name}: {message}", details={"fields": {name: [message]}})


# --- Rules -----------------------------------------------------------------------------------------------


def _utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.timezone.utc)


def rule_build(rule: str, *, start_at: dt.datetime) -> rrule:
    """The dateutil rule of a stored schedule (already validated by `rule_check`)."""
    text = rule.strip()
    body = text[6:] if text.upper().startswith("RRULE:") else text
    return rrulestr("RRULE:" + body, dtstart=_utc(start_at).replace(microsecond=0))


def _with_deadline(func, seconds: float):
    """Run `func()` in a daemon thread and wait at most `seconds` for it: dateutil cannot be
    interrupted, and an impossible rule makes it scan day by day to the year 9999 (seconds of CPU).
    Returns (finished, value); an abandoned evaluation ends on its own."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = func()
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True, name="rrule-eval")
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        return False, None
    if "error" in outcome:
        raise outcome["error"]
    return True, outcome.get("value")


def rule_check(rule: Any, *, start_at: dt.datetime, end_at: dt.datetime | None) -> dt.datetime:
    """Validate `rule` (module docstring) and return its first instance at or after `start_at`
    (and not after `end_at`). Every refusal is a 400 naming `rule`."""
    if not isinstance(rule, str) or not rule.strip():
        raise _field_error("rule", "An RFC 5545 RRULE is required, e.g. FREQ=MONTHLY;BYMONTHDAY=1.")
    text = rule.strip()
    if len(text) > 500 or any(c in text for c in "\r\n"):
        raise _field_error("rule", "One RRULE line of at most 500 characters.")
    body = text[6:] if text.upper().startswith("RRULE:") else text
    if ":" in body:
        raise _field_error("rule", "Only an RRULE: DTSTART, RDATE and EXDATE are not accepted (start_at is the start).")
    parts = {}
    for part in body.upper().split(";"):
        name, _, value = part.partition("=")
        parts[name.strip()] = value.strip()
    interval = parts.get("INTERVAL")
    if interval is not None and (not interval.isdigit() or int(interval) < 1):
        raise _field_error("rule", "INTERVAL must be a positive integer.")
    freq = parts.get("FREQ")
    if freq in ("SECONDLY", "MINUTELY"):
        raise _field_error("rule", f"FREQ={freq} is more often than a payment may recur: at most hourly (FREQ=HOURLY or coarser).")
    if freq not in _FREQUENCIES:
        raise _field_error("rule", "FREQ must be one of YEARLY, MONTHLY, WEEKLY, DAILY or HOURLY.")
    try:
        parsed = rule_build(body, start_at=start_at)
    except Exception as exc:  # noqa: BLE001 - dateutil raises ValueError, TypeError, KeyError... on bad input
        raise _field_error("rule", f"Not a valid RRULE: {exc or type(exc).__name__}.") from None
    begin = _utc(start_at).replace(microsecond=0)
    try:
        finished, sample = _with_deadline(lambda: list(itertools.islice(parsed.xafter(begin, inc=True), RULE_SAMPLE)), RULE_EVALUATION_SECONDS)
    except Exception as exc:  # noqa: BLE001
        raise _field_error("rule", f"Not a valid RRULE: {exc or type(exc).__name__}.") from None
    if not finished:
        raise _field_error("rule", "No occurrence found: the rule's parts exclude each other (e.g. BYMONTH=2;BYMONTHDAY=30).")
    if not sample:
        raise _field_error("rule", "The rule has no occurrence at or after start_at.")
    minimum = settings.SCHEDULE_MIN_INTERVAL_SECONDS
    for earlier, later in itertools.pairwise(sample):
        if (later - earlier).total_seconds() < minimum:
            raise _field_error(
                "rule", f"Occurrences {earlier.isoformat()} and {later.isoformat()} are less than {minimum} seconds apart: "
                        "a payment may recur at most hourly.")
    if end_at is not None and sample[0] > end_at:
        raise _field_error("rule", "The rule has no occurrence between start_at and end_at.")
    return sample[0]


def next_instance(schedule: Schedule, after: dt.datetime) -> dt.datetime | None:
    """The schedule's first instance strictly after `after`, or None past the rule's end or end_at."""
    try:
        found = rule_build(schedule.rule, start_at=schedule.start_at).after(_utc(after), inc=False)
    except (OverflowError, ValueError):  # the next instance would lie past the calendar (year 9999): none left
        found = None
    if found is None or (schedule.end_at is not None and found > schedule.end_at):
        return None
    return found


# --- Reads -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Owner:
    """Who asks: a user (their own schedules) or an organization (with the principal that acts)."""

    user: User | None = None
    organization: Organization | None = None
    principal: Any = None

    @property
    def livemode(self) -> bool:
        """The mode it works in (core.livemode): a test key's schedules are test mode."""
        return principal_livemode(self.principal if self.organization is not None else self.user)

    @property
    def actor(self) -> User | None:
        if self.user is not None:
            return self.user
        return self.principal if isinstance(self.principal, User) else None

    def audit_data(self) -> dict[str, Any]:
        return principal_audit_data(self.principal) if self.organization is not None else {}


def schedules_visible(*, owner: Owner) -> QuerySet[Schedule]:
    queryset = Schedule.objects.select_related("asset").filter(mode_q(owner.livemode))
    if owner.organization is not None:
        return queryset.filter(organization=owner.organization).order_by("-id")
    return queryset.filter(user=owner.user).order_by("-id")


def schedule_get(*, owner: Owner, schedule_id: int) -> Schedule:
    schedule = schedules_visible(owner=owner).filter(pk=schedule_id).first()
    if schedule is None:
        raise NotFound(f"Schedule {schedule_id} not found.", details={"schedule_id": schedule_id})
    return schedule


def occurrences_of(*, owner: Owner, schedule_id: int) -> QuerySet[ScheduleOccurrence]:
    schedule = schedule_get(owner=owner, schedule_id=schedule_id)
    return schedule.occurrences.select_related("transaction").order_by("-scheduled_for")


def schedule_representation(schedule: Schedule) -> dict[str, Any]:
    return {
        "id": schedule.pk,
        "status": schedule.status,
        "source_wallet_id": schedule.source_wallet_id,
        "destination_wallet_id": schedule.destination_wallet_id,
        "destination": schedule.destination_masked or None,
        "amount": schedule.asset.format(schedule.amount),
        "currency": schedule.asset.code,
        "rule": schedule.rule,
        "start_at": schedule.start_at,
        "end_at": schedule.end_at,
        "description": schedule.description,
        "next_run_at": schedule.next_run_at,
        "step_up_authorized": schedule.step_up_authorized,
        "created_at": schedule.created_at,
        "updated_at": schedule.updated_at,
        "livemode": object_livemode(schedule),
        "closed_at": schedule.closed_at,
    }


def occurrence_representation(occurrence: ScheduleOccurrence) -> dict[str, Any]:
    tx = occurrence.transaction if occurrence.transaction_id else None
    return {
        "id": occurrence.pk,
        "schedule_id": occurrence.schedule_id,
        "scheduled_for": occurrence.scheduled_for,
        "status": occurrence.status,
        "attempts": occurrence.attempts,
        "transaction_id": occurrence.transaction_id,
        "transaction_status": tx.status if tx is not None else None,
        "failure_code": occurrence.failure_code or None,
        "failure_reason": occurrence.failure_reason or None,
        "next_attempt_at": occurrence.next_attempt_at,
        "idempotency_key": occurrence.idempotency_key,
        "created_at": occurrence.created_at,
        "updated_at": occurrence.updated_at,
    }


# --- Create, pause, resume, cancel ----------------------------------------------------------------------


def _instant(value: Any, name: str) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise _field_error(name, "An ISO 8601 date-time is required.")
    if timezone.is_naive(value):
        value = timezone.make_aware(value, dt.timezone.utc)
    return _utc(value)


def _audit(owner: Owner, action: str, schedule: Schedule, **data) -> None:
    audit_record(actor=owner.actor, action=action, target=schedule,
                 data={"schedule_id": schedule.pk, "status": schedule.status, **data, **owner.audit_data()})


def schedule_create(
    *, owner: Owner, source_wallet_id: int, amount: Any, currency: str, rule: Any, start_at: Any, end_at: Any = None,
    destination_wallet_id: int | None = None, destination: Any = None, description: str = "", two_factor_code: str | None = None,
) -> Schedule:
    """Create an active schedule (module docstring). Runs in the caller's transaction (the
    idempotent request's): a spent or failed step-up code commits with the answer."""
    from wallets.movements.withdrawals import beneficiary_parse

    if (destination_wallet_id is None) == (destination is None):
        raise _field_error("destination_wallet_id", "Give exactly one of destination_wallet_id or destination.")
    if destination_wallet_id is not None and destination_wallet_id == source_wallet_id:
        raise _field_error("destination_wallet_id", "Must differ from the source wallet.")
    beneficiary = None
    if owner.organization is not None:
        if destination is not None:
            raise _field_error("destination", "Organizations schedule transfers between their wallets: use destination_wallet_id.")
        wallets = organization_wallets_get(organization=owner.organization, ids=[source_wallet_id, destination_wallet_id], livemode=owner.livemode)
        for name, wid in (("source_wallet_id", source_wallet_id), ("destination_wallet_id", destination_wallet_id)):
            if wid not in wallets:
                raise WalletNotFound("Wallet not found.", details={"field": name, "wallet_id": wid})
        source, target = wallets[source_wallet_id], wallets[destination_wallet_id]
    elif destination_wallet_id is not None:
        source, target = transfer_wallets_get(user=owner.user, source_wallet_id=source_wallet_id, destination_wallet_id=destination_wallet_id)
    else:
        source, target = wallet_get_for_user(user=owner.user, wallet_id=source_wallet_id), None
        beneficiary = beneficiary_parse(destination)
    asset = source.asset
    code = (currency or "").strip().upper() if isinstance(currency, str) else ""
    if code != asset.code or (target is not None and target.asset_id != asset.pk):
        raise CurrencyMismatch(
            f"The schedule is in {code or '?'} but the wallets hold {asset.code}" + (f" and {target.asset.code}." if target else "."),
            details={"currency": code, "source_currency": asset.code, "destination_currency": target.asset.code if target else None},
        )
    value = parse_amount(amount, exponent=asset.exponent, field="amount")
    start = _instant(start_at, "start_at")
    now = timezone.now()
    if start < now - START_TOLERANCE:
        raise _field_error("start_at", "Must not be in the past.")
    if start >= LATEST:
        raise _field_error("start_at", f"Must be before {LATEST:%Y-%m-%d}.")
    end = _instant(end_at, "end_at") if end_at is not None else None
    if end is not None and end <= start:
        raise _field_error("end_at", "Must be after start_at.")
    first = rule_check(rule, start_at=start, end_at=end)
    if source.status != Wallet.Status.ACTIVE:
        raise WalletInactive(f"Wallet {source.pk} is {source.status}.", details={"wallet_id": source.pk, "status": source.status})
    authorized = False
    if owner.organization is None:
        from accounts.identity.twofactor import twofactor_require

        authorized = twofactor_require(user=owner.user, amount=value, currency=asset.code, code=two_factor_code) is not None
    sealed = {}
    if beneficiary is not None:  # stored as a payout's beneficiary is: encrypted, masked, hashed
        sealed = beneficiary_sealed_fields(
            name=beneficiary.name, destination={"type": beneficiary.type, "name": beneficiary.name, **beneficiary.details})
    with db_transaction.atomic(savepoint=False):
        schedule = Schedule.objects.create(
            user=owner.user if owner.organization is None else None, organization=owner.organization, source_wallet=source,
            destination_wallet=target, asset=asset, amount=value, rule=rule.strip(), **sealed,
            start_at=start, end_at=end, description=(description or "")[:500], next_run_at=first, step_up_authorized=authorized,
            livemode=source.livemode,
        )
        _audit(owner, "schedule.created", schedule, amount=asset.format(value), currency=asset.code, rule=schedule.rule,
               start_at=start, end_at=end, source_wallet_id=source.pk, destination_wallet_id=target.pk if target else None,
               destination_type=beneficiary.type if beneficiary else None, step_up_authorized=authorized, next_run_at=first)
    return schedule


def _locked(owner: Owner, schedule_id: int) -> Schedule:
    schedule = schedules_visible(owner=owner).select_for_update(of=("self",)).filter(pk=schedule_id).first()
    if schedule is None:
        raise NotFound(f"Schedule {schedule_id} not found.", details={"schedule_id": schedule_id})
    return schedule


def _transition(schedule: Schedule, name: str) -> None:
    before = schedule.status
    try:
        getattr(schedule, name)()
    except TransitionNotAllowed:
        raise InvalidState(f"A {before} schedule cannot be {PAST[name]}.", details={"schedule_id": schedule.pk, "status": before}) from None


def _drop_retries(schedule: Schedule) -> int:
    return ScheduleOccurrence.objects.filter(schedule=schedule, status=ScheduleOccurrence.Status.RETRYING).update(
        status=ScheduleOccurrence.Status.SKIPPED, next_attempt_at=None, updated_at=timezone.now())


def _change(owner: Owner, schedule_id: int, name: str) -> Schedule:
    with db_transaction.atomic():
        schedule = _locked(owner, schedule_id)  # waits for an occurrence being paid: the parent row of the lock order
        before = schedule.status
        _transition(schedule, name)
        now = timezone.now()
        dropped = 0
        if name in ("pause", "cancel"):
            schedule.next_run_at = None
            dropped = _drop_retries(schedule)
            if name == "cancel":
                schedule.closed_at = now
        else:  # resume: from the first instance after now; none left -> completed
            schedule.next_run_at = next_instance(schedule, max(now, schedule.start_at - dt.timedelta(seconds=1)))
            if schedule.next_run_at is None:
                schedule.complete()
                schedule.closed_at = now
        schedule.save(update_fields=["status", "next_run_at", "closed_at", "updated_at"])
        _audit(owner, f"schedule.{PAST[name]}", schedule, previous_status=before,
               retries_dropped=dropped, next_run_at=schedule.next_run_at)
    return schedule


def schedule_pause(*, owner: Owner, schedule_id: int) -> Schedule:
    return _change(owner, schedule_id, "pause")


def schedule_resume(*, owner: Owner, schedule_id: int) -> Schedule:
    return _change(owner, schedule_id, "resume")


def schedule_cancel(*, owner: Owner, schedule_id: int) -> Schedule:
    return _change(owner, schedule_id, "cancel")


_UNSET: Any = object()


def schedule_update(
    *, owner: Owner, schedule_id: int, amount: Any = _UNSET, rule: Any = _UNSET, end_at: Any = _UNSET,
    description: Any = _UNSET, two_factor_code: str | None = None,
) -> Schedule:
    """Change what an active or paused schedule pays from now on: the amount, the rule, the end,
    the description (the wallets and the beneficiary are the schedule's identity: cancel it and
    create another to change them). Occurrences already paid or retrying keep what they were
    created with; the next instance is found again from now. A user's larger amount needs the
    step-up again when it reaches the threshold (as at creation). 409 for a closed schedule; 400
    naming the field for bad values or a change that leaves no occurrence to pay."""
    given = {name: value for name, value in (("amount", amount), ("rule", rule), ("end_at", end_at), ("description", description))
             if value is not _UNSET}
    if not given:
        raise ValidationFailed("Nothing to change: give amount, rule, end_at or description.",
                               details={"fields": {"non_field_errors": ["Give at least one of amount, rule, end_at, description."]}})
    with db_transaction.atomic():
        schedule = _locked(owner, schedule_id)  # waits for an occurrence being paid
        if schedule.status not in (Schedule.Status.ACTIVE, Schedule.Status.PAUSED):
            raise InvalidState(f"A {schedule.status} schedule cannot be changed.",
                               details={"schedule_id": schedule.pk, "status": schedule.status})
        asset = schedule.asset
        before = {"amount": asset.format(schedule.amount), "rule": schedule.rule, "end_at": schedule.end_at,
                  "description": schedule.description}
        fields = ["updated_at"]
        if "amount" in given:
            value = parse_amount(amount, exponent=asset.exponent, field="amount")
            if owner.organization is None and value > schedule.amount:
                from accounts.identity.twofactor import twofactor_require

                schedule.step_up_authorized = (
                    twofactor_require(user=owner.user, amount=value, currency=asset.code, code=two_factor_code) is not None
                    or schedule.step_up_authorized
                )
                fields.append("step_up_authorized")
            schedule.amount = value
            fields.append("amount")
        if "end_at" in given:
            schedule.end_at = _instant(end_at, "end_at") if end_at is not None else None
            if schedule.end_at is not None and schedule.end_at <= max(schedule.start_at, timezone.now()):
                raise _field_error("end_at", "Must be after start_at and in the future.")
            fields.append("end_at")
        if "rule" in given:
            rule_check(rule, start_at=schedule.start_at, end_at=schedule.end_at)
            schedule.rule = rule.strip()
            fields.append("rule")
        if "description" in given:
            if not isinstance(description, str):
                raise _field_error("description", "A string is required.")
            schedule.description = description[:500]
            fields.append("description")
        if schedule.status == Schedule.Status.ACTIVE and ({"rule", "end_at"} & given.keys()):
            now = timezone.now()
            schedule.next_run_at = next_instance(schedule, max(now, schedule.start_at - dt.timedelta(seconds=1)))
            if schedule.next_run_at is None:
                field = "rule" if "rule" in given else "end_at"
                raise _field_error(field, "The schedule would have no occurrence left to pay.")
            fields.append("next_run_at")
        schedule.save(update_fields=fields)
        after = {"amount": asset.format(schedule.amount), "rule": schedule.rule, "end_at": schedule.end_at,
                 "description": schedule.description}
        _audit(owner, "schedule.updated", schedule, changed=sorted(k for k in after if after[k] != before[k]),
               before={k: before[k] for k in after if after[k] != before[k]},
               after={k: after[k] for k in after if after[k] != before[k]},
               step_up_authorized=schedule.step_up_authorized, next_run_at=schedule.next_run_at)
    return schedule


# --- Running occurrences --------------------------------------------------------------------------------


def occurrence_key(schedule: Schedule, instance: dt.datetime) -> str:
    return f"schedule:{schedule.pk}:{_utc(instance):%Y%m%dT%H%M%SZ}"


def _attempt(schedule: Schedule, occurrence: ScheduleOccurrence) -> tuple[Transaction | None, CofferError | None]:
    """One attempt of an occurrence through the API's own service, in the caller's transaction.
    A refusal is returned, not raised: what the money path recorded commits with the outcome."""
    from wallets.movements.organization import organization_transaction_post
    from wallets.movements.transfers import transfer_create
    from wallets.movements.withdrawals import withdrawal_create

    reference = f"{occurrence.idempotency_key}:{occurrence.attempts}"
    amount = schedule.asset.format(schedule.amount)
    description = schedule.description or f"Scheduled payment ({schedule.pk})"
    try:
        if schedule.organization_id is not None:
            representation = organization_transaction_post(
                organization=schedule.organization, principal=None, reference=reference, description=description,
                operations=[{"type": "transfer", "source_wallet_id": schedule.source_wallet_id,
                             "destination_wallet_id": schedule.destination_wallet_id, "amount": amount, "currency": schedule.asset.code}],
                metadata={"schedule_id": schedule.pk, "scheduled_for": occurrence.scheduled_for.isoformat()},
            )
            return Transaction.objects.get(pk=representation["id"]), None
        if schedule.destination_wallet_id is not None:
            tx = transfer_create(
                user=schedule.user, source_wallet_id=schedule.source_wallet_id, destination_wallet_id=schedule.destination_wallet_id,
                amount=amount, currency=schedule.asset.code, description=description, step_up=not schedule.step_up_authorized,
                reference=reference,
            )
        else:
            tx = withdrawal_create(
                user=schedule.user, wallet_id=schedule.source_wallet_id, amount=amount, destination=beneficiary_open(schedule).destination,
                description=description, step_up=not schedule.step_up_authorized, reference=reference,
            )
        return tx, None
    except CofferError as error:
        tx_id = error.details.get("transaction_id") if isinstance(error.details, dict) else None
        return (Transaction.objects.filter(pk=tx_id).first() if tx_id else None), error


def _record(occurrence: ScheduleOccurrence, tx: Transaction | None, error: CofferError | None, now: dt.datetime) -> bool:
    """Write the attempt's outcome on the occurrence; True when the owner must be told."""
    occurrence.transaction = tx
    occurrence.next_attempt_at = None
    if error is None and tx is not None and tx.status == Transaction.Status.IN_REVIEW:
        occurrence.status = ScheduleOccurrence.Status.IN_REVIEW
        occurrence.failure_code = IN_REVIEW_CODE
        occurrence.failure_reason = "Held for compliance review: a reviewer decides; it is not retried."
        return True
    if error is None:
        occurrence.status = ScheduleOccurrence.Status.SUCCEEDED
        occurrence.failure_code = occurrence.failure_reason = ""
        return False
    delays = settings.SCHEDULE_RETRY_DELAYS_SECONDS
    occurrence.failure_code = error.code[:64]
    occurrence.failure_reason = (error.message or error.code)[:500]
    if error.code == "2FA_REQUIRED":  # the API's answer tells a person to send a header; a schedule cannot
        occurrence.failure_reason = ("This amount now needs a second factor, and this schedule was created without one: "
                                     "create it again with X-2FA-Code.")
    if error.code in RETRYABLE and occurrence.attempts <= len(delays):
        occurrence.status = ScheduleOccurrence.Status.RETRYING
        occurrence.next_attempt_at = now + dt.timedelta(seconds=delays[occurrence.attempts - 1])
    else:
        occurrence.status = ScheduleOccurrence.Status.FAILED
    return True


def _notify(schedule: Schedule, occurrence: ScheduleOccurrence) -> None:
    """In the occurrence's transaction: the organization's webhook, or the user's e-mail (outbox)."""
    audit_record(action="schedule.occurrence_failed", target=schedule, data={
        "schedule_id": schedule.pk, "occurrence_id": occurrence.pk, "scheduled_for": occurrence.scheduled_for,
        "attempt": occurrence.attempts, "code": occurrence.failure_code, "status": occurrence.status,
        "transaction_id": occurrence.transaction_id})
    if schedule.organization_id is not None:
        payload = {**occurrence_representation(occurrence), "schedule": schedule_representation(schedule)}
        webhook_publish(organization=schedule.organization, event_type=WEBHOOK_EVENT, payload=payload, livemode=object_livemode(schedule))
        return
    outbox_emit(
        topic=SCHEDULE_EMAIL_TOPIC, key=f"schedule-occurrence:{occurrence.pk}:{occurrence.attempts}",
        payload={"occurrence_id": occurrence.pk, "attempt": occurrence.attempts, "status": occurrence.status,
                 "code": occurrence.failure_code, "reason": occurrence.failure_reason,
                 "next_attempt_at": occurrence.next_attempt_at.isoformat() if occurrence.next_attempt_at else None},
    )


def _advance(schedule: Schedule, instance: dt.datetime, now: dt.datetime) -> None:
    schedule.next_run_at = next_instance(schedule, instance)
    if schedule.next_run_at is None:
        schedule.complete()
        schedule.closed_at = now
        audit_record(action="schedule.completed", target=schedule, data={"schedule_id": schedule.pk, "last_instance": instance})
    schedule.save(update_fields=["status", "next_run_at", "closed_at", "updated_at"])


def schedules_due(now: dt.datetime, exclude: set[int] = frozenset()) -> QuerySet[Schedule]:
    """Due active schedules, oldest instance first, locked with SKIP LOCKED: read off the partial
    index `schedule_due` (next_run_at WHERE status = 'active'), constant in the number of others."""
    return (
        Schedule.objects.select_for_update(of=("self",), skip_locked=True).select_related("asset", "organization", "user")
        .filter(status=Schedule.Status.ACTIVE, next_run_at__lte=now).exclude(pk__in=exclude).order_by("next_run_at")
    )


def _due_schedule(now: dt.datetime, exclude: set[int]) -> Schedule | None:
    return schedules_due(now, exclude).first()


def schedule_run_next_due(*, now: dt.datetime | None = None, exclude: set[int] = frozenset(), picked: list[int] | None = None) -> bool:
    """Pay the next due instance of one due schedule nobody else is paying (module docstring).
    Returns False when nothing was due. Opens its own (durable) transaction. `exclude`: schedules
    this run leaves alone; `picked` receives the schedule's id (to name it if the run fails)."""
    now = now or timezone.now()
    try:
        with db_transaction.atomic(durable=True):
            schedule = _due_schedule(now, set(exclude))
            if schedule is None:
                return False
            if picked is not None:
                picked.append(schedule.pk)
            instance = schedule.next_run_at
            if ScheduleOccurrence.objects.filter(schedule=schedule, scheduled_for=instance).exists():
                _advance(schedule, instance, now)  # paid by a run whose advance was lost: never pay it again
                return True
            occurrence = ScheduleOccurrence(schedule=schedule, scheduled_for=instance, idempotency_key=occurrence_key(schedule, instance),
                                            attempts=1, created_at=now)
            tx, error = _attempt(schedule, occurrence)
            tell = _record(occurrence, tx, error, now)
            occurrence.save(force_insert=True)  # the final guard: unique (schedule, scheduled_for)
            if tell:
                _notify(schedule, occurrence)
            _advance(schedule, instance, now)
    except IntegrityError as exc:
        constraint = getattr(getattr(exc.__cause__, "diag", None), "constraint_name", "") or ""
        if "schedule_occurrence" not in constraint and "idempotency_key" not in constraint:
            raise
        logger.warning("schedule occurrence paid concurrently; this run's payment rolled back (%s)", constraint)
    return True


def _retry_schedule(now: dt.datetime, exclude: set[int]) -> Schedule | None:
    due = ScheduleOccurrence.objects.filter(status=ScheduleOccurrence.Status.RETRYING, next_attempt_at__lte=now).values("schedule_id")
    return (
        Schedule.objects.select_for_update(of=("self",), skip_locked=True).select_related("asset", "organization", "user")
        .filter(pk__in=due, status__in=[Schedule.Status.ACTIVE, Schedule.Status.COMPLETED]).exclude(pk__in=exclude).order_by("pk").first()
    )


def schedule_retry_next_due(*, now: dt.datetime | None = None, exclude: set[int] = frozenset(), picked: list[int] | None = None) -> bool:
    """Attempt again the oldest due `retrying` occurrence of one schedule nobody else holds."""
    now = now or timezone.now()
    with db_transaction.atomic(durable=True):
        schedule = _retry_schedule(now, set(exclude))
        if schedule is None:
            return False
        if picked is not None:
            picked.append(schedule.pk)
        occurrence = (
            ScheduleOccurrence.objects.select_for_update(of=("self",))
            .filter(schedule=schedule, status=ScheduleOccurrence.Status.RETRYING, next_attempt_at__lte=now).order_by("scheduled_for").first()
        )
        if occurrence is None:
            return True
        occurrence.attempts += 1
        tx, error = _attempt(schedule, occurrence)
        tell = _record(occurrence, tx, error, now)
        occurrence.save()
        if tell:
            _notify(schedule, occurrence)
    return True


def schedules_run_due(*, now: dt.datetime | None = None, limit: int = 200) -> int:
    """The beat task's work: due instances (oldest first), then due retries; at most `limit`
    transactions, each short and on its own. Safe to run in several workers at once."""
    now = now or timezone.now()
    done = 0
    for step in (schedule_run_next_due, schedule_retry_next_due):
        broken: set[int] = set()
        while done < limit:
            picked: list[int] = []
            try:
                if not step(now=now, exclude=broken, picked=picked):
                    break
            except Exception:
                if not picked:  # the database itself failed: let the task retry
                    raise
                # one schedule that cannot be run (rolled back, nothing paid) must not stop the others
                logger.exception("schedule %s could not be run; left for the next run", picked[0])
                broken.add(picked[0])
            done += 1
    return done


def schedule_payout_failed(*, transaction: Transaction, reason: str) -> None:
    """A scheduled withdrawal's payout failed after its occurrence was recorded as paid (called
    by `wallets.movements.payouts._payout_failed` in its transaction, the payout row locked): the
    occurrence becomes `failed` with PAYOUT_FAILED (not retried: the rail refused that
    beneficiary) and the owner is told, as for any failed occurrence."""
    occurrence = (
        ScheduleOccurrence.objects.select_for_update(of=("self",)).select_related("schedule__asset", "schedule__organization")
        .filter(transaction=transaction, status=ScheduleOccurrence.Status.SUCCEEDED).first()
    )
    if occurrence is None:
        return
    occurrence.status = ScheduleOccurrence.Status.FAILED
    occurrence.failure_code = "PAYOUT_FAILED"
    occurrence.failure_reason = reason[:500]
    occurrence.save(update_fields=["status", "failure_code", "failure_reason", "updated_at"])
    _notify(occurrence.schedule, occurrence)


def occurrence_failed_email(message: OutboxMessage) -> None:
    """Outbox handler (SCHEDULE_EMAIL_TOPIC): tell the user a scheduled payment did not go out.
    The beneficiary's account is never written in full."""
    occurrence = ScheduleOccurrence.objects.select_related("schedule__user", "schedule__asset").filter(
        pk=message.payload.get("occurrence_id")).first()
    if occurrence is None or occurrence.schedule.user is None:
        return
    schedule, payload = occurrence.schedule, message.payload
    amount = f"{schedule.asset.format(schedule.amount)} {schedule.asset.code}"
    when = f"{occurrence.scheduled_for:%Y-%m-%d %H:%M} UTC"
    if payload.get("status") == ScheduleOccurrence.Status.IN_REVIEW:
        outcome = "is held for a compliance review; you will see the result in your transactions."
    elif payload.get("next_attempt_at"):
        outcome = f"failed ({payload.get('code')}: {payload.get('reason')}). We will try again at {payload['next_attempt_at']}."
    else:
        outcome = f"failed ({payload.get('code')}: {payload.get('reason')}). It will not be tried again."
    send_mail(
        subject="A scheduled payment did not go out",
        message=(
            f"Your scheduled payment of {amount} due {when} (schedule {schedule.pk}"
            + (f", \"{schedule.description}\"" if schedule.description else "") + f", attempt {payload.get('attempt')}) {outcome}\n\n"
            "You can see it, pause or cancel the schedule with GET /api/v1/schedules/"
            f"{schedule.pk}/occurrences."
        ),
        from_email=None,
        recipient_list=[schedule.user.email],
    )
