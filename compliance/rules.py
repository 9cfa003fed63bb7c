"""The rules the money path reads on every request (limit, fee and risk rules, the sanctions
list), kept per process and re-read only when one of them changed.

A version token lives in the shared cache (`RULES_VERSION_KEY`). Every save or delete of a
`LimitRule`, `FeeRule`, `RiskRule` or `SanctionsEntry` (admin, import command, migration...)
replaces it at once and again when its transaction commits (`rules_changed`, connected in
`compliance.apps`), so each process reloads its snapshot within RULES_VERSION_TTL_SECONDS: a
request that changes nothing about the rules reads none of them from the database, and the
token from the cache at most once a second per process. A flushed cache just means one reload per process; with the cache down the rules are
read from the database on every request (correct, slower). The sanctions names, the expensive
part, are indexed lazily on the first screen after a change.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from rapidfuzz import utils as fuzz_utils

from compliance.models import FeeRule, LimitRule, RiskRule, SanctionsEntry

logger = logging.getLogger("coffer.compliance.rules")

RULES_VERSION_KEY = "compliance:rules:version"


@dataclass
class RuleSet:
    version: str
    limits: dict[tuple[str, str, str, str], LimitRule]  # (kyc_level, movement_type, direction, currency)
    fees: list[FeeRule]  # active, by id
    risk: list[RiskRule]  # active, by id
    _sanctions: tuple[dict[int, str], dict[int, tuple[int, str]]] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def limit_rule(self, *, kyc_level: str, movement_type: str, direction: str, currency: str) -> LimitRule | None:
        """The rule naming the asset's code, else the blank-currency one, else None."""
        return self.limits.get((kyc_level, movement_type, direction, currency)) or self.limits.get((kyc_level, movement_type, direction, ""))

    def sanctions(self) -> tuple[dict[int, str], dict[int, tuple[int, str]]]:
        """(processed name by key, (entry id, original name) by key), every active name and alias."""
        if self._sanctions is None:
            with self._lock:
                if self._sanctions is None:
                    self._sanctions = _sanctions_index()
        return self._sanctions


def _sanctions_index() -> tuple[dict[int, str], dict[int, tuple[int, str]]]:
    choices: dict[int, str] = {}
    owners: dict[int, tuple[int, str]] = {}
    for entry_id, name, aliases in SanctionsEntry.objects.filter(active=True).values_list("pk", "name", "aliases").iterator():
        for candidate in [name, *(aliases or [])]:
            processed = fuzz_utils.default_process(candidate) if isinstance(candidate, str) else ""
            if processed:
                key = len(choices)
                choices[key] = processed  # lower-cased, punctuation-free, once
                owners[key] = (entry_id, candidate)
    return choices, owners


def _load(version: str) -> RuleSet:
    return RuleSet(
        version=version,
        limits={(r.kyc_level, r.movement_type, r.direction, r.currency): r for r in LimitRule.objects.all()},
        fees=list(FeeRule.objects.filter(active=True).order_by("id")),
        risk=list(RiskRule.objects.filter(active=True).order_by("id")),
    )


_snapshot: RuleSet | None = None


def _current_version() -> str | None:
    try:
        version = cache.get(RULES_VERSION_KEY)
        if version is None:
            cache.add(RULES_VERSION_KEY, uuid.uuid4().hex, timeout=None)
            version = cache.get(RULES_VERSION_KEY)
        return version
    except Exception as exc:  # the cache is down: read the rules from the database every time
        logger.warning("rules version unavailable (%s); reading the rules from the database", exc.__class__.__name__)
        return None


_checked_at = 0.0  # when this process last compared its snapshot's version with the cache's


def rules() -> RuleSet:
    """The current rules (module docstring). The version token is asked of the cache at most
    every RULES_VERSION_TTL_SECONDS (default 1 s; 0 in tests) per process: a request reads
    the rules several times, and another process's change shows within that time (this
    process's own at once)."""
    global _snapshot, _checked_at
    snapshot = _snapshot
    now = time.monotonic()
    if snapshot is not None and now - _checked_at < getattr(settings, "RULES_VERSION_TTL_SECONDS", 1.0):
        return snapshot
    version = _current_version()
    if version is None:
        return _load("uncached")
    if snapshot is None or snapshot.version != version:
        snapshot = _snapshot = _load(version)
    _checked_at = now
    return snapshot


def _bump() -> None:
    try:
        cache.set(RULES_VERSION_KEY, uuid.uuid4().hex, timeout=None)
    except Exception as exc:
        logger.error("could not publish a rules change (%s): processes keep their rules until the cache answers", exc)


def rules_changed(**_: Any) -> None:
    """A rule changed: every process reloads on its next request. Bumped now (this process and
    anyone reading after the commit) and again on commit (a process that reloaded between the
    two read the old rows)."""
    global _snapshot
    _snapshot = None
    _bump()
    transaction.on_commit(_bump, robust=True)


RULE_MODELS: tuple[type, ...] = (LimitRule, FeeRule, RiskRule, SanctionsEntry)


def connect() -> None:
    """Every save or delete of a rule model publishes a change (compliance.apps)."""
    from django.db.models.signals import post_delete, post_save

    for model in RULE_MODELS:
        post_save.connect(rules_changed, sender=model, dispatch_uid=f"compliance.rules.saved.{model.__name__}")
        post_delete.connect(rules_changed, sender=model, dispatch_uid=f"compliance.rules.deleted.{model.__name__}")
