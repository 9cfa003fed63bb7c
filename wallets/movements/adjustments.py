"""A reconciliation line's adjustment: money booked on the reconciled wallet to make the books
match the statement (`ledger.reconciliation` records the lines; this moves the money, so it runs
the money path). Staff only, from the admin.

Invariants:
* The reconciliation row is locked first, then the line read (`reconciliation_line_locked`): a
  line is resolved once.
* The adjustment is a ledger transaction of type `adjustment`, `issue` (money in) or `redeem`
  (money out) of the line's amount, through `money_path` without limits, 2FA or risk rules (staff
  correct the books; every wallet still stays >= 0), with a required reason, the reference
  `reconciliation-<id>-line-<id>` and its audit event. A refused posting is recorded as a failed
  transaction and raised; the line stays unmatched.
"""

from __future__ import annotations

from django.db import transaction as db_transaction

from accounts.models import User
from compliance.models import Direction, MovementType
from core.money import format_amount
from ledger.models import Transaction
from ledger.posting import Issue, Redeem
from ledger.reconciliation.models import ReconciliationLine as Line
from ledger.reconciliation.services import (
    reconciliation_line_locked,
    reconciliation_line_resolved,
    reconciliation_owner,
    reconciliation_reason,
    reconciliation_status,
)
from ledger.selectors import wallets_with_owners
from wallets.pipeline import MoneyMovement, money_path


def reconciliation_line_adjust(*, line_id: int, actor: User, reason: str) -> Line:
    """Book an adjustment for an unmatched line through the money path (module docstring): its
    own database transaction, so a refused posting's failed transaction commits before the
    refusal is raised."""
    reason = reconciliation_reason(reason)
    with db_transaction.atomic():
        rec, line = reconciliation_line_locked(line_id)
        signed = line.amount if line.kind == Line.Kind.EXTERNAL else -line.transaction_amount
        wallet = wallets_with_owners("w.id = %s", [rec.wallet_id])[rec.wallet_id]
        amount = abs(signed)
        incoming = signed > 0
        operations = [Issue(wallet=wallet.pk, amount=amount) if incoming else Redeem(wallet=wallet.pk, amount=amount)]
        exponent = wallet.asset.exponent

        def after_post(tx: Transaction) -> None:
            line.adjustment_transaction = tx
            reconciliation_line_resolved(rec, line, actor=actor, reason=reason, method=Line.Method.ADJUSTMENT)
            line.save()
            rec.adjustments_total += signed
            rec.status = reconciliation_status(rec)
            rec.save(update_fields=["adjustments_total", "status", "updated_at"])

        result = money_path(MoneyMovement(
            actor=actor, movement_type=MovementType.DEPOSIT if incoming else MovementType.WITHDRAWAL,
            ledger_type=Transaction.Type.ADJUSTMENT, wallet=wallet, amount=amount, operations=operations,
            direction=Direction.INCOMING if incoming else Direction.OUTGOING, limits=[], step_up=False, risk=False,
            organization=reconciliation_owner(wallet), reference=f"reconciliation-{rec.pk}-line-{line.pk}",
            description=f"Reconciliation {rec.pk} adjustment: {reason}"[:500],
            metadata={"reconciliation": {"id": rec.pk, "line_id": line.pk, "reason": reason}}, after_post=after_post,
            audit_action="reconciliation.adjustment_{status}",
            audit_data={"reconciliation_id": rec.pk, "line_id": line.pk, "reason": reason,
                        "signed_amount": format_amount(signed, exponent), "staff": True},
        ))
    result.raise_for_error()
    return line
