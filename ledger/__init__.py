"""The ledger app: the books (SPEC 3, 4). Balances, holds, postings and entries are written
only by `ledger.posting`; reads and access rules live in `ledger.selectors` (docs/ledger.md)."""
