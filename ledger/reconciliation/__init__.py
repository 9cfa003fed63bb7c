"""Reconciliation of external statements against the ledger (issue 13 item 5).

`parsers` reads a CSV or an ISO 20022 camt.053 file, `matching` pairs its lines with ledger
transactions, `services` stores the result and resolves lines (by hand, or by an adjustment
through the money path), `selectors` reads it; `models` holds the rows. See each module.
"""
