"""Sanctions list import (admin action and `manage.py import_sanctions FILE`).

CSV with a header row `name,aliases,list_id` (extra columns ignored). `aliases` holds the
alternative names separated by `;` or `|`. Rows are upserted by (source, list_id): a row whose
list_id is already on the list updates that entry (name, aliases, active again); a row without
list_id is added unless an entry of that source has the same name. Blank names are refused with
their line number; nothing is imported from a file with errors (one transaction). The import is
recorded in the audit chain.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from django.db import transaction

from compliance.models import SanctionsEntry
from core.errors import ValidationFailed


@dataclass
class SanctionsImportResult:
    created: int = 0
    updated: int = 0
    errors: list[str] = field(default_factory=list)


def _split_aliases(raw: str) -> list[str]:
    parts = [p.strip() for chunk in (raw or "").split("|") for p in chunk.split(";")]
    return [p for p in parts if p]


def sanctions_import(*, text: str, source: str = "", actor=None) -> SanctionsImportResult:
    from compliance.services import audit_record

    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if "name" not in header:
        raise ValidationFailed("file: the CSV needs a header row with at least a 'name' column (name,aliases,list_id).")
    reader.fieldnames = header
    rows = []
    result = SanctionsImportResult()
    for line, row in enumerate(reader, start=2):
        name = (row.get("name") or "").strip()
        if not name:
            result.errors.append(f"line {line}: name is empty")
            continue
        rows.append((name[:300], _split_aliases(row.get("aliases") or ""), (row.get("list_id") or "").strip()[:100]))
    if result.errors:
        raise ValidationFailed("file: " + "; ".join(result.errors[:20]), details={"errors": result.errors})
    source = (source or "").strip()[:100]
    with transaction.atomic():
        for name, aliases, list_id in rows:
            if list_id:
                existing = SanctionsEntry.objects.filter(source=source, list_id=list_id).first()
            else:
                existing = SanctionsEntry.objects.filter(source=source, list_id="", name=name).first()
            if existing is None:
                SanctionsEntry.objects.create(name=name, aliases=aliases, source=source, list_id=list_id)
                result.created += 1
            else:
                existing.name, existing.aliases, existing.active = name, aliases, True
                existing.save(update_fields=["name", "aliases", "active", "updated_at"])
                result.updated += 1
        audit_record(actor=actor, action="sanctions.import", data={"source": source, "created": result.created, "updated": result.updated})
    return result
