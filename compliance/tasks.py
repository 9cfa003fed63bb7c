"""Celery tasks of compliance, and their beat entry (registered here, not in settings).

- `advance_audit_chain()`: every AUDIT_CHAIN_ADVANCE_SECONDS (2 s), writes the counted events of
  minutes that have ended (failed authentications, `audit_counts_flush`), then links committed
  events into the audit chain (`audit_chain_advance`). Safe to run twice at once: a second
  sequencer finds the advisory lock taken and skips, and a counted minute is claimed once.
- `sanctions_reimport()`: every SANCTIONS_REIMPORT_SECONDS (6 h), re-imports the configured list
  and re-screens when it changed; `sanctions_rescreen_task()` after an admin import.
"""

import logging

from django.conf import settings

from compliance.audit import audit_chain_advance, audit_counts_flush
from config.celery import app

logger = logging.getLogger("coffer.compliance.tasks")


@app.task(name="compliance.tasks.advance_audit_chain", ignore_result=True)
def advance_audit_chain() -> int:
    audit_counts_flush()
    return audit_chain_advance().linked


_EVERY = float(getattr(settings, "AUDIT_CHAIN_ADVANCE_SECONDS", 2.0))
app.conf.beat_schedule["compliance.advance_audit_chain"] = {
    "task": "compliance.tasks.advance_audit_chain",
    "schedule": _EVERY,
    # A run that waited in the queue longer than a few periods is stale: the next one does its work.
    "options": {"expires": max(_EVERY * 3, 5.0)},
}


@app.task(name="compliance.tasks.sanctions_rescreen", ignore_result=True)
def sanctions_rescreen_task() -> int:
    """Re-screen customers and beneficiaries against the list (enqueued after an import commits)."""
    from compliance.sanctions import sanctions_rescreen

    return sanctions_rescreen().new_hits


@app.task(name="compliance.tasks.sanctions_reimport", ignore_result=True)
def sanctions_reimport() -> dict:
    """Every SANCTIONS_REIMPORT_SECONDS: import the list at SANCTIONS_SOURCE_LOCATION (a file path
    or URL) in SANCTIONS_SOURCE_FORMAT, then re-screen if it changed. Nothing configured:
    nothing to do. A failed download or a malformed file changes nothing and is audited."""
    from compliance.sanctions import sanctions_import, sanctions_read_location, sanctions_rescreen
    from compliance.audit import audit_record
    from core.errors import CofferError

    location = getattr(settings, "SANCTIONS_SOURCE_LOCATION", "")
    if not location:
        return {"skipped": "SANCTIONS_SOURCE_LOCATION is not set"}
    try:
        text = sanctions_read_location(location)
        result = sanctions_import(
            text=text, format=getattr(settings, "SANCTIONS_SOURCE_FORMAT", "auto") or "auto",
            source=getattr(settings, "SANCTIONS_SOURCE_NAME", ""),
        )
    except (OSError, CofferError, UnicodeDecodeError) as exc:
        message = getattr(exc, "message", None) or str(exc)
        logger.error("sanctions re-import from %s failed: %s", location, message)
        audit_record(action="sanctions.import_failed", data={"location": location, "error": message[:500]})
        return {"error": message}
    summary = {"created": result.created, "updated": result.updated, "deactivated": result.deactivated}
    if result.changed:
        summary["new_hits"] = sanctions_rescreen().new_hits
    return summary


_REIMPORT_EVERY = float(getattr(settings, "SANCTIONS_REIMPORT_SECONDS", 6 * 3600.0))
app.conf.beat_schedule["compliance.sanctions_reimport"] = {
    "task": "compliance.tasks.sanctions_reimport",
    "schedule": _REIMPORT_EVERY,
    "options": {"expires": max(_REIMPORT_EVERY / 2, 60.0)},
}
