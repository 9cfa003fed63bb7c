"""Customer wallets API (users, JWT): own wallets, their statements, deposits and transfers.

Money endpoints (`/deposits`, `/transfers`) are `@idempotent` (core.idempotency: Idempotency-Key
required, replayed, 409 while running) and throttled by `MoneyThrottle`. Someone else's wallet
is a 404."""

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.tenancy import IsUser
from ledger import apis as ledger_apis  # the organization side of /wallets (ledger.apis)
from accounts.throttles import MoneyThrottle
from core.idempotency import idempotent
from core.pagination import LimitOffsetPagination
from wallets import selectors, services
from wallets.serializers import (
    DepositInput,
    EntryOutput,
    MoneyTransactionOutput,
    TransferInput,
    WalletCreateInput,
    WalletOutput,
)

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    name="Idempotency-Key",
    location=OpenApiParameter.HEADER,
    required=True,
    type=str,
    description=(
        "1-255 printable characters, unique per request you mean to make once (a UUID). Retrying with the same key "
        "and body replays the first response (header `Idempotency-Replayed: true`); a different body is 422 "
        "IDEMPOTENCY_KEY_REUSED; while the first is running, 409 IDEMPOTENCY_KEY_IN_PROGRESS. `X-Idempotency-Key` "
        "is accepted too. Kept at least 24 hours."
    ),
)


def _error(code: str, message: str, details: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


WALLET_EXAMPLE = {
    "id": 42, "currency": "USD", "label": "", "balance": "700.00", "available_balance": "650.00",
    "held_balance": "50.00", "status": "active", "owner_name": "Jane Doe",
    "created_at": "2026-05-31T12:00:00Z", "updated_at": "2026-05-31T12:05:00Z",
}
DEPOSIT_RESULT_EXAMPLE = {
    "id": 1001, "type": "deposit", "status": "completed", "amount": "200.00", "currency": "USD", "fee": "0.00",
    "source_wallet_id": None, "source_wallet_name": None, "destination_wallet_id": 42,
    "destination_wallet_name": "Jane Doe", "reference": "", "description": "Deposit from card",
    "created_at": "2026-05-31T12:01:00Z", "completed_at": "2026-05-31T12:01:00Z", "balance_after": "700.00",
}
TRANSFER_RESULT_EXAMPLE = {
    "id": 1002, "type": "transfer", "status": "completed", "amount": "100.00", "currency": "USD", "fee": "0.00",
    "source_wallet_id": 42, "source_wallet_name": "Jane Doe", "destination_wallet_id": 43,
    "destination_wallet_name": "John Smith", "reference": "", "description": "Dinner",
    "created_at": "2026-05-31T12:05:00Z", "completed_at": "2026-05-31T12:05:00Z", "balance_after": "600.00",
}
MONEY_ERRORS = {
    400: OpenApiResponse(description="VALIDATION_ERROR (naming the field), IDEMPOTENCY_KEY_REQUIRED or CURRENCY_MISMATCH", examples=[
        OpenApiExample("Bad amount", value=_error("VALIDATION_ERROR", "amount: This asset allows at most 2 decimals.", {"fields": {"amount": ["This asset allows at most 2 decimals."]}}), status_codes=["400"]),
        OpenApiExample("No key", value=_error("IDEMPOTENCY_KEY_REQUIRED", "This request moves money: send an Idempotency-Key header."), status_codes=["400"]),
    ]),
    404: OpenApiResponse(description="NOT_FOUND: no such wallet of yours"),
    409: OpenApiResponse(description="IDEMPOTENCY_KEY_IN_PROGRESS or WALLET_INACTIVE", examples=[
        OpenApiExample("Still running", value=_error("IDEMPOTENCY_KEY_IN_PROGRESS", "A request with this Idempotency-Key is still being processed.", {"idempotency_key": "0b7c..."}), status_codes=["409"]),
    ]),
    422: OpenApiResponse(description="INSUFFICIENT_FUNDS (the failed transaction is recorded) or IDEMPOTENCY_KEY_REUSED", examples=[
        OpenApiExample("Insufficient funds", value=_error("INSUFFICIENT_FUNDS", "Wallet 42 would go below zero.", {"operation_index": 0, "transaction_id": 1003}), status_codes=["422"]),
    ]),
    429: OpenApiResponse(description="RATE_LIMITED (Retry-After)"),
}


class _UserApi(APIView):
    permission_classes = [IsUser]


class WalletListCreateApi(_UserApi):
    permission_classes = [ledger_apis.IsOrganizationOrUser]  # organizations: ledger.apis.org_wallets_*

    @extend_schema(
        operation_id="wallets_list", tags=["wallets"], summary="Your wallets",
        responses={200: WalletOutput(many=True)},
        parameters=[OpenApiParameter("limit", int), OpenApiParameter("offset", int), ledger_apis.ORG_HEADER],
        examples=[OpenApiExample("Page", value={"results": [WALLET_EXAMPLE], "count": 1, "limit": 20, "offset": 0}, response_only=True),
                  OpenApiExample("An organization's wallets", value={"results": [ledger_apis.ORG_WALLET_EXAMPLE], "count": 1, "limit": 20, "offset": 0}, response_only=True)],
    )
    def get(self, request):
        if request.organization is not None:
            return ledger_apis.org_wallets_list(request, self)
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(selectors.wallets_of_user(user=request.user), request, view=self)
        return paginator.get_paginated_response(WalletOutput(page, many=True).data)

    @extend_schema(
        operation_id="wallets_create", tags=["wallets"], summary="Open a wallet",
        request=WalletCreateInput, parameters=[ledger_apis.ORG_HEADER],
        description="Organizations send {customer_external_id, currency, label?} or {system: true, currency, label?} (ledger.apis.OrgWalletCreateInput).",
        responses={201: WalletOutput, 400: OpenApiResponse(description="VALIDATION_ERROR (unknown currency)"), 409: OpenApiResponse(description="WALLET_EXISTS: an open unlabelled wallet in this currency exists; give the new one a label")},
        examples=[
            OpenApiExample("Open a USD wallet", value={"currency": "USD", "label": ""}, request_only=True),
            OpenApiExample("Organization: a customer's wallet", value={"customer_external_id": "user-8812", "currency": "POINTS"}, request_only=True),
            OpenApiExample("Organization: a system wallet", value={"system": True, "currency": "POINTS", "label": "fees"}, request_only=True),
            OpenApiExample("Created", value={**WALLET_EXAMPLE, "balance": "0.00", "available_balance": "0.00", "held_balance": "0.00"}, response_only=True, status_codes=["201"]),
        ],
    )
    def post(self, request):
        if request.organization is not None:
            return ledger_apis.org_wallet_create(request)
        data = WalletCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        wallet = services.wallet_create(user=request.user, **data.validated_data)
        return Response(WalletOutput(wallet).data, status=status.HTTP_201_CREATED)


class WalletDetailApi(_UserApi):
    permission_classes = [ledger_apis.IsOrganizationOrUser]

    @extend_schema(
        operation_id="wallets_retrieve", tags=["wallets"], summary="One of your wallets",
        parameters=[ledger_apis.ORG_HEADER],
        responses={200: WalletOutput, 404: OpenApiResponse(description="NOT_FOUND")},
        examples=[OpenApiExample("Wallet", value=WALLET_EXAMPLE, response_only=True)],
    )
    def get(self, request, wallet_id: int):
        if request.organization is not None:
            return ledger_apis.org_wallet_retrieve(request, wallet_id)
        return Response(WalletOutput(selectors.wallet_get_for_user(user=request.user, wallet_id=wallet_id)).data)

    @extend_schema(
        operation_id="wallets_destroy", tags=["wallets"], parameters=[ledger_apis.ORG_HEADER], request=None,
        summary="Close a wallet, as POST /wallets/{id}/close (the row is kept)",
        responses={200: ledger_apis.OrgWalletOutput, 404: OpenApiResponse(description="NOT_FOUND"),
                   409: OpenApiResponse(description="WALLET_NOT_EMPTY or INVALID_STATE")},
        examples=[OpenApiExample("Closed", value={**WALLET_EXAMPLE, "balance": "0.00", "available_balance": "0.00", "held_balance": "0.00", "status": "closed"}, response_only=True)],
    )
    def delete(self, request, wallet_id: int):
        return ledger_apis.wallet_close_response(request, wallet_id)


class WalletEntriesApi(_UserApi):
    permission_classes = [ledger_apis.IsOrganizationOrUser]

    @extend_schema(
        operation_id="wallets_entries", tags=["wallets"], summary="A wallet's statement, newest first",
        responses={200: EntryOutput(many=True), 404: OpenApiResponse(description="NOT_FOUND")},
        parameters=[OpenApiParameter("limit", int), OpenApiParameter("offset", int)],
        examples=[OpenApiExample("Statement", response_only=True, value={
            "results": [{"id": 5, "transaction_id": 3, "wallet_id": 42, "entry_type": "debit", "amount": "100.00",
                         "currency": "USD", "balance_after": "550.00", "created_at": "2026-05-31T12:05:00Z"}],
            "count": 1, "limit": 20, "offset": 0})],
    )
    def get(self, request, wallet_id: int):
        if request.organization is not None:
            return ledger_apis.org_wallet_entries(request, self, wallet_id)
        entries = selectors.wallet_entries_for_user(user=request.user, wallet_id=wallet_id)
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(entries, request, view=self)
        return paginator.get_paginated_response(EntryOutput(page, many=True).data)


class DepositCreateApi(_UserApi):
    throttle_classes = [MoneyThrottle]

    @extend_schema(
        operation_id="deposits_create", tags=["money movement"], summary="Deposit into your wallet",
        parameters=[IDEMPOTENCY_PARAMETER], request=DepositInput,
        responses={201: MoneyTransactionOutput, **MONEY_ERRORS},
        examples=[
            OpenApiExample("Deposit", value={"wallet_id": 42, "amount": "200.00", "source": "card"}, request_only=True),
            OpenApiExample("Deposited", value=DEPOSIT_RESULT_EXAMPLE, response_only=True, status_codes=["201"]),
        ],
    )
    @idempotent(endpoint="deposits.create")
    def post(self, request):
        data = DepositInput(data=request.data)
        data.is_valid(raise_exception=True)
        tx = services.deposit_create(user=request.user, **data.validated_data)
        return Response(MoneyTransactionOutput(selectors.transaction_view(transaction=tx, viewer=request.user)).data, status=status.HTTP_201_CREATED)


class TransferCreateApi(_UserApi):
    throttle_classes = [MoneyThrottle]

    @extend_schema(
        operation_id="transfers_create", tags=["money movement"], summary="Transfer from your wallet to another wallet",
        parameters=[IDEMPOTENCY_PARAMETER], request=TransferInput,
        responses={201: MoneyTransactionOutput, **MONEY_ERRORS},
        examples=[
            OpenApiExample("Transfer", value={"source_wallet_id": 42, "destination_wallet_id": 43, "amount": "100.00", "currency": "USD", "description": "Dinner"}, request_only=True),
            OpenApiExample("Transferred", value=TRANSFER_RESULT_EXAMPLE, response_only=True, status_codes=["201"]),
        ],
    )
    @idempotent(endpoint="transfers.create")
    def post(self, request):
        data = TransferInput(data=request.data)
        data.is_valid(raise_exception=True)
        tx = services.transfer_create(user=request.user, **data.validated_data)
        return Response(MoneyTransactionOutput(selectors.transaction_view(transaction=tx, viewer=request.user)).data, status=status.HTTP_201_CREATED)
