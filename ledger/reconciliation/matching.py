"""Matching statement lines to ledger transactions (pure: no database).

Rules, in order:
1. By reference: a line whose reference equals a transaction's reference (trimmed, case
   sensitive) and whose signed amount equals the transaction's net amount on the wallet. A
   reference that names a transaction of another amount is not a match: the line keeps a note.
2. By amount and date: among the transactions not matched yet, one with the same signed amount
   dated within `window_days` days of the line (UTC dates), the closest first, then the lowest id.
Lines are taken in file order; each transaction is matched at most once.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from ledger.reconciliation.parsers import StatementLine


@dataclass(frozen=True)
class LedgerItem:
    transaction_id: int
    amount: Decimal  # net effect on the wallet: + in, - out
    at: dt.datetime
    reference: str = ""
    description: str = ""

    @property
    def day(self) -> dt.date:
        return self.at.astimezone(dt.timezone.utc).date()


@dataclass
class MatchResult:
    pairs: list[tuple[StatementLine, LedgerItem, str]] = field(default_factory=list)  # (line, item, "reference" | "amount_date")
    unmatched_lines: list[StatementLine] = field(default_factory=list)
    unmatched_items: list[LedgerItem] = field(default_factory=list)
    notes: dict[int, str] = field(default_factory=dict)  # line_number -> why a near miss was not matched


def match(lines: list[StatementLine], items: list[LedgerItem], *, window_days: int) -> MatchResult:
    result = MatchResult()
    used: set[int] = set()
    by_reference: dict[str, list[LedgerItem]] = defaultdict(list)
    by_amount: dict[Decimal, list[LedgerItem]] = defaultdict(list)
    for item in sorted(items, key=lambda i: i.transaction_id):
        if item.reference:
            by_reference[item.reference.strip()].append(item)
        by_amount[item.amount].append(item)

    rest: list[StatementLine] = []
    for line in lines:
        named = by_reference.get(line.reference.strip(), []) if line.reference.strip() else []
        found = next((i for i in named if i.transaction_id not in used and i.amount == line.amount), None)
        if found is not None:
            used.add(found.transaction_id)
            result.pairs.append((line, found, "reference"))
            continue
        if named:
            other = named[0]
            result.notes[line.line_number] = (
                f"Reference {line.reference.strip()!r} names transaction {other.transaction_id}, of {other.amount.normalize():f} "
                f"(this line: {line.amount.normalize():f})."
            )
        rest.append(line)

    window = dt.timedelta(days=window_days)
    for line in rest:
        candidates = [
            i for i in by_amount.get(line.amount, [])
            if i.transaction_id not in used and abs(i.day - line.date) <= window
        ]
        if not candidates:
            result.unmatched_lines.append(line)
            continue
        best = min(candidates, key=lambda i: (abs(i.day - line.date), i.transaction_id))
        used.add(best.transaction_id)
        result.pairs.append((line, best, "amount_date"))
    result.unmatched_items = [i for i in sorted(items, key=lambda i: (i.at, i.transaction_id)) if i.transaction_id not in used]
    return result
