"""Customer wallets API (users, JWT): own wallets, their statements, deposits, transfers, withdrawals
(payouts) and currency exchange.

Money endpoints (`/deposits`, `/transfers`, `/withdrawals`, `/exchanges`) are `@idempotent` (core.idempotency: Idempotency-Key
required, replayed, 409 while running) and throttled by `MoneyThrottle`. Someone else's wallet
is a 404."""

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.orgs.tenancy import IsUser
from ledger.apis import wallets as ledger_apis  # the organization side of /wallets (ledger.apis.wallets)
from ledger.filters import entries_in_range
from accounts.identity.throttles import MoneyThrottle
from accounts.identity.twofactor import HEADER as TWO_FACTOR_HEADER, twofactor_code_from
from core.idempotency import idempotent
from core.openapi import error_example, idempotency_header, PAGE_LIMIT, PAGE_OFFSET, page_of
from core.pagination import LimitOffsetPagination
from ledger.serializers import WalletOutput
from wallets import selectors, services
from wallets.movements import deposits, exchanges, transfers, withdrawals
from wallets.serializers import (
    DepositInput,
    EntryOutput,
    ExchangeInput,
    ExchangeOutput,
    ExchangeQuoteInput,
    ExchangeQuoteOutput,
    MoneyTransactionOutput,
    TransferInput,
    WalletCreateInput,
    WithdrawalInput,
    WithdrawalOutput,
    exchange_representation,
    transaction_representation,
    withdrawal_representation,
)

IDEMPOTENCY_PARAMETER = idempotency_header()


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
        OpenApiExample("Bad amount", value=error_example("VALIDATION_ERROR", "amount: This asset allows at most 2 decimals.", {"fields": {"amount": ["This asset allows at most 2 decimals."]}}), status_codes=["400"]),
        OpenApiExample("No key", value=error_example("IDEMPOTENCY_KEY_REQUIRED", "This request moves money: send an Idempotency-Key header."), status_codes=["400"]),
    ]),
    404: OpenApiResponse(description="NOT_FOUND: no such wallet of yours"),
    409: OpenApiResponse(description="IDEMPOTENCY_KEY_IN_PROGRESS or WALLET_INACTIVE", examples=[
        OpenApiExample("Still running", value=error_example("IDEMPOTENCY_KEY_IN_PROGRESS", "A request with this Idempotency-Key is still being processed.", {"idempotency_key": "0b7c..."}), status_codes=["409"]),
    ]),
    422: OpenApiResponse(description="INSUFFICIENT_FUNDS (the failed transaction is recorded) or IDEMPOTENCY_KEY_REUSED", examples=[
        OpenApiExample("Insufficient funds", value=error_example("INSUFFICIENT_FUNDS", "Wallet 42 would go below zero.", {"operation_index": 0, "transaction_id": 1003}), status_codes=["422"]),
    ]),
    429: OpenApiResponse(description="RATE_LIMITED (Retry-After)"),
}


TWO_FACTOR_PARAMETER = OpenApiParameter(
    name=TWO_FACTOR_HEADER, location=OpenApiParameter.HEADER, required=False, type=str,
    description="Step-up code (TOTP or e-mail), required for an outgoing movement worth 5,000 USD (TWO_FACTOR_THRESHOLD, in LIMITS_REFERENCE_CURRENCY, converted at the price provider's rate) or more; TWO_FACTOR_THRESHOLDS may set an asset's own threshold in its units.",
)
MONEY_PATH_ERRORS = {
    **MONEY_ERRORS,
    403: OpenApiResponse(description="2FA_REQUIRED (at or above the step-up threshold, no X-2FA-Code) or 2FA_VERIFICATION_FAILED", examples=[
        OpenApiExample("Step-up needed", value=error_example("2FA_REQUIRED", "A movement of 5000 USD or more needs a second factor: ...", {"header": "X-2FA-Code", "methods": ["totp"], "threshold": "5000", "currency": "USD"}), status_codes=["403"]),
    ]),
    422: OpenApiResponse(description="INSUFFICIENT_FUNDS (the failed transaction is recorded), LIMIT_EXCEEDED, TRANSACTION_REJECTED or IDEMPOTENCY_KEY_REUSED", examples=[
        OpenApiExample("Insufficient funds", value=error_example("INSUFFICIENT_FUNDS", "Wallet 42 would go below zero.", {"operation_index": 0, "transaction_id": 1003}), status_codes=["422"]),
        OpenApiExample("Limit", value=error_example("LIMIT_EXCEEDED", "This transfer of 1500.00 USD exceeds the single-transaction limit of 1000.00 USD for KYC level none.", {"limit_type": "single", "limit": "1000.00", "used": "0.00", "remaining": "1000.00", "requested": "1500.00", "currency": "USD", "type": "transfer", "direction": "outgoing", "kyc_level": "none"}), status_codes=["422"]),
        OpenApiExample("Rejected", value=error_example("TRANSACTION_REJECTED", "This transaction was blocked by our compliance checks."), status_codes=["422"]),
    ]),
}


def _money_status(tx) -> int:
    """201 when the movement posted; 202 when it is in flight (a payout) or held for review."""
    return status.HTTP_202_ACCEPTED if tx.status in ("pending", "in_review") else status.HTTP_201_CREATED


class _UserApi(APIView):
    permission_classes = [IsUser]


class WalletListCreateApi(_UserApi):
    permission_classes = [ledger_apis.IsOrganizationOrUser]  # organizations: ledger.apis.wallets.org_wallets_*

    @extend_schema(
        operation_id="wallets_list", tags=["wallets"], summary="Your wallets",
        responses={200: page_of(PolymorphicProxySerializer(
            component_name="AnyWallet", serializers=[WalletOutput, ledger_apis.OrgWalletOutput], resource_type_field_name=None, many=True,
        ), "WalletPage")},
        parameters=[PAGE_LIMIT, PAGE_OFFSET, ledger_apis.ORG_HEADER],
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
        description="Organizations send {customer_external_id, currency, label?} or {system: true, currency, label?}.",
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
        parameters=[
            OpenApiParameter("limit", int), OpenApiParameter("offset", int),
            OpenApiParameter("from", str, description="Posted at or after (ISO 8601 date or date-time; UTC if no offset)."),
            OpenApiParameter("to", str, description="Posted at or before (ISO 8601; a bare date includes that whole day)."),
        ],
        examples=[OpenApiExample("Statement", response_only=True, value={
            "results": [{"id": 5, "transaction_id": 3, "wallet_id": 42, "entry_type": "debit", "amount": "100.00",
                         "currency": "USD", "balance_after": "550.00", "created_at": "2026-05-31T12:05:00Z"}],
            "count": 1, "limit": 20, "offset": 0})],
    )
    def get(self, request, wallet_id: int):
        if request.organization is not None:
            return ledger_apis.org_wallet_entries(request, self, wallet_id)
        entries = entries_in_range(selectors.wallet_entries_for_user(user=request.user, wallet_id=wallet_id), request.query_params)
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(entries, request, view=self)
        return paginator.get_paginated_response(EntryOutput(page, many=True).data)


class DepositCreateApi(_UserApi):
    throttle_classes = [MoneyThrottle]

    @extend_schema(
        operation_id="deposits_create", tags=["money movement"], summary="Deposit into your wallet",
        parameters=[IDEMPOTENCY_PARAMETER], request=DepositInput,
        responses={201: MoneyTransactionOutput, 202: MoneyTransactionOutput, **MONEY_PATH_ERRORS},
        examples=[
            OpenApiExample("Deposit", value={"wallet_id": 42, "amount": "200.00", "source": "card"}, request_only=True),
            OpenApiExample("Deposited", value=DEPOSIT_RESULT_EXAMPLE, response_only=True, status_codes=["201"]),
        ],
    )
    @idempotent(endpoint="deposits.create")
    def post(self, request):
        data = DepositInput(data=request.data)
        data.is_valid(raise_exception=True)
        tx = deposits.deposit_create(user=request.user, **data.validated_data)
        return Response(transaction_representation(transaction=tx, viewer=request.user), status=_money_status(tx))  # MoneyTransactionOutput's shape (tested)


class TransferCreateApi(_UserApi):
    throttle_classes = [MoneyThrottle]

    @extend_schema(
        operation_id="transfers_create", tags=["money movement"], summary="Transfer from your wallet to another wallet",
        parameters=[IDEMPOTENCY_PARAMETER, TWO_FACTOR_PARAMETER], request=TransferInput,
        responses={201: MoneyTransactionOutput, 202: MoneyTransactionOutput, **MONEY_PATH_ERRORS},
        examples=[
            OpenApiExample("Transfer", value={"source_wallet_id": 42, "destination_wallet_id": 43, "amount": "100.00", "currency": "USD", "description": "Dinner"}, request_only=True),
            OpenApiExample("Transferred", value=TRANSFER_RESULT_EXAMPLE, response_only=True, status_codes=["201"]),
            OpenApiExample("Held for review", value={**TRANSFER_RESULT_EXAMPLE, "status": "in_review", "completed_at": None, "balance_after": None}, response_only=True, status_codes=["202"]),
        ],
    )
    @idempotent(endpoint="transfers.create")
    def post(self, request):
        data = TransferInput(data=request.data)
        data.is_valid(raise_exception=True)
        tx = transfers.transfer_create(user=request.user, two_factor_code=twofactor_code_from(request), **data.validated_data)
        return Response(transaction_representation(transaction=tx, viewer=request.user), status=_money_status(tx))  # MoneyTransactionOutput's shape (tested)


# --- Withdrawals and exchanges (wallets.movements: the money path, payouts, FX) -------------------------------
WITHDRAWAL_EXAMPLE = {
    "id": 1004, "type": "withdrawal", "status": "pending", "amount": "100.00", "currency": "EUR", "fee": "1.00",
    "source_wallet_id": 44, "source_wallet_name": "Jane Doe", "destination_wallet_id": None, "destination_wallet_name": None,
    "reference": "", "description": "Monthly rent", "created_at": "2026-06-01T09:45:00Z", "completed_at": None,
    "balance_after": None,
    "payout": {
        "id": 7, "status": "pending", "destination_type": "IBAN", "beneficiary_name": "J*** S****",
        "destination": {"name": "J*** S****", "iban": "DE89 **** **** **** 3000", "country": "DE", "bank_name": "Deutsche Bank"},
        "amount": "100.00", "fee": "1.00", "total_amount": "101.00", "currency": "EUR", "provider_reference": "",
        "failure_reason": "", "created_at": "2026-06-01T09:45:00Z", "sent_at": None, "settled_at": None,
    },
}
QUOTE_EXAMPLE = {
    "quote_id": "0f8e3c1a-5b7d-4c1e-9a2b-3d4e5f607182", "source_wallet_id": 42, "destination_wallet_id": 44,
    "source_currency": "USD", "destination_currency": "EUR", "amount": "100.00", "fee": "0.50", "rate": "0.92361111111111111111",
    "destination_amount": "91.89", "status": "open", "expires_at": "2026-06-01T10:00:30Z", "transaction_id": None,
}


class WithdrawalListCreateApi(_UserApi):
    throttle_classes = [MoneyThrottle]

    def get_throttles(self):
        return super().get_throttles() if self.request.method == "POST" else []

    @extend_schema(
        operation_id="withdrawals_list", tags=["money movement"], summary="Your withdrawals, newest first",
        responses={200: page_of(WithdrawalOutput(many=True), "WithdrawalPage")}, parameters=[PAGE_LIMIT, PAGE_OFFSET],
        examples=[OpenApiExample("Page", value={"results": [WITHDRAWAL_EXAMPLE], "count": 1, "limit": 20, "offset": 0}, response_only=True)],
    )
    def get(self, request):
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(selectors.withdrawals_of_user(user=request.user), request, view=self)
        return paginator.get_paginated_response([WithdrawalOutput(withdrawal_representation(transaction=tx, viewer=request.user)).data for tx in page])

    @extend_schema(
        operation_id="withdrawals_create", tags=["money movement"], summary="Withdraw to a bank account (IBAN) or another rail",
        description=(
            "The fee (1%, minimum 1.00 for an IBAN) is charged on top; amount + fee are held and the transaction is `pending` "
            "(202) while the payout is in flight. A worker sends it through the payout provider and settles it: completed -> "
            "the hold is captured (posted), failed -> released and the transaction failed. Follow it with GET /withdrawals/{id}."
        ),
        parameters=[IDEMPOTENCY_PARAMETER, TWO_FACTOR_PARAMETER], request=WithdrawalInput,
        responses={202: WithdrawalOutput, **MONEY_PATH_ERRORS, 400: OpenApiResponse(
            description="VALIDATION_ERROR (naming the field), INVALID_IBAN, INVALID_BENEFICIARY or IDEMPOTENCY_KEY_REQUIRED", examples=[
                OpenApiExample("Bad IBAN", value=error_example("INVALID_IBAN", "destination.iban: Invalid checksum digits.", {"fields": {"destination.iban": ["Invalid checksum digits"]}}), status_codes=["400"]),
                OpenApiExample("No name", value=error_example("INVALID_BENEFICIARY", "destination.name: The beneficiary's name (1-200 characters) is required.", {"fields": {"destination.name": ["The beneficiary's name (1-200 characters) is required."]}}), status_codes=["400"]),
            ])},
        examples=[
            OpenApiExample("To an IBAN", request_only=True, value={"wallet_id": 44, "amount": "100.00", "description": "Monthly rent", "destination": {
                "type": "IBAN", "iban": "DE89370400440532013000", "name": "Jane Smith", "bank_name": "Deutsche Bank", "country": "DE"}}),
            OpenApiExample("To another rail", request_only=True, value={"wallet_id": 44, "amount": "20.00", "destination": {
                "type": "EXTERNAL", "name": "Jane Smith", "account": "jane@wallet.example", "network": "instant-pay"}}),
            OpenApiExample("Payout in flight", value=WITHDRAWAL_EXAMPLE, response_only=True, status_codes=["202"]),
        ],
    )
    @idempotent(endpoint="withdrawals.create")
    def post(self, request):
        data = WithdrawalInput(data=request.data)
        data.is_valid(raise_exception=True)
        tx = withdrawals.withdrawal_create(user=request.user, two_factor_code=twofactor_code_from(request), **data.validated_data)
        return Response(WithdrawalOutput(withdrawal_representation(transaction=tx, viewer=request.user)).data, status=_money_status(tx))


class WithdrawalDetailApi(_UserApi):
    @extend_schema(
        operation_id="withdrawals_retrieve", tags=["money movement"], summary="One of your withdrawals and its payout",
        responses={200: WithdrawalOutput, 404: OpenApiResponse(description="NOT_FOUND")},
        examples=[OpenApiExample("Settled", response_only=True, value={
            **WITHDRAWAL_EXAMPLE, "status": "completed", "completed_at": "2026-06-01T09:45:06Z", "balance_after": "899.00",
            "payout": {**WITHDRAWAL_EXAMPLE["payout"], "status": "completed", "provider_reference": "sbx_po_3f2a...",
                       "sent_at": "2026-06-01T09:45:01Z", "settled_at": "2026-06-01T09:45:06Z"}})],
    )
    def get(self, request, transaction_id: int):
        tx = selectors.withdrawal_get_for_user(user=request.user, transaction_id=transaction_id)
        return Response(WithdrawalOutput(withdrawal_representation(transaction=tx, viewer=request.user)).data)


class ExchangeQuoteApi(_UserApi):
    throttle_classes = [MoneyThrottle]

    @extend_schema(
        operation_id="exchanges_quote", tags=["money movement"], summary="Quote a currency exchange between two of your wallets",
        description=(
            "Nothing moves. `amount` leaves the source wallet, the 0.5% fee (rounded up) included; the rest converts at the "
            "provider's bid and `destination_amount` is rounded DOWN to the destination currency's decimals (both roundings "
            "in the platform's favour). Execute it with POST /exchanges before `expires_at` (30 s)."
        ),
        request=ExchangeQuoteInput,
        responses={201: ExchangeQuoteOutput, 400: OpenApiResponse(description="VALIDATION_ERROR naming the field (amount, same currency)"),
                   404: OpenApiResponse(description="NOT_FOUND: a wallet that is not yours"),
                   503: OpenApiResponse(description="PRICE_UNAVAILABLE")},
        examples=[
            OpenApiExample("USD to EUR", value={"source_wallet_id": 42, "destination_wallet_id": 44, "amount": "100.00"}, request_only=True),
            OpenApiExample("Quote", value=QUOTE_EXAMPLE, response_only=True, status_codes=["201"]),
        ],
    )
    def post(self, request):
        data = ExchangeQuoteInput(data=request.data)
        data.is_valid(raise_exception=True)
        quote = exchanges.exchange_quote_create(user=request.user, **data.validated_data)
        return Response(ExchangeQuoteOutput(quote).data, status=status.HTTP_201_CREATED)


class ExchangeCreateApi(_UserApi):
    throttle_classes = [MoneyThrottle]

    @extend_schema(
        operation_id="exchanges_create", tags=["money movement"], summary="Execute an exchange quote (once)",
        description=(
            "One ledger transaction through the platform's FX accounts: source -> FX (amount - fee), source -> fee account "
            "(fee), FX -> destination (destination_amount). 409 QUOTE_EXPIRED after `expires_at`; 409 INVALID_STATE for a "
            "quote already executed; 422 INSUFFICIENT_FUNDS if your wallet or the platform's FX float cannot cover it."
        ),
        parameters=[IDEMPOTENCY_PARAMETER, TWO_FACTOR_PARAMETER], request=ExchangeInput,
        responses={201: ExchangeOutput, 202: ExchangeOutput, **MONEY_PATH_ERRORS, 409: OpenApiResponse(
            description="QUOTE_EXPIRED, INVALID_STATE (quote used), WALLET_INACTIVE or IDEMPOTENCY_KEY_IN_PROGRESS", examples=[
                OpenApiExample("Expired", value=error_example("QUOTE_EXPIRED", "This quote has expired: ask for a new one.", {"quote_id": QUOTE_EXAMPLE["quote_id"], "expired_at": "2026-06-01T10:00:30+00:00"}), status_codes=["409"]),
            ])},
        examples=[
            OpenApiExample("Execute", value={"quote_id": QUOTE_EXAMPLE["quote_id"]}, request_only=True),
            OpenApiExample("Exchanged", response_only=True, status_codes=["201"], value={
                "id": 1005, "type": "exchange", "status": "completed", "amount": "100.00", "currency": "USD", "fee": "0.50",
                "source_wallet_id": 42, "source_wallet_name": "Jane Doe", "destination_wallet_id": 44, "destination_wallet_name": "Jane Doe",
                "reference": "", "description": "Exchange 100.00 USD to EUR", "created_at": "2026-06-01T10:00:10Z",
                "completed_at": "2026-06-01T10:00:10Z", "balance_after": "400.00",
                "quote": {**QUOTE_EXAMPLE, "status": "executed", "transaction_id": 1005}}),
        ],
    )
    @idempotent(endpoint="exchanges.create")
    def post(self, request):
        data = ExchangeInput(data=request.data)
        data.is_valid(raise_exception=True)
        tx = exchanges.exchange_execute(user=request.user, quote_id=data.validated_data["quote_id"], two_factor_code=twofactor_code_from(request))
        return Response(ExchangeOutput(exchange_representation(transaction=tx, viewer=request.user)).data, status=_money_status(tx))
