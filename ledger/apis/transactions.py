"""`/transactions`: an organization's multi-operation transactions (`POST`), and the history
shared by users and organizations (`GET` list, detail, entries).

Invariants:
* `POST /transactions` is money movement: its `reference` is the retry key (a used one is 409
  DUPLICATE_REFERENCE with that transaction), so `Idempotency-Key` is optional; with one,
  `@idempotent` owns the request's durable transaction as on every money endpoint, and the
  failed transaction a refused posting records commits with the 4xx. Throttled by MoneyThrottle.
* Reads show only what `ledger.selectors` lets the viewer see; another caller's object is 404.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.response import Response

from accounts.orgs.tenancy import IsOrganization
from accounts.identity.throttles import MoneyThrottle
from core.idempotency import idempotent
from core.openapi import ORG_HEADER, ErrorOutput, error_example, idempotency_header, paginated
from ledger.apis.common import AUTH_ERRORS, NOT_FOUND, IsOrganizationOrUser, viewer_of
from ledger.filters import TransactionFilter
from ledger.models import Transaction
from ledger.selectors import transaction_entries_visible, transaction_get, transactions_visible
from ledger.serializers import (
    LedgerEntryOutput,
    LedgerTransactionCreateInput,
    LedgerTransactionDetailOutput,
    LedgerTransactionOutput,
    TransactionPresenter,
    transactions_with_entries,
    validated,
)
from wallets.movements.organization import organization_transaction_post

REFERENCE_IDEMPOTENCY_PARAMETER = idempotency_header(
    required=False,
    description="Optional here: the transaction's `reference` is its retry key (a reference used before, completed or "
    "failed, is 409 DUPLICATE_REFERENCE carrying that transaction). With a key, the key's rules apply as on every money "
    "endpoint (same key and body: the first response replayed).",
)

TX_EXAMPLE = {
    "id": 981, "type": "ledger", "status": "completed", "amount": "6", "currency": "POINTS", "fee": "0",
    "source_wallet_id": None, "source_wallet_name": None, "destination_wallet_id": 31, "destination_wallet_name": "Ada Lovelace",
    "reference": "order-77", "description": "Top-up and spend", "created_at": "2026-05-31T12:05:00Z",
    "completed_at": "2026-05-31T12:05:00Z", "balance_after": "11",
}
ENTRIES_EXAMPLE = [
    {"id": 501, "transaction_id": 981, "wallet_id": 4, "entry_type": "debit", "amount": "6", "currency": "POINTS",
     "balance_after": None, "operation_index": 0, "created_at": "2026-05-31T12:05:00Z"},
    {"id": 502, "transaction_id": 981, "wallet_id": 31, "entry_type": "credit", "amount": "6", "currency": "POINTS",
     "balance_after": "11", "operation_index": 0, "created_at": "2026-05-31T12:05:00Z"},
    {"id": 503, "transaction_id": 981, "wallet_id": 31, "entry_type": "debit", "amount": "11", "currency": "POINTS",
     "balance_after": "0", "operation_index": 1, "created_at": "2026-05-31T12:05:00Z"},
    {"id": 504, "transaction_id": 981, "wallet_id": 32, "entry_type": "credit", "amount": "11", "currency": "POINTS",
     "balance_after": "18", "operation_index": 1, "created_at": "2026-05-31T12:05:00Z"},
]
TX_DETAIL_EXAMPLE = {
    **TX_EXAMPLE, "balance_after": "0", "metadata": {"order": "77"}, "reversal_of": None, "reversed_amount": "0", "failure": None,
    "operations": [
        {"index": 0, "type": "issue", "wallet_id": 31, "amount": "6", "currency": "POINTS"},
        {"index": 1, "type": "transfer", "source_wallet_id": 31, "destination_wallet_id": 32, "amount": "11", "currency": "POINTS"},
    ],
    "entries": ENTRIES_EXAMPLE,
}
FAILED_DETAIL_EXAMPLE = {
    **TX_DETAIL_EXAMPLE, "id": 980, "status": "failed", "amount": "11", "source_wallet_id": 31, "source_wallet_name": "Ada Lovelace",
    "destination_wallet_id": 32, "destination_wallet_name": "Bob", "reference": "order-76", "completed_at": None, "balance_after": None,
    "failure": {"code": "INSUFFICIENT_FUNDS", "message": "Operation 0: wallet 31 has insufficient available funds.", "operation_index": 0},
    "operations": [
        {"index": 0, "type": "transfer", "source_wallet_id": 31, "destination_wallet_id": 32, "amount": "11", "currency": "POINTS"},
        {"index": 1, "type": "issue", "wallet_id": 31, "amount": "6", "currency": "POINTS"},
    ],
    "entries": [],
}
USER_TX_EXAMPLE = {
    "id": 1002, "type": "transfer", "status": "completed", "amount": "100.00", "currency": "USD", "fee": "0.00",
    "source_wallet_id": 42, "source_wallet_name": "Jane Doe", "destination_wallet_id": 43, "destination_wallet_name": "John Smith",
    "reference": "", "description": "Dinner", "created_at": "2026-05-31T12:05:00Z", "completed_at": "2026-05-31T12:05:00Z",
    "balance_after": "550.00",
}
USER_ENTRIES_EXAMPLE = [
    {"id": 5, "transaction_id": 1002, "wallet_id": 42, "entry_type": "debit", "amount": "100.00", "currency": "USD",
     "balance_after": "550.00", "operation_index": 0, "created_at": "2026-05-31T12:05:00Z"},
    {"id": 6, "transaction_id": 1002, "wallet_id": 43, "entry_type": "credit", "amount": "100.00", "currency": "USD",
     "balance_after": None, "operation_index": 0, "created_at": "2026-05-31T12:05:00Z"},
]


class LedgerTransactionListCreateApi(generics.GenericAPIView):
    serializer_class = LedgerTransactionOutput
    queryset = Transaction.objects.none()
    filterset_class = TransactionFilter

    def get_permissions(self):
        return [IsOrganization()] if self.request.method == "POST" else [IsOrganizationOrUser()]

    def get_throttles(self):
        return [MoneyThrottle()] if self.request.method == "POST" else super().get_throttles()

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Transaction.objects.none()
        return transactions_visible(viewer=viewer_of(self.request))

    @extend_schema(
        operation_id="transactions_list", tags=["ledger: transactions"], parameters=[ORG_HEADER],
        summary="Transaction history, newest first (yours as a user; your organization's with an API key)",
        responses={200: LedgerTransactionOutput(many=True), 400: OpenApiResponse(ErrorOutput, description="VALIDATION_ERROR: a bad filter value, e.g. from=yesterday"), **AUTH_ERRORS},
        examples=[
            OpenApiExample("A user's history", value=paginated(USER_TX_EXAMPLE), response_only=True),
            OpenApiExample("Bad date", value=error_example("VALIDATION_ERROR", "Invalid input: from: Enter an ISO 8601 date or date-time, e.g. 2026-05-31 or 2026-05-31T12:00:00Z.",
                                                    {"fields": {"from": ["Enter an ISO 8601 date or date-time, e.g. 2026-05-31 or 2026-05-31T12:00:00Z."]}}),
                           response_only=True, status_codes=["400"]),
        ],
    )
    def get(self, request):
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(transactions_with_entries(queryset))
        data = TransactionPresenter(viewer=viewer_of(request)).many(page)
        return self.get_paginated_response(LedgerTransactionOutput(data, many=True).data)

    @extend_schema(
        operation_id="transactions_create", tags=["ledger: transactions"], parameters=[REFERENCE_IDEMPOTENCY_PARAMETER, ORG_HEADER],
        summary="Post operations (issue, redeem, transfer) in order, all or none",
        description=(
            "Operations apply in the order given and every wallet must stay at or above zero after each one (seed 003: "
            "transferring 11 out of a wallet holding 5 before issuing 6 to it fails at operation_index 0; issuing first "
            "succeeds). Every wallet must be one of your organization's (system wallets and your customers' wallets), "
            "else 404. A refused posting is recorded as a failed transaction, announced by a `transaction.failed` "
            "webhook and answered with its code (INSUFFICIENT_FUNDS 422, WALLET_INACTIVE 409, CURRENCY_MISMATCH 400) and "
            "`details` {operation_index, code, reason, transaction_id, transaction}. A reference you already used, for "
            "a completed or a failed transaction, is 409 DUPLICATE_REFERENCE whose `details.transaction` is that "
            "transaction: the safe way to recover after a lost response."
        ),
        request=LedgerTransactionCreateInput,
        responses={
            201: LedgerTransactionDetailOutput,
            400: OpenApiResponse(ErrorOutput, description="VALIDATION_ERROR naming the field (e.g. operations[1].amount), IDEMPOTENCY_KEY_REQUIRED, CURRENCY_MISMATCH"),
            **AUTH_ERRORS,
            404: OpenApiResponse(ErrorOutput, description="NOT_FOUND: a wallet that is not your organization's"),
            409: OpenApiResponse(ErrorOutput, description="DUPLICATE_REFERENCE (details.transaction), WALLET_INACTIVE, IDEMPOTENCY_KEY_IN_PROGRESS"),
            422: OpenApiResponse(ErrorOutput, description="INSUFFICIENT_FUNDS (the failed transaction is recorded), IDEMPOTENCY_KEY_REUSED"),
            429: OpenApiResponse(ErrorOutput, description="RATE_LIMITED (Retry-After)"),
        },
        examples=[
            OpenApiExample("Issue, then spend", request_only=True, value={
                "reference": "order-77", "description": "Top-up and spend", "metadata": {"order": "77"},
                "operations": [
                    {"type": "issue", "wallet_id": 31, "amount": "6"},
                    {"type": "transfer", "source_wallet_id": 31, "destination_wallet_id": 32, "amount": "11"},
                ]}),
            OpenApiExample("Completed", value=TX_DETAIL_EXAMPLE, response_only=True, status_codes=["201"]),
            OpenApiExample("Failed at operation 0", response_only=True, status_codes=["422"], value=error_example(
                "INSUFFICIENT_FUNDS", "Operation 0: wallet 31 has insufficient available funds.",
                {"operation_index": 0, "wallet_id": 31, "code": "INSUFFICIENT_FUNDS",
                 "reason": "Operation 0: wallet 31 has insufficient available funds.", "transaction_id": 980,
                 "transaction": FAILED_DETAIL_EXAMPLE})),
            OpenApiExample("Reference already used", response_only=True, status_codes=["409"], value=error_example(
                "DUPLICATE_REFERENCE", "The reference 'order-77' was already used (transaction 981).",
                {"reference": "order-77", "transaction_id": 981, "status": "completed", "type": "ledger", "transaction": TX_DETAIL_EXAMPLE})),
            OpenApiExample("Not your wallet", response_only=True, status_codes=["404"], value=error_example(
                "NOT_FOUND", "Wallet not found.", {"operation_index": 1, "field": "operations[1].destination_wallet_id"})),
            OpenApiExample("Bad amount", response_only=True, status_codes=["400"], value=error_example(
                "VALIDATION_ERROR", "operations[0].amount: This asset allows at most 0 decimals.",
                {"fields": {"operations[0].amount": ["This asset allows at most 0 decimals."]}})),
        ],
    )
    @idempotent(endpoint="ledger.transactions.create", key_optional=True)
    def post(self, request):
        data = validated(LedgerTransactionCreateInput(data=request.data))
        representation = organization_transaction_post(organization=request.organization, principal=request.user, **data)
        return Response(
            representation,  # LedgerTransactionDetailOutput's shape, without a serializer pass (tested)
            status=status.HTTP_201_CREATED,
            headers={"Location": f"/api/v1/transactions/{representation['id']}"},
        )


class LedgerTransactionDetailApi(generics.GenericAPIView):
    serializer_class = LedgerTransactionOutput
    queryset = Transaction.objects.none()
    permission_classes = [IsOrganizationOrUser]

    @extend_schema(
        operation_id="transactions_retrieve", tags=["ledger: transactions"], parameters=[ORG_HEADER],
        summary="One transaction (for organizations: with its operations, entries and failure)",
        responses={200: LedgerTransactionDetailOutput, **AUTH_ERRORS, **NOT_FOUND},
        examples=[
            OpenApiExample("As an organization", value=TX_DETAIL_EXAMPLE, response_only=True),
            OpenApiExample("As a user", value=USER_TX_EXAMPLE, response_only=True),
        ],
    )
    def get(self, request, transaction_id: int):
        viewer = viewer_of(request)
        tx = transaction_get(viewer=viewer, transaction_id=transaction_id)
        tx = transactions_with_entries(Transaction.objects.filter(pk=tx.pk)).get()
        detail = viewer.organization is not None
        data = TransactionPresenter(viewer=viewer).one(tx, detail=detail)
        return Response((LedgerTransactionDetailOutput if detail else LedgerTransactionOutput)(data).data)


class LedgerTransactionEntriesApi(generics.GenericAPIView):
    serializer_class = LedgerEntryOutput
    queryset = Transaction.objects.none()
    permission_classes = [IsOrganizationOrUser]
    filter_backends: list = []

    @extend_schema(
        operation_id="transactions_entries", tags=["ledger: transactions"], parameters=[ORG_HEADER],
        summary="A transaction's entries in posting order (balance snapshots only on your own wallets)",
        responses={200: LedgerEntryOutput(many=True), **AUTH_ERRORS, **NOT_FOUND},
        examples=[OpenApiExample("Entries", value=paginated(*USER_ENTRIES_EXAMPLE), response_only=True)],
    )
    def get(self, request, transaction_id: int):
        viewer = viewer_of(request)
        entries = transaction_entries_visible(viewer=viewer, transaction_id=transaction_id)
        page = self.paginate_queryset(entries)
        presenter = TransactionPresenter(viewer=viewer)
        return self.get_paginated_response(LedgerEntryOutput([presenter.entry(e) for e in page], many=True).data)

