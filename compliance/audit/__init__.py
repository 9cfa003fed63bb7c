"""The audit chain (SPEC 4.5, 8): an append-only, keyed hash chain of everything that matters.

A leaf every layer may use: it imports only `core`, `compliance.models` and Django. Write with
`audit_record` / `audit_event` (`record`), count failed authentications with `audit_count`
(`counts`); the sequencer links events into the chain (`sequencer`) and `audit_verify` checks it
(`verify`). docs/audit.md has the design.
"""

from compliance.audit.counts import audit_count, audit_counts_flush
from compliance.audit.record import AUDIT_CHAIN_LOCK_KEY, audit_append, audit_event, audit_event_hash, audit_record, canonical_json
from compliance.audit.sequencer import audit_chain_advance, audit_checkpoint_last
from compliance.audit.verify import audit_verify

__all__ = [
    "AUDIT_CHAIN_LOCK_KEY", "audit_append", "audit_chain_advance", "audit_checkpoint_last", "audit_count", "audit_counts_flush",
    "audit_event", "audit_event_hash", "audit_record", "audit_verify", "canonical_json",
]
