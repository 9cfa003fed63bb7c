"""Pay-order API for organizations (SPEC 7), under /api/v1/. Every organization scheme works
(X-API-Key, the seed's compatibility signature, HMAC, client-credentials token, a member's JWT with
X-Organization). Another organization's order is a 404.

Idempotency decisions:
- `POST /pay-orders` moves no money: `Idempotency-Key` is optional. Sent, it has the full
  semantics of SPEC 5 (replay, 422 on a different body, 409 while running), so a client that
  retries a timed-out create does not make two orders.
- `POST /pay-orders/{id}/refund` moves money: the key is required (400 IDEMPOTENCY_KEY_REQUIRED).
- quote / payment-details / process / cancel are safe to retry without a key: payment-details
  with the same quote returns the same address, process with a hash already taken returns the
  order, a second cancel is 409 INVALID_STATE, and each quote request only adds quotes.
"""

from __future__ import annotations

import django_filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.response import Response

from accounts.orgs.tenancy import OWNER_ONLY, OrganizationScopedMixin
from accounts.identity.throttles import MoneyThrottle
from core.filters import InstantFilter
from core.openapi import ORG_HEADER, error_example, error_response, idempotency_header
from core.idempotency import HEADER, LEGACY_HEADER, idempotent, idempotent_execute
from core.livemode import mode_q, request_livemode
from payorders import selectors
from payorders.models import PayOrder, XpubKey
from payorders.serializers import (
    CancelInput,
    PaymentDetailsInput,
    PaymentDetailsOutput,
    PayOrderCreateInput,
    PayOrderDetailOutput,
    PayOrderOutput,
    PayOrderQuoteInput,
    ProcessInput,
    QuoteListOutput,
    QuoteOutput,
    RefundInput,
    RefundOutput,
    RefundTransactionInput,
    XpubKeyInput,
    XpubKeyOutput,
)
from payorders.services.addresses import xpub_key_register
from payorders.services.lifecycle import payorder_cancel, payorder_create
from payorders.services.payments import payorder_process
from payorders.services.quotes import payorder_quote, payorder_select_quote
from payorders.services.refunds import payorder_refund, refund_attach_transaction

TAG = ["pay orders"]
OPTIONAL_KEY = idempotency_header(
    required=False,
    description="Optional here (creating an order moves no money). Sent, a retry with the same key and body replays the "
    "first response (`Idempotency-Replayed: true`); `X-Idempotency-Key` is accepted too.",
)
REQUIRED_KEY = idempotency_header(
    description="Required: a refund moves money. Same key and body -> the first response again; another body -> 422 "
    "IDEMPOTENCY_KEY_REUSED; while the first runs -> 409 IDEMPOTENCY_KEY_IN_PROGRESS. Kept at least 24 h.",
)
ID_PARAM = OpenApiParameter("public_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The pay order's id (a UUID).")


AUTH_ERRORS = {
    **error_response(401, "AUTHENTICATION_FAILED", ("Bad key", error_example("AUTHENTICATION_FAILED", "Authentication credentials were missing or not valid."))),
    **error_response(403, "PERMISSION_DENIED: a user who is not an allowed member"),
}
NOT_FOUND = error_response(404, "NOT_FOUND: no such pay order in your organization", ("Unknown", error_example("NOT_FOUND", "No such pay order.", {"id": "0d2b..."})))
BAD = error_response(400, "VALIDATION_ERROR naming the fields", ("Bad amount", error_example("VALIDATION_ERROR", "amount: at most 2 decimals", {"fields": {"amount": ["at most 2 decimals"]}})))
STATE = error_response(409, "INVALID_STATE", ("Wrong state", error_example("INVALID_STATE", "A COMPLETED pay order cannot be cancelled.", {"status": "COMPLETED", "action": "cancel"})))

ORDER_ID = "5b0c8f3e-8a4e-4c55-9b2f-2d8a6f0b1c9e"
QUOTE_ID = "b3f1f0a2-4a9e-4f57-8f6e-3f1d6f4c2a10"
ADDRESS = "0x9858EfFD232B4033E47d90003D41EC34EcaEda94"
TX_HASH = "0x5c504ed432cb51138bcf09aa5e8a410dd4a1e204ef84bfed1be16dfba1b22060"
PAYMENT = {
    "deposit_address": ADDRESS,
    "amount": "0.031328330000000000",
    "source_currency": "ETH",
    "chain": "ethereum",
    "payment_uri": f"ethereum:{ADDRESS}@1?value=31328330000000000",
    "expires_at": "2026-01-15T10:30:00Z",
    "quote_id": QUOTE_ID,
    "livemode": True,
}
ORDER = {
    "id": ORDER_ID, "type": "SALE", "status": "PENDING", "amount": "100.00", "currency": "USD", "settlement_currency": "USD",
    "customer_external_id": "user-8812", "description": "Order #1001", "metadata": {"cart": "1001"},
    "redirect_url": "https://shop.example.com/thanks", "checkout_url": f"https://pay.example.com/pay/{ORDER_ID}",
    "expires_at": "2026-01-15T10:30:00Z", "payment": None, "amount_received": None, "underpaid": False, "overpaid": False,
    "late_payment": False, "refund_due": None, "failure_reason": "", "settlement": None, "livemode": True,
    "created_at": "2026-01-15T10:00:00Z", "updated_at": "2026-01-15T10:00:00Z", "completed_at": None,
}
PAID_ORDER = {
    **ORDER, "status": "COMPLETED", "payment": PAYMENT, "amount_received": "0.031328330000000000", "refund_due": "0.000000000000000000",
    "settlement": {"transaction_id": 981, "currency": "USD", "gross": "100.00", "fee": "1.00", "net": "99.00", "settled_at": "2026-01-15T10:08:00Z"},
    "completed_at": "2026-01-15T10:07:30Z",
}
DETAIL = {
    **PAID_ORDER,
    "status_history": [
        {"from_status": "", "to_status": "PENDING", "at": "2026-01-15T10:00:00Z", "cause": "created", "actor_label": "api_key:key_4f9c"},
        {"from_status": "PENDING", "to_status": "AWAITING_PAYMENT", "at": "2026-01-15T10:01:00Z", "cause": "payment details issued", "actor_label": "payer"},
        {"from_status": "AWAITING_PAYMENT", "to_status": "AWAITING_CONFIRMATION", "at": "2026-01-15T10:03:00Z", "cause": "paid 0.031328330000000000 of 0.031328330000000000 ETH (submitted)", "actor_label": "api_key:key_4f9c"},
        {"from_status": "AWAITING_CONFIRMATION", "to_status": "COMPLETED", "at": "2026-01-15T10:07:30Z", "cause": "payment confirmed (12 confirmations)", "actor_label": "system:poll_confirmations"},
    ],
    "payments": [{
        "tx_hash": TX_HASH, "log_index": -1, "chain": "ethereum", "asset": "ETH", "from_address": "0x0F4ee9631f4be0a63756515141281A3E2B293Bbe",
        "amount": "0.031328330000000000", "block_number": 19000000, "confirmations": 12, "status": "confirmed", "source": "submitted",
        "late": False, "detected_at": "2026-01-15T10:03:00Z", "confirmed_at": "2026-01-15T10:07:30Z",
    }],
    "refunds": [],
}
REFUND = {
    "id": "e1c7a5d2-0b1f-4c3e-9d8a-7f6e5d4c3b2a", "pay_order_id": ORDER_ID, "kind": "full", "status": "awaiting_transaction",
    "chain": "ethereum", "currency": "ETH", "amount": "0.031328330000000000", "destination_address": "0x0F4ee9631f4be0a63756515141281A3E2B293Bbe",
    "tx_hash": None, "ledger_transaction_id": 990, "reason": "customer returned the goods", "created_at": "2026-01-16T09:00:00Z", "sent_at": None,
}


def _key_sent(request) -> bool:
    return any((request.headers.get(h) or "").strip() for h in (HEADER, LEGACY_HEADER))


def _mode_filter(view, queryset):
    """A test key sees only test-mode orders, a live key only live ones (core.livemode)."""
    return queryset.filter(mode_q(request_livemode(view.request)))


class _OrderApi(OrganizationScopedMixin, generics.GenericAPIView):
    queryset = PayOrder.objects.all()
    serializer_class = PayOrderOutput
    filter_backends: list = []
    pagination_class = None

    def initial(self, request, *args, **kwargs):
        """A test key only works against test-mode orders and a live key against live ones: the
        other mode's order is a 404 (before any service runs, so nothing a key does can touch an
        order of the other mode; core.livemode)."""
        super().initial(request, *args, **kwargs)
        if "public_id" in kwargs:
            selectors.payorder_get(organization=self.organization, public_id=kwargs["public_id"], livemode=request_livemode(request))

    def detail(self, order: PayOrder, status_code: int = 200) -> Response:
        order = (
            PayOrder.objects.select_related("customer", "deposit_address", "quote")
            .prefetch_related("status_changes", "payments", "refunds__pay_order")
            .get(pk=order.pk)
        )
        return Response(PayOrderDetailOutput(order).data, status=status_code)


# --- Create and list ---------------------------------------------------------------------------------


class PayOrderFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=PayOrder.Status.choices)
    type = django_filters.ChoiceFilter(choices=PayOrder.Type.choices)
    created_from = InstantFilter(bound="from", help_text="ISO 8601 date or date-time (UTC if no offset), inclusive.")
    created_to = InstantFilter(bound="to", help_text="ISO 8601, inclusive; a bare date includes that whole day.")

    class Meta:
        model = PayOrder
        fields = ["status", "type"]


class PayOrderListCreateApi(OrganizationScopedMixin, generics.ListAPIView):
    queryset = PayOrder.objects.select_related("customer", "deposit_address", "quote")
    serializer_class = PayOrderOutput
    filterset_class = PayOrderFilter

    def filter_queryset(self, queryset):
        return _mode_filter(self, super().filter_queryset(queryset))

    @extend_schema(
        operation_id="pay_orders_list", tags=TAG, parameters=[ORG_HEADER],
        responses={200: PayOrderOutput(many=True), **BAD, **AUTH_ERRORS},
        examples=[OpenApiExample("Orders", value={"results": [ORDER], "count": 1, "limit": 20, "offset": 0}, response_only=True)],
        summary="List pay orders, newest first (filters: status, type, created_from, created_to)",
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="pay_orders_create", tags=TAG, parameters=[ORG_HEADER, OPTIONAL_KEY],
        request=PayOrderCreateInput, responses={201: PayOrderOutput, **BAD, **AUTH_ERRORS},
        examples=[
            OpenApiExample("Sale of 100 USD", request_only=True, value={
                "type": "SALE", "amount": "100.00", "currency": "USD", "customer_external_id": "user-8812",
                "description": "Order #1001", "metadata": {"cart": "1001"}, "redirect_url": "https://shop.example.com/thanks", "expires_in": 1800,
            }),
            OpenApiExample("Deposit settled in EUR", request_only=True, value={"type": "DEPOSIT", "amount": "50", "currency": "USD", "settlement_currency": "EUR"}),
            OpenApiExample("Created", value=ORDER, response_only=True, status_codes=["201"]),
        ],
        summary="Create a pay order (201 PENDING, with the hosted checkout_url)",
        description="Works with every organization scheme, including the compatibility signature "
        "`Authorization: APIKey=<key_id>,signature=<hex SHA512(key_id + secret + timestamp)>,timestamp=<unix s>`.",
    )
    def post(self, request):
        def handler():
            data = PayOrderCreateInput(data=request.data)
            data.is_valid(raise_exception=True)
            order = payorder_create(organization=self.organization, actor=request.user, **data.validated_data)
            return Response(PayOrderOutput(order).data, status=status.HTTP_201_CREATED)

        if _key_sent(request):
            return idempotent_execute(request=request, endpoint="payorders.create", handler=handler, view=self)
        return handler()


class PayOrderDetailApi(_OrderApi):
    @extend_schema(
        operation_id="pay_orders_retrieve", tags=TAG, parameters=[ORG_HEADER, ID_PARAM],
        responses={200: PayOrderDetailOutput, **AUTH_ERRORS, **NOT_FOUND},
        examples=[OpenApiExample("Completed and settled", value=DETAIL, response_only=True)],
        summary="A pay order with its status history, payments and refunds",
    )
    def get(self, request, public_id: str):
        return self.detail(selectors.payorder_get(organization=self.organization, public_id=public_id))


class PayOrderCancelApi(_OrderApi):
    @extend_schema(
        operation_id="pay_orders_cancel", tags=TAG, parameters=[ORG_HEADER, ID_PARAM],
        request=CancelInput, responses={200: PayOrderDetailOutput, **AUTH_ERRORS, **NOT_FOUND, **STATE},
        examples=[
            OpenApiExample("Cancel", value={"reason": "customer left"}, request_only=True),
            OpenApiExample("Cancelled", value={**ORDER, "status": "FAILED", "failure_reason": "cancelled: customer left", "status_history": [], "payments": [], "refunds": []}, response_only=True),
        ],
        summary="Cancel a PENDING or AWAITING_PAYMENT order that has received nothing (-> FAILED, reason cancelled)",
    )
    def post(self, request, public_id: str):
        data = CancelInput(data=request.data)
        data.is_valid(raise_exception=True)
        order = payorder_cancel(organization=self.organization, public_id=public_id, actor=request.user, reason=data.validated_data["reason"])
        return self.detail(order)


class PayOrderQuoteApi(_OrderApi):
    @extend_schema(
        operation_id="pay_orders_quote", tags=TAG, parameters=[ORG_HEADER, ID_PARAM],
        request=PayOrderQuoteInput,
        responses={
            200: QuoteListOutput, **BAD, **AUTH_ERRORS, **NOT_FOUND, **STATE,
            **error_response(503, "PRICE_UNAVAILABLE or CHAIN_UNAVAILABLE: try again shortly"),
        },
        examples=[
            OpenApiExample("All currencies", value={}, request_only=True),
            OpenApiExample("What this wallet can pay", value={"wallet_address": ADDRESS, "source_currencies": ["ETH", "USDC"]}, request_only=True),
            OpenApiExample("Quotes", response_only=True, value={"quotes": [
                {"quote_id": QUOTE_ID, "source_currency": "ETH", "chain": "ethereum", "amount": "0.031328330000000000", "rate": "3192", "fee": "0.000078330000000000", "expires_at": "2026-01-15T10:10:00Z"},
                {"quote_id": "c4a2...", "source_currency": "USDC", "chain": "ethereum", "amount": "100.250627", "rate": "0.9975", "fee": "0.250627", "expires_at": "2026-01-15T10:10:00Z"},
            ]}),
        ],
        summary="Priced options to pay a PENDING order (BTC, ETH, USDC); with wallet_address only those its balance covers",
        description="amount = price / rate, rounded UP to the source asset's smallest unit (8 decimals for ETH); rate is the bid side of the "
        "price provider's rate (spread included), fee the part of amount due to the spread. Quotes expire after "
        "PAYORDER_QUOTE_TTL_SECONDS (10 min) or with the order, whichever is first.",
    )
    def post(self, request, public_id: str):
        data = PayOrderQuoteInput(data=request.data)
        data.is_valid(raise_exception=True)
        quotes = payorder_quote(organization=self.organization, public_id=public_id, **data.validated_data)
        return Response({"quotes": QuoteOutput(quotes, many=True).data})


class PayOrderPaymentDetailsApi(_OrderApi):
    @extend_schema(
        operation_id="pay_orders_payment_details", tags=TAG, parameters=[ORG_HEADER, ID_PARAM],
        request=PaymentDetailsInput,
        responses={
            200: PaymentDetailsOutput, **AUTH_ERRORS, **NOT_FOUND,
            **error_response(409, "QUOTE_EXPIRED, INVALID_STATE, DEPOSIT_KEY_MISSING (register an xpub for the chain) or GAP_LIMIT_REACHED "
                    "(every address within the key's gap limit is unused and none can be reused yet; Retry-After when one will be)",
                    ("Quote expired", error_example("QUOTE_EXPIRED", "This quote has expired: ask for a new one.", {"quote_id": QUOTE_ID})),
                    ("No key", error_example("DEPOSIT_KEY_MISSING", "Register an extended public key for bitcoin before issuing deposit addresses.", {"chain": "bitcoin"})),
                    ("Gap limit", error_example("GAP_LIMIT_REACHED", "The ethereum key's 20 newest addresses are all unused (its gap limit is 20) and none can be reused yet.",
                                       {"chain": "ethereum", "gap_limit": 20, "unused_addresses": 20, "retry_after": 1800}))),
        },
        examples=[
            OpenApiExample("Choose a quote", value={"quote_id": QUOTE_ID}, request_only=True),
            OpenApiExample("Pay here", value=PAYMENT, response_only=True),
        ],
        summary="Fix a quote and get a fresh deposit address (-> AWAITING_PAYMENT)",
        description="The address is derived from the organization's extended public key at the next unused index (no "
        "private keys on the server); payment_uri is BIP21 or EIP-681. Calling it again with the same quote returns the same details. "
        "The never-funded addresses after the key's last funded one never exceed its gap_limit: past it, the address of an order "
        "that closed unpaid at least an hour ago is reused (never one that received funds; payments mined before this order took it "
        "stay the earlier order's), and the organization gets a `payorder.deposit_addresses_constrained` webhook.",
    )
    def post(self, request, public_id: str):
        data = PaymentDetailsInput(data=request.data)
        data.is_valid(raise_exception=True)
        order = payorder_select_quote(organization=self.organization, public_id=public_id, quote_id=data.validated_data["quote_id"], actor=request.user)
        return Response(PaymentDetailsOutput(selectors.payment_details(order)).data)


class PayOrderProcessApi(_OrderApi):
    @extend_schema(
        operation_id="pay_orders_process", tags=TAG, parameters=[ORG_HEADER, ID_PARAM],
        request=ProcessInput,
        responses={
            200: PayOrderDetailOutput, **BAD, **AUTH_ERRORS,
            **error_response(404, "NOT_FOUND (order) or TRANSACTION_NOT_FOUND (the chain does not know the hash)",
                    ("Unknown hash", error_example("TRANSACTION_NOT_FOUND", "The chain does not know this transaction.", {"tx_hash": TX_HASH}))),
            **error_response(409, "TRANSACTION_ALREADY_USED, INVALID_STATE or QUOTE_EXPIRED",
                    ("Used", error_example("TRANSACTION_ALREADY_USED", "This transaction has already been used for a payment.", {"tx_hash": TX_HASH}))),
            **error_response(422, "PAYMENT_MISMATCH: wrong recipient, asset, failed, or less than is due (the order is unchanged)",
                    ("Too little", error_example("PAYMENT_MISMATCH", "This transaction pays 0.010000000000000000 ETH; 0.031328330000000000 is due.", {"tx_hash": TX_HASH}))),
            **error_response(503, "CHAIN_UNAVAILABLE: the node cannot be reached; retry"),
        },
        examples=[
            OpenApiExample("Submit", value={"tx_hash": TX_HASH}, request_only=True),
            OpenApiExample("Awaiting confirmation", value={**DETAIL, "status": "AWAITING_CONFIRMATION", "settlement": None, "completed_at": None}, response_only=True),
        ],
        summary="Submit the payment's transaction hash (checked on chain) -> AWAITING_CONFIRMATION",
        description="The transaction must pay the order's deposit address, in the quoted asset, at least what is still due, "
        "and its hash must never have been used. Otherwise nothing changes. A partial payment is not lost: the watcher "
        "records it and flags the order underpaid.",
    )
    def post(self, request, public_id: str):
        data = ProcessInput(data=request.data)
        data.is_valid(raise_exception=True)
        order = payorder_process(organization=self.organization, public_id=public_id, tx_hash=data.validated_data["tx_hash"], actor=request.user)
        return self.detail(order)


class PayOrderRefundApi(_OrderApi):
    throttle_classes = [MoneyThrottle]

    @extend_schema(
        operation_id="pay_orders_refund", tags=TAG, parameters=[ORG_HEADER, ID_PARAM, REQUIRED_KEY],
        request=RefundInput,
        responses={
            201: RefundOutput, **BAD, **AUTH_ERRORS, **NOT_FOUND, **STATE,
            **error_response(422, "INSUFFICIENT_FUNDS: the settlement wallet no longer holds the settled amount; IDEMPOTENCY_KEY_REUSED"),
            **error_response(429, "RATE_LIMITED"),
        },
        examples=[
            OpenApiExample("Refund the order", value={"destination_address": "0x0F4ee9631f4be0a63756515141281A3E2B293Bbe", "reason": "customer returned the goods"}, request_only=True),
            OpenApiExample("Refund the overpaid excess", value={"destination_address": "0x0F4ee9631f4be0a63756515141281A3E2B293Bbe", "kind": "excess"}, request_only=True),
            OpenApiExample("Awaiting your transaction (EVM)", value=REFUND, response_only=True, status_codes=["201"]),
        ],
        summary="Refund a COMPLETED order (-> REFUNDED), an overpaid excess, or money that arrived on an EXPIRED/FAILED order",
        description="full: the settled net amount is taken back from the settlement wallet (ledger reference "
        "payorder:<id>:refund) and the payer gets everything received; excess: only the overpayment. On the sandbox the "
        "refund is sent at once; on a live chain sign and send it yourself, then POST its hash to .../refunds/{refund_id}/transaction.",
    )
    @idempotent(endpoint="payorders.refund")
    def post(self, request, public_id: str):
        data = RefundInput(data=request.data)
        data.is_valid(raise_exception=True)
        refund = payorder_refund(organization=self.organization, public_id=public_id, actor=request.user, **data.validated_data)
        return Response(RefundOutput(refund).data, status=status.HTTP_201_CREATED)


class RefundTransactionApi(_OrderApi):
    @extend_schema(
        operation_id="pay_orders_refund_transaction", tags=TAG,
        parameters=[ORG_HEADER, ID_PARAM, OpenApiParameter("refund_id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        request=RefundTransactionInput,
        responses={200: RefundOutput, **BAD, **AUTH_ERRORS, **NOT_FOUND, **STATE, **error_response(422, "PAYMENT_MISMATCH: it does not send the refund")},
        examples=[
            OpenApiExample("Attach", value={"tx_hash": TX_HASH}, request_only=True),
            OpenApiExample("Sent", value={**REFUND, "status": "sent", "tx_hash": TX_HASH, "sent_at": "2026-01-16T09:05:00Z"}, response_only=True),
        ],
        summary="Attach the hash of the refund transaction you signed (checked on chain)",
    )
    def post(self, request, public_id: str, refund_id: str):
        data = RefundTransactionInput(data=request.data)
        data.is_valid(raise_exception=True)
        refund = refund_attach_transaction(
            organization=self.organization, public_id=public_id, refund_id=refund_id, tx_hash=data.validated_data["tx_hash"], actor=request.user
        )
        return Response(RefundOutput(refund).data)


# --- Extended public keys ---------------------------------------------------------------------------


XPUB = {
    "id": 3, "chain": "ethereum", "network": "mainnet", "next_index": 0, "gap_limit": 20, "unused_addresses": 0, "constrained_since": None,
    "is_active": True, "created_at": "2026-01-15T09:00:00Z",
    "xpub": "xpub6C1F2SwADP3TNajQjg2PaniEGpZLvWdMiFP3hLk1jCyX1o8mmDPSGNLPXMnC9zWpKXQm3Fm8Xsz7qf3N6sUNXBXWJvNJWVW4PuKjc1GKCm2",
}


class XpubKeyListCreateApi(OrganizationScopedMixin, generics.ListAPIView):
    queryset = XpubKey.objects.order_by("chain", "-is_active", "-id")
    serializer_class = XpubKeyOutput
    organization_write_roles = OWNER_ONLY  # the active key decides whose wallet customers pay into
    filter_backends: list = []

    @extend_schema(
        operation_id="xpub_keys_list", tags=TAG, parameters=[ORG_HEADER],
        responses={200: XpubKeyOutput(many=True), **AUTH_ERRORS},
        examples=[OpenApiExample("Keys", value={"results": [XPUB], "count": 1, "limit": 20, "offset": 0}, response_only=True)],
        summary="The organization's extended public keys (one active per chain)",
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="xpub_keys_create", tags=TAG, parameters=[ORG_HEADER],
        request=XpubKeyInput, responses={201: XpubKeyOutput, **BAD, **AUTH_ERRORS},
        examples=[
            OpenApiExample("Ethereum account key (m/44'/60'/0')", value={"chain": "ethereum", "xpub": XPUB["xpub"]}, request_only=True),
            OpenApiExample("Registered", value=XPUB, response_only=True, status_codes=["201"]),
        ],
        summary="Register the account-level extended PUBLIC key deposit addresses are derived from",
        description="Bitcoin: a BIP84 account key (zpub/xpub; vpub/tpub on testnet). Ethereum: a BIP44 account key. A private "
        "key is refused and never echoed. The previous key of the chain is deactivated (its addresses stay valid).",
    )
    def post(self, request):
        data = XpubKeyInput(data=request.data)
        data.is_valid(raise_exception=True)
        key = xpub_key_register(organization=self.organization, actor=request.user, **data.validated_data)
        return Response(XpubKeyOutput(key).data, status=status.HTTP_201_CREATED)
