"""The audit chain as tests check it: the sequencer links what is committed (in a test that runs
inside one transaction, the test's own events), then the chain is verified."""

from typing import Any

from compliance.models import AuditEvent
from compliance.audit import audit_chain_advance, audit_verify


def audit_chain_verified() -> dict[str, Any]:
    """`audit_verify()` after linking every committed event; asserts none was left unlinked."""
    advance = audit_chain_advance()
    assert not advance.skipped and not advance.halted, advance
    assert not AuditEvent.objects.filter(sequence__isnull=True).exists(), "events left unlinked"
    return audit_verify()
