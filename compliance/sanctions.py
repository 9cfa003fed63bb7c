"""Sanctions lists: import (admin page, `manage.py import_sanctions FILE`, the scheduled
re-import), re-screening of customers and payout beneficiaries, and the whitelist of cleared
false positives.

Formats (`format=`; "auto" tells them apart by their first line):
- "coffer": CSV with a header row `name,aliases,list_id` (extra columns ignored); aliases
  separated by `;` or `|`. Rows are upserted; entries missing from the file are kept (a partial
  list, typed by hand).
- "ofac_sdn": OFAC's SDN list `sdn.csv`: no header, 12 columns (ent_num, SDN_Name, SDN_Type,
  Program, Title, Call_Sign, Vess_type, Tonnage, GRT, Vess_flag, Vess_owner, Remarks), `-0-`
  for empty; aliases are read from the remarks' `a.k.a. 'NAME'`. A full list: entries of the
  source missing from the file are deactivated.
- "opensanctions": OpenSanctions' `targets.simple.csv` (header id, schema, name, aliases, ...;
  aliases separated by `;`). A full list too.

Rows are upserted by (source, list_id); a row without list_id (coffer format) by name. A file
with errors (blank name, a non-numeric OFAC entry number, a short row, a missing column) imports
nothing and names its lines. The import writes with bulk statements, so it publishes the rules
change itself (`rules_changed`), and records one audit event. When the list changed, the caller
re-screens (`sanctions_rescreen`, a task after commit from the admin).

Re-screening matches every customer name and every payout beneficiary name against the active
list (the sanctions rule's threshold) and opens a `ScreeningHit` per new (subject, name, entry);
a cleared hit becomes a `SanctionsClearance`, which `compliance.risk.sanctions_match` honours.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import urllib.request
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from django.db import transaction
from django.utils import timezone
from rapidfuzz import fuzz, process

from accounts.models import Customer
from compliance.audit import audit_record
from compliance.models import RiskRule, SanctionsClearance, SanctionsEntry, ScreeningHit, normalized_name
from compliance.rules import rules, rules_changed
from core.errors import InvalidState, ValidationFailed
from wallets.beneficiaries import beneficiary_names_of
from wallets.models import Payout

logger = logging.getLogger("coffer.compliance.sanctions")

FORMATS = ("auto", "coffer", "ofac_sdn", "opensanctions")
DEFAULT_SOURCE = {"ofac_sdn": "OFAC SDN", "opensanctions": "OpenSanctions", "coffer": ""}
FULL_LISTS = ("ofac_sdn", "opensanctions")
_AKA = re.compile(r"a\.k\.a\.\s*'([^']+)'", re.IGNORECASE)
_OFAC_NULL = "-0-"


@dataclass
class SanctionsImportResult:
    format: str = ""
    source: str = ""
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deactivated: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deactivated)


@dataclass(frozen=True)
class _Row:
    name: str
    aliases: tuple[str, ...]
    list_id: str


def _split_aliases(raw: str, separators: str = ";|") -> list[str]:
    parts = [raw or ""]
    for sep in separators:
        parts = [p for chunk in parts for p in chunk.split(sep)]
    out: list[str] = []
    for part in (p.strip() for p in parts):
        if part and part not in out:
            out.append(part[:300])
    return out


def sanctions_detect_format(text: str) -> str:
    first = next(csv.reader(io.StringIO(text.lstrip("\ufeff"))), [])
    header = [h.strip().lower() for h in first]
    if {"id", "schema", "name"} <= set(header):
        return "opensanctions"
    if "name" in header:
        return "coffer"
    if len(first) >= 12 and first[0].strip().isdigit():
        return "ofac_sdn"
    raise ValidationFailed(
        "file: unknown format: expected a CSV with a header row (name,aliases,list_id or OpenSanctions targets.simple.csv) or OFAC's sdn.csv.",
        details={"fields": {"file": ["Unknown format."]}},
    )


def _refuse(errors: list[str]) -> None:
    raise ValidationFailed("file: " + "; ".join(errors[:20]), details={"errors": errors, "fields": {"file": errors[:20]}})


def _parse_coffer(text: str) -> list[_Row]:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if "name" not in header:
        _refuse(["the CSV needs a header row with at least a 'name' column (name,aliases,list_id)."])
    reader.fieldnames = header
    rows, errors = [], []
    for line, row in enumerate(reader, start=2):
        name = (row.get("name") or "").strip()
        if not name:
            errors.append(f"line {line}: name is empty")
            continue
        rows.append(_Row(name[:300], tuple(_split_aliases(row.get("aliases") or "")), (row.get("list_id") or "").strip()[:100]))
    if errors:
        _refuse(errors)
    return rows


def _parse_ofac_sdn(text: str) -> list[_Row]:
    rows, errors = [], []
    for line, fields in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not fields or (len(fields) == 1 and fields[0].strip() in ("", "\x1a")):
            continue  # blank lines and the DOS end-of-file mark OFAC's file ends with
        if len(fields) < 12:
            errors.append(f"line {line}: {len(fields)} columns, sdn.csv has 12")
            continue
        ent_num, name, remarks = fields[0].strip(), fields[1].strip(), fields[11].strip()
        if not ent_num.isdigit():
            errors.append(f"line {line}: entry number {ent_num[:20]!r} is not a number")
            continue
        if not name or name == _OFAC_NULL:
            errors.append(f"line {line}: name is empty")
            continue
        aliases = [] if remarks == _OFAC_NULL else [a.strip() for a in _AKA.findall(remarks)]
        rows.append(_Row(name[:300], tuple(dict.fromkeys(a[:300] for a in aliases if a)), ent_num))
    if errors:
        _refuse(errors)
    return rows


def _parse_opensanctions(text: str) -> list[_Row]:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in ("id", "schema", "name") if c not in header]
    if missing:
        _refuse([f"targets.simple.csv needs the column(s) {', '.join(missing)}"])
    reader.fieldnames = header
    rows, errors = [], []
    for line, row in enumerate(reader, start=2):
        target_id, name = (row.get("id") or "").strip(), (row.get("name") or "").strip()
        if not target_id:
            errors.append(f"line {line}: id is empty")
            continue
        if not name:
            errors.append(f"line {line}: name is empty")
            continue
        rows.append(_Row(name[:300], tuple(_split_aliases(row.get("aliases") or "", ";")), target_id[:100]))
    if errors:
        _refuse(errors)
    return rows


_PARSERS = {"coffer": _parse_coffer, "ofac_sdn": _parse_ofac_sdn, "opensanctions": _parse_opensanctions}


def sanctions_import(*, text: str, source: str = "", actor=None, format: str = "auto") -> SanctionsImportResult:
    """Import a list (module docstring). Raises ValidationFailed, importing nothing, on a
    malformed file."""
    text = text.lstrip("\ufeff")
    if format not in FORMATS:
        raise ValidationFailed(f"format: one of {', '.join(FORMATS)}.")
    if format == "auto":
        format = sanctions_detect_format(text)
    rows = _PARSERS[format](text)
    if not rows and format in FULL_LISTS:
        # An empty download must not switch the whole list off.
        _refuse([f"no entries: an empty {format} file would deactivate the whole list"])
    source = ((source or "").strip() or DEFAULT_SOURCE[format])[:100]
    result = SanctionsImportResult(format=format, source=source)
    with transaction.atomic():
        existing = list(SanctionsEntry.objects.select_for_update().filter(source=source))
        by_id = {e.list_id: e for e in existing if e.list_id}
        by_name = {e.name: e for e in existing if not e.list_id}
        seen: set[int] = set()
        new: list[SanctionsEntry] = []
        changed: list[SanctionsEntry] = []
        pending: dict[str, SanctionsEntry] = {}
        for row in rows:
            key = f"id:{row.list_id}" if row.list_id else f"name:{row.name}"
            entry = by_id.get(row.list_id) if row.list_id else by_name.get(row.name)
            if entry is None:
                if key in pending:  # the same entry twice in one file: the last row wins
                    pending[key].name, pending[key].aliases = row.name, list(row.aliases)
                    continue
                pending[key] = SanctionsEntry(name=row.name, aliases=list(row.aliases), source=source, list_id=row.list_id)
                new.append(pending[key])
                continue
            if entry.pk in seen:
                continue
            seen.add(entry.pk)
            if entry.name != row.name or list(entry.aliases or []) != list(row.aliases) or not entry.active:
                entry.name, entry.aliases, entry.active, entry.updated_at = row.name, list(row.aliases), True, timezone.now()
                changed.append(entry)
            else:
                result.unchanged += 1
        SanctionsEntry.objects.bulk_create(new, batch_size=1000)
        SanctionsEntry.objects.bulk_update(changed, ["name", "aliases", "active", "updated_at"], batch_size=1000)
        result.created, result.updated = len(new), len(changed)
        if format in FULL_LISTS:
            gone = [e.pk for e in existing if e.active and e.pk not in seen]
            result.deactivated = SanctionsEntry.objects.filter(pk__in=gone).update(active=False, updated_at=timezone.now())
        if result.changed:
            rules_changed()
        audit_record(
            actor=actor, action="sanctions.import",
            data={"source": source, "format": format, "created": result.created, "updated": result.updated,
                  "unchanged": result.unchanged, "deactivated": result.deactivated},
        )
    return result


def sanctions_read_location(location: str, *, timeout: float = 60.0) -> str:
    """The text at a file path or an http(s) URL (SANCTIONS_SOURCE_LOCATION)."""
    if location.startswith(("http://", "https://")):
        request = urllib.request.Request(location, headers={"User-Agent": "coffer-sanctions-import/1"})
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - configured by the operator
            if response.status != 200:
                raise InvalidState(f"{location} answered {response.status}.")
            return response.read().decode("utf-8-sig")
    if location.startswith("file://"):
        location = location[len("file://"):]
    return Path(location).read_text(encoding="utf-8-sig")


def sanctions_list_needed() -> bool:
    """True while an active sanctions rule screens against an empty list (the admin home warns)."""
    return RiskRule.objects.filter(kind="sanctions", active=True).exists() and not SanctionsEntry.objects.filter(active=True).exists()


# --- Re-screening and the whitelist -----------------------------------------------------------------


@dataclass
class RescreenResult:
    names_checked: int = 0
    new_hits: int = 0


def _threshold() -> float:
    rule = RiskRule.objects.filter(kind="sanctions", active=True).order_by("id").first()
    try:
        return float(Decimal(str((rule.params or {}).get("threshold", "90")))) if rule else 90.0
    except Exception:
        return 90.0


def sanctions_candidates(name: str, *, threshold: float, limit: int = 5) -> list[tuple[int, str, float]]:
    """Active entries matching `name` at or above `threshold`, best first, cleared ones left out:
    [(entry id, matched name or alias, score)]."""
    from rapidfuzz import utils as fuzz_utils

    query = fuzz_utils.default_process(name or "")
    if not query:
        return []
    choices, owners = rules().sanctions()
    if not choices:
        return []
    found: dict[int, tuple[int, str, float]] = {}
    for _, score, key in process.extract(query, choices, scorer=fuzz.token_sort_ratio, processor=None, score_cutoff=threshold, limit=limit * 4):
        entry_id, matched = owners[key]
        if entry_id not in found:
            found[entry_id] = (entry_id, matched, float(score))
    if not found:
        return []
    cleared = set(SanctionsClearance.objects.filter(name=normalized_name(name), entry_id__in=list(found)).values_list("entry_id", flat=True))
    return [hit for entry_id, hit in found.items() if entry_id not in cleared][:limit]


def sanctions_rescreen(*, actor=None) -> RescreenResult:
    """Match every customer name and payout beneficiary name against the active list; open a
    `ScreeningHit` for each new (subject, name, entry). Idempotent: a hit already open, cleared
    or confirmed is not opened again."""
    threshold = _threshold()
    result = RescreenResult()
    subjects: list[tuple[str, int | None, str]] = [
        (ScreeningHit.Subject.CUSTOMER, pk, name)
        for pk, name in Customer.objects.exclude(name="").values_list("pk", "name").iterator()
    ]
    # Beneficiaries are stored encrypted (wallets.beneficiaries): one per keyed hash, decrypted
    # here to be screened, never shown.
    encrypted_names = dict(Payout.objects.exclude(beneficiary_name_encrypted="").order_by("beneficiary_hash", "pk")
                           .values_list("beneficiary_hash", "beneficiary_name_encrypted").iterator())
    subjects += [(ScreeningHit.Subject.BENEFICIARY, None, name) for name in dict.fromkeys(beneficiary_names_of(encrypted_names.values()))]
    for subject, customer_id, name in subjects:
        result.names_checked += 1
        for entry_id, matched, score in sanctions_candidates(name, threshold=threshold):
            hit, created = ScreeningHit.objects.get_or_create(
                subject=subject, name_key=normalized_name(name), entry_id=entry_id,
                defaults={"customer_id": customer_id, "name": name[:300], "matched": matched[:300], "score": Decimal(f"{score:.2f}")},
            )
            if created:
                result.new_hits += 1
                audit_record(actor=actor, action="sanctions.hit", target=hit,
                             data={"subject": subject, "customer_id": customer_id, "name": name, "entry_id": entry_id, "score": f"{score:.2f}"})
    audit_record(actor=actor, action="sanctions.rescreened", data={"names_checked": result.names_checked, "new_hits": result.new_hits})
    return result


def screening_hit_decide(*, hit_id: int, actor, reason: str, clear: bool) -> ScreeningHit:
    """Clear a hit as a false positive (the name goes on the whitelist for that entry) or confirm
    it. Reason required; a decided hit is not decided again."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("reason: a reason is required.", details={"fields": {"reason": ["A reason is required."]}})
    with transaction.atomic():
        hit = ScreeningHit.objects.select_for_update().get(pk=hit_id)
        if hit.status != ScreeningHit.Status.OPEN:
            raise InvalidState(f"Screening hit {hit_id} is {hit.status}, not open.")
        hit.status = ScreeningHit.Status.CLEARED if clear else ScreeningHit.Status.CONFIRMED
        hit.decision_reason, hit.decided_at = reason[:500], timezone.now()
        hit.decided_by = actor if getattr(actor, "pk", None) else None
        hit.save(update_fields=["status", "decision_reason", "decided_by", "decided_at"])
        if clear:
            sanctions_clear(name=hit.name, entry_id=hit.entry_id, reason=reason, actor=actor)
        audit_record(actor=actor, action="sanctions.hit_cleared" if clear else "sanctions.hit_confirmed", target=hit,
                     data={"name": hit.name, "entry_id": hit.entry_id, "reason": reason})
    return hit


def sanctions_clear(*, name: str, entry_id: int, reason: str, actor) -> SanctionsClearance:
    """Whitelist `name` against one entry (a cleared false positive)."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("reason: a reason is required.", details={"fields": {"reason": ["A reason is required."]}})
    key = normalized_name(name)
    if not key:
        raise ValidationFailed("name: a name is required.", details={"fields": {"name": ["A name is required."]}})
    with transaction.atomic():
        clearance, created = SanctionsClearance.objects.get_or_create(
            name=key, entry_id=entry_id,
            defaults={"display_name": name[:300], "reason": reason[:500], "cleared_by": actor if getattr(actor, "pk", None) else None},
        )
        if created:
            audit_record(actor=actor, action="sanctions.cleared", target=clearance, data={"name": name, "entry_id": entry_id, "reason": reason})
    return clearance
