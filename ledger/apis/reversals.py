"""`POST /transactions/{id}/reverse`: an organization reverses a transaction it posted, in full or
in part (`wallets.movements.reversals`).

Invariants:
* Money movement: `Idempotency-Key` required (`@idempotent` owns the durable transaction, so a
  refused reversal's failed transaction commits with its 422); throttled by MoneyThrottle; the
  key needs `ledger:write`.
* Anyone else's transaction is 404; the envelope and codes of SPEC 5.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.identity.throttles import MoneyThrottle
from accounts.orgs.tenancy import IsOrganization
from core.fields import RawAmountField
from core.idempotency import idempotent
from core.openapi import ErrorOutput, ORG_HEADER, error_example
from ledger.apis.common import AUTH_ERRORS
from ledger.apis.transactions import TX_DETAIL_EXAMPLE
from wallets.movements.reversals import organization_transaction_reverse
from ledger.serializers import LedgerTransactionDetailOutput, validated


class ReversalInput(serializers.Serializer):
    amount = RawAmountField(required=False, help_text='Part of the transaction\'s amount (its first operation, in its currency) to reverse, e.g. "40.00". Default: all that remains.')
    reason = serializers.CharField(max_length=500, help_text="Why: kept on the reversal and in the audit log.")
    include_fees = serializers.BooleanField(required=False, default=True, help_text="Reverse the fee legs pro rata with the rest (default true).")
    reference = serializers.CharField(max_length=200, required=False, allow_blank=True, default="", help_text="Your own reference for the reversal transaction (unique like any transaction reference).")

    def validate_reason(self, value: str) -> str:
        value = value.strip()
        if not value:
            raise serializers.ValidationError("A reason is required.")
        return value


class ReversalOriginalOutput(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField(help_text="completed while something remains reversible, reversed once all of it is.")
    amount = serializers.CharField()
    currency = serializers.CharField()
    reversed_amount = serializers.CharField()
    remaining_amount = serializers.CharField()


class ReversalOutput(LedgerTransactionDetailOutput):
    original = ReversalOriginalOutput()


ORIGINAL_EXAMPLE = {"id": 981, "status": "completed", "amount": "6", "currency": "POINTS", "reversed_amount": "2", "remaining_amount": "4"}
REVERSAL_EXAMPLE = {
    **TX_DETAIL_EXAMPLE, "id": 990, "type": "reversal", "amount": "2", "reference": "", "reversal_of": 981, "reversed_amount": "0",
    "description": "Reversal of transaction 981: customer cancelled", "destination_wallet_id": None, "destination_wallet_name": None,
    "source_wallet_id": 31, "source_wallet_name": "Ada Lovelace", "balance_after": "9",
    "metadata": {"reversal": {"of": 981, "amount": "2", "include_fees": True, "reason": "customer cancelled", "legs": {"0": "2"}}},
    "operations": [{"index": 0, "type": "redeem", "wallet_id": 31, "amount": "2", "currency": "POINTS"}],
    "entries": [
        {"id": 601, "transaction_id": 990, "wallet_id": 31, "entry_type": "debit", "amount": "2", "currency": "POINTS",
         "balance_after": "9", "operation_index": 0, "created_at": "2026-05-31T13:00:00Z"},
        {"id": 602, "transaction_id": 990, "wallet_id": 4, "entry_type": "credit", "amount": "2", "currency": "POINTS",
         "balance_after": None, "operation_index": 0, "created_at": "2026-05-31T13:00:00Z"},
    ],
    "original": ORIGINAL_EXAMPLE,
}


class TransactionReverseApi(APIView):
    permission_classes = [IsOrganization]
    throttle_classes = [MoneyThrottle]

    @extend_schema(
        operation_id="transactions_reverse", tags=["ledger: transactions"], parameters=[ORG_HEADER],
        summary="Reverse a completed transaction, in full or in part",
        description=(
            "Posts a NEW `reversal` transaction mirroring the original's operations (inverted, in reverse order): all that "
            "remains, or `amount` of the original's amount (its first operation) with every other operation pro rata, "
            "rounded to the minor unit by largest remainder (no unit lost; the reversal that completes the original takes "
            "the exact remainders). Fees are reversed with their legs unless `include_fees` is false. The reversal names "
            "the original in `reversal_of`; the original's `reversed_amount` grows, and it becomes `reversed` once all of "
            "it is. A wallet that no longer holds the money refuses it: 422 INSUFFICIENT_FUNDS, and the failed reversal is "
            "recorded (`details.transaction`). Webhook `transaction.reversed`. Idempotency-Key required."
        ),
        request=ReversalInput,
        responses={
            201: ReversalOutput,
            400: OpenApiResponse(ErrorOutput, description="VALIDATION_ERROR (reason missing, amount malformed), IDEMPOTENCY_KEY_REQUIRED"),
            **AUTH_ERRORS,
            404: OpenApiResponse(ErrorOutput, description="NOT_FOUND: not a transaction your organization posted"),
            409: OpenApiResponse(ErrorOutput, description="INVALID_STATE: not completed, already fully reversed, a reversal, or amount past what remains; "
                                                          "WALLET_INACTIVE; DUPLICATE_REFERENCE; IDEMPOTENCY_KEY_IN_PROGRESS"),
            422: OpenApiResponse(ErrorOutput, description="INSUFFICIENT_FUNDS (the failed reversal is recorded), IDEMPOTENCY_KEY_REUSED"),
            429: OpenApiResponse(ErrorOutput, description="RATE_LIMITED (Retry-After)"),
        },
        examples=[
            OpenApiExample("Partial", request_only=True, value={"amount": "2", "reason": "customer cancelled"}),
            OpenApiExample("All that remains, fees kept", request_only=True, value={"reason": "duplicate order", "include_fees": False}),
            OpenApiExample("Reversed in part", response_only=True, status_codes=["201"], value=REVERSAL_EXAMPLE),
            OpenApiExample("Already fully reversed", response_only=True, status_codes=["409"], value=error_example(
                "INVALID_STATE", "Transaction 981 is already fully reversed: only a completed transaction can be reversed.",
                {"transaction_id": 981, "status": "reversed", "type": "ledger"})),
            OpenApiExample("Past the remainder", response_only=True, status_codes=["409"], value=error_example(
                "INVALID_STATE", "Only 4 POINTS of transaction 981 remains to be reversed.",
                {"transaction_id": 981, "status": "completed", "type": "ledger", "requested_amount": "5", "remaining_amount": "4", "currency": "POINTS"})),
            OpenApiExample("Money already spent", response_only=True, status_codes=["422"], value=error_example(
                "INSUFFICIENT_FUNDS", "Operation 0: wallet 31 has insufficient available funds.",
                {"operation_index": 0, "wallet_id": 31, "code": "INSUFFICIENT_FUNDS", "reason": "Operation 0: wallet 31 has insufficient available funds.",
                 "transaction_id": 991, "transaction": {**REVERSAL_EXAMPLE, "id": 991, "status": "failed", "entries": [], "completed_at": None,
                                                        "balance_after": None, "original": {**ORIGINAL_EXAMPLE, "reversed_amount": "0", "remaining_amount": "6"}}})),
        ],
    )
    @idempotent(endpoint="ledger.transactions.reverse")
    def post(self, request, transaction_id: int):
        data = validated(ReversalInput(data=request.data))
        representation = organization_transaction_reverse(
            organization=request.organization, principal=request.user, transaction_id=transaction_id, reason=data["reason"],
            amount=data.get("amount"), include_fees=data["include_fees"], reference=data["reference"],
        )
        return Response(representation, status=status.HTTP_201_CREATED, headers={"Location": f"/api/v1/transactions/{representation['id']}"})
