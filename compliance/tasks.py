"""Celery tasks of compliance, and their beat entry (registered here, not in settings).

- `advance_audit_chain()`: every AUDIT_CHAIN_ADVANCE_SECONDS (2 s), writes the counted events of
  minutes that have ended (failed authentications, `audit_counts_flush`), then links committed
  events into the audit chain (`audit_chain_advance`). Safe to run twice at once: a second
  sequencer finds the advisory lock taken and skips, and a counted minute is claimed once.
"""

from django.conf import settings

from compliance.services import audit_chain_advance, audit_counts_flush
from config.celery import app


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
