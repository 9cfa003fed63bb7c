"""Ledger HTTP API: assets, organizations' multi-operation transactions, and the transaction
history shared by users and organizations (SPEC 6).

Callers. Organization endpoints (`POST /assets`, `POST /transactions`) take an organization
credential (API key, signature, client-credentials token) or a member's JWT with
`X-Organization`, through `accounts.tenancy.IsOrganization`. Reads (`GET /assets`,
`GET /transactions...`) serve both: an organization credential, or a user's JWT with an
`X-Organization` header, reads as the organization; a user's JWT without it reads as that
person (their own wallets), even when the person is also a member of an organization. Who sees
which transaction is decided in `ledger.filters`; another caller's object is a 404.

`POST /transactions` is money movement: its `reference` is the retry key (seed 003: repeating
the call with the same reference is safe: 409 DUPLICATE_REFERENCE with the transaction), so
`Idempotency-Key` is optional there; with one, `@idempotent` rules as on every money endpoint
(the failed transaction recorded by a refused posting commits together with the 4xx) and throttled
by `MoneyThrottle`. `organization_transaction_post` is its service: it runs inside the
idempotent request's database transaction, so the posting, the webhook deliveries and the audit
event commit together or not at all.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction as db_transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.permissions import BasePermission
from rest_framework.response import Response

from accounts.authentication import OrganizationPrincipal
from accounts.models import Customer, Organization, User
from accounts.org_serializers import OrgErrorOutput as ErrorOutput
from accounts.org_services import principal_audit_data
from accounts.tenancy import ORGANIZATION_HEADER, IsOrganization, request_organization
from accounts.throttles import MoneyThrottle
from accounts.webhooks import webhook_publish
from compliance.models import Direction, MovementType
from compliance.services import audit_record
from core.errors import NotFound, ValidationFailed
from core.idempotency import idempotent
from core.money import parse_amount
from core.pagination import LimitOffsetPagination
from ledger.errors import DuplicateReference, WalletNotFound
from ledger.filters import TransactionFilter, Viewer, entries_in_range, transaction_entries_visible, transaction_get, transactions_visible, wallets_owned
from ledger.models import Asset, Transaction, Wallet
from ledger.selectors import asset_get, assets_visible, wallet_entries
from ledger.serializers import (
    AssetCreateInput,
    AssetOutput,
    LedgerEntryOutput,
    LedgerTransactionCreateInput,
    LedgerTransactionDetailOutput,
    LedgerTransactionOutput,
    OrgWalletCreateInput,
    OrgWalletOutput,
    TransactionPresenter,
    WalletActionInput,
    transactions_with_entries,
    validated,
)
from ledger.services import Issue, Redeem, Transfer, asset_create, wallet_activate, wallet_close, wallet_open, wallet_suspend
from ledger.usage import UsageLeg, WalletOwner, usage_charges
from moneypath.pipeline import LimitScope, MoneyMovement, money_path

WALLET_RELATED = ("asset", "customer__user", "organization")

# --- Who is asking ---------------------------------------------------------------------------------


class IsOrganizationOrUser(BasePermission):
    """Organization credentials and `X-Organization` member calls read as the organization
    (IsOrganization's rules, which set `request.organization`); a plain user's JWT reads as
    the person."""

    message = "Authenticate with a user token, an API key, or a member's token with X-Organization."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if isinstance(user, OrganizationPrincipal):
            return IsOrganization().has_permission(request, view)
        if not isinstance(user, User) or not user.is_active:
            return False
        if request.META.get(ORGANIZATION_HEADER, "").strip():
            return IsOrganization().has_permission(request, view)
        request.organization = None
        return True


def viewer_of(request) -> Viewer:
    organization = request_organization(request)
    if organization is not None:
        return Viewer(organization=organization)
    return Viewer(user=request.user)


def actor_of(request) -> User | None:
    return request.user if isinstance(request.user, User) else None


# --- Services of the organization endpoints -----------------------------------------------------------


def organization_asset_create(*, organization: Organization, principal, code: str, name: str, exponent: int) -> Asset:
    """A custom asset visible only to `organization` (400 VALIDATION_ERROR on a taken code)."""
    with db_transaction.atomic():
        asset = asset_create(code=code, name=name, exponent=exponent, organization=organization)
        audit_record(
            actor=principal if isinstance(principal, User) else None,
            action="asset.create",
            target=asset,
            data={"code": asset.code, "exponent": asset.exponent, "organization_id": organization.pk, **principal_audit_data(principal)},
        )
    return asset


def _ledger_operations(*, organization: Organization, operations: list[dict[str, Any]]) -> tuple[list, dict[int, Wallet]]:
    """The requested operations as ledger operations, every wallet checked to be the
    organization's (else a 404 that says nothing about the wallet) and every amount parsed for
    its wallet's asset (400 naming `operations[i].amount`). Returns them with the wallets."""
    ids = {op[key] for op in operations for key in ("wallet_id", "source_wallet_id", "destination_wallet_id") if key in op}
    owned = {w.pk: w for w in wallets_owned(viewer=Viewer(organization=organization)).filter(pk__in=ids).select_related("asset", "customer__user", "organization")}
    out: list = []
    for index, op in enumerate(operations):
        names = ("source_wallet_id", "destination_wallet_id") if op["type"] == "transfer" else ("wallet_id",)
        for name in names:
            if op[name] not in owned:
                raise WalletNotFound("Wallet not found.", details={"operation_index": index, "field": f"operations[{index}].{name}"})
        asset = owned[op[names[0]]].asset
        amount = parse_amount(op["amount"], exponent=asset.exponent, field=f"operations[{index}].amount")
        currency = op["currency"].strip().upper() if op.get("currency") else None
        if op["type"] == "issue":
            out.append(Issue(wallet=op["wallet_id"], amount=amount, currency=currency))
        elif op["type"] == "redeem":
            out.append(Redeem(wallet=op["wallet_id"], amount=amount, currency=currency))
        else:
            out.append(Transfer(source=op["source_wallet_id"], destination=op["destination_wallet_id"], amount=amount, currency=currency))
    return out, owned


_OUTSIDE = 0  # the issuance side of an issue or redeem: no customer


def _limit_scopes(operations: list, wallets: dict[int, Wallet]) -> list[LimitScope]:
    """What the operations count toward each customer's usage (`ledger.usage.usage_charges`,
    the engine's own definition), as the limit scopes the money path enforces."""
    legs = []
    for op in operations:
        if isinstance(op, Issue):
            legs.append(UsageLeg("issue", _OUTSIDE, op.wallet, wallets[op.wallet].asset_id, op.amount))
        elif isinstance(op, Redeem):
            legs.append(UsageLeg("redeem", op.wallet, _OUTSIDE, wallets[op.wallet].asset_id, op.amount))
        else:
            legs.append(UsageLeg("transfer", op.source, op.destination, wallets[op.source].asset_id, op.amount))
    owners = {pk: WalletOwner(w.customer_id, False) for pk, w in wallets.items()} | {_OUTSIDE: WalletOwner(None, False)}
    assets = {w.asset_id: w.asset for w in wallets.values()}
    return [
        LimitScope(assets[asset_id], movement_type, direction, amount, customer_id=customer_id)
        for (customer_id, asset_id, movement_type, direction), amount in usage_charges(tx_type=Transaction.Type.LEDGER, legs=legs, owners=owners).items()
    ]


def _checked_wallet(operations: list, wallets: dict[int, Wallet]) -> tuple[Wallet | None, str, Decimal]:
    """The wallet the risk screen looks at: the first customer wallet money leaves (outgoing),
    else the first one money enters (incoming); None when only system wallets take part."""
    for outgoing in (True, False):
        for op in operations:
            wid = (op.wallet if isinstance(op, Redeem) else op.source if isinstance(op, Transfer) else None) if outgoing else (
                op.wallet if isinstance(op, Issue) else op.destination if isinstance(op, Transfer) else None)
            if wid is not None and wallets[wid].customer_id is not None:
                return wallets[wid], Direction.OUTGOING if outgoing else Direction.INCOMING, op.amount
    return None, Direction.OUTGOING, Decimal(0)


def _present(organization: Organization, transaction_id: int) -> dict[str, Any]:
    tx = transactions_with_entries(Transaction.objects.filter(pk=transaction_id)).get()
    return TransactionPresenter(viewer=Viewer(organization=organization)).one(tx, detail=True)


def organization_transaction_post(
    *,
    organization: Organization,
    principal,
    reference: str,
    operations: list[dict[str, Any]],
    description: str = "",
    metadata: dict | None = None,
) -> dict[str, Any]:
    """Post an organization's operations in order, all or none (seed 003), through the money
    path, and return the transaction's representation. The customers whose wallets take part
    are locked and checked (limits per KYC level, risk rules: as the organization chose), and
    every operation counts toward their usage (issue = deposit, redeem = withdrawal).

    Refusals are raised as their `CofferError` AFTER the failed transaction, its
    `transaction.failed` webhook deliveries and its audit event are written: the caller (the
    idempotent request) commits those together with the error response. A reference already used
    by the organization (completed or failed) raises DUPLICATE_REFERENCE carrying that
    transaction; nothing else is written then. Must run inside a database transaction."""
    ledger_operations, wallets = _ledger_operations(organization=organization, operations=operations)
    scopes = _limit_scopes(ledger_operations, wallets)
    checked, direction, amount = _checked_wallet(ledger_operations, wallets)
    published: dict[str, Any] = {}

    def publish(tx: Transaction) -> None:
        tx.known_wallets = wallets
        published["representation"] = representation = TransactionPresenter(viewer=Viewer(organization=organization)).one(tx, detail=True)
        if tx.status in (Transaction.Status.COMPLETED, Transaction.Status.FAILED):
            webhook_publish(organization=organization, event_type=f"transaction.{tx.status}", payload=representation)

    result = money_path(MoneyMovement(
        actor=principal, movement_type=MovementType.TRANSFER if direction == Direction.OUTGOING else MovementType.DEPOSIT,
        ledger_type=Transaction.Type.LEDGER, wallet=checked, amount=amount, operations=ledger_operations, direction=direction,
        limits=scopes, customers=sorted({s.customer_id for s in scopes}), step_up=False, risk=checked is not None,
        organization=organization, reference=reference, description=description, metadata=metadata or {},
        publish=publish, audit_action="transaction.{status}",
        audit_data={"reference": reference, "operations": len(operations), **principal_audit_data(principal)},
    ))
    if isinstance(result.error, DuplicateReference):
        existing = result.transaction
        result.error.details["transaction"] = _present(organization, existing.pk) if existing is not None else None
        raise result.error
    tx = result.transaction
    if tx is None:  # refused before posting (limits, risk): nothing recorded in the ledger
        raise result.error
    representation = published["representation"]
    if not result.ok:
        error = result.error
        error.details.update(
            code=error.code,
            reason=error.message,
            operation_index=tx.failure_operation_index,
            transaction_id=tx.pk,
            transaction=representation,
        )
        raise error
    return representation


# --- OpenAPI bits -------------------------------------------------------------------------------------


def _error(code: str, message: str, details: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _paginated(*examples: dict) -> dict:
    return {"results": list(examples), "count": len(examples), "limit": 20, "offset": 0}


ORG_HEADER = OpenApiParameter(
    "X-Organization", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    description="With a member user's JWT: the organization (id or slug) to act for. Not needed with an API key. "
    "On history endpoints, a user's JWT without it reads the person's own transactions.",
)
IDEMPOTENCY_PARAMETER = OpenApiParameter(
    "Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, required=True,
    description="1-255 printable characters, one per transaction you mean to make once (a UUID). The same key and body "
    "replay the first response (`Idempotency-Replayed: true`); another body is 422 IDEMPOTENCY_KEY_REUSED; while the "
    "first runs, 409 IDEMPOTENCY_KEY_IN_PROGRESS. `X-Idempotency-Key` is accepted too.",
)
REFERENCE_IDEMPOTENCY_PARAMETER = OpenApiParameter(
    "Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    description="Optional here: the transaction's `reference` is its retry key (a reference used before, completed or "
    "failed, is 409 DUPLICATE_REFERENCE carrying that transaction). With a key, the key's rules apply as on every money "
    "endpoint (same key and body: the first response replayed).",
)
AUTH_ERRORS = {
    401: OpenApiResponse(ErrorOutput, description="AUTHENTICATION_FAILED"),
    403: OpenApiResponse(ErrorOutput, description="PERMISSION_DENIED (a member without a suitable role; a user on an organization endpoint)"),
}
NOT_FOUND = {404: OpenApiResponse(ErrorOutput, description="NOT_FOUND: no such object visible to you")}

ASSET_EXAMPLE = {"id": 8, "code": "POINTS", "name": "Loyalty points", "exponent": 0, "kind": "custom", "custom": True,
                 "created_at": "2026-05-31T12:00:00Z"}
USD_EXAMPLE = {"id": 1, "code": "USD", "name": "US Dollar", "exponent": 2, "kind": "fiat", "custom": False,
               "created_at": "2026-01-01T00:00:00Z"}
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
    **TX_EXAMPLE, "balance_after": "0", "metadata": {"order": "77"}, "failure": None,
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


# --- Assets -------------------------------------------------------------------------------------------


class AssetListCreateApi(generics.GenericAPIView):
    serializer_class = AssetOutput
    queryset = Asset.objects.none()
    filter_backends: list = []

    def get_permissions(self):
        return [IsOrganization()] if self.request.method == "POST" else [IsOrganizationOrUser()]

    @extend_schema(
        operation_id="assets_list", tags=["ledger: assets"], parameters=[ORG_HEADER],
        summary="The platform's assets, plus your organization's custom ones",
        responses={200: AssetOutput(many=True), **AUTH_ERRORS},
        examples=[OpenApiExample("Assets", value=_paginated(USD_EXAMPLE, ASSET_EXAMPLE), response_only=True)],
    )
    def get(self, request):
        assets = assets_visible(organization=request_organization(request)).order_by("code", "id")
        page = self.paginate_queryset(assets)
        return self.get_paginated_response(AssetOutput(page, many=True).data)

    @extend_schema(
        operation_id="assets_create", tags=["ledger: assets"], parameters=[ORG_HEADER],
        summary="Define a custom asset (points, tickets...), visible only to your organization",
        request=AssetCreateInput,
        responses={
            201: AssetOutput,
            400: OpenApiResponse(ErrorOutput, description="VALIDATION_ERROR: a bad field, or the code is taken (by a platform asset or one of yours)"),
            **AUTH_ERRORS,
        },
        examples=[
            OpenApiExample("Loyalty points", value={"code": "POINTS", "name": "Loyalty points", "exponent": 0}, request_only=True),
            OpenApiExample("Created", value=ASSET_EXAMPLE, response_only=True, status_codes=["201"]),
            OpenApiExample("Code taken", value=_error("VALIDATION_ERROR", "code: an asset POINTS already exists.",
                                                      {"fields": {"code": ["An asset with this code already exists."]}}),
                           response_only=True, status_codes=["400"]),
        ],
    )
    def post(self, request):
        data = validated(AssetCreateInput(data=request.data))
        asset = organization_asset_create(organization=request.organization, principal=request.user, **data)
        return Response(AssetOutput(asset).data, status=status.HTTP_201_CREATED)


# --- Transactions -----------------------------------------------------------------------------------


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
            OpenApiExample("A user's history", value=_paginated(USER_TX_EXAMPLE), response_only=True),
            OpenApiExample("Bad date", value=_error("VALIDATION_ERROR", "Invalid input: from: Enter an ISO 8601 date or date-time, e.g. 2026-05-31 or 2026-05-31T12:00:00Z.",
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
            OpenApiExample("Failed at operation 0", response_only=True, status_codes=["422"], value=_error(
                "INSUFFICIENT_FUNDS", "Operation 0: wallet 31 has insufficient available funds.",
                {"operation_index": 0, "wallet_id": 31, "code": "INSUFFICIENT_FUNDS",
                 "reason": "Operation 0: wallet 31 has insufficient available funds.", "transaction_id": 980,
                 "transaction": FAILED_DETAIL_EXAMPLE})),
            OpenApiExample("Reference already used", response_only=True, status_codes=["409"], value=_error(
                "DUPLICATE_REFERENCE", "The reference 'order-77' was already used (transaction 981).",
                {"reference": "order-77", "transaction_id": 981, "status": "completed", "type": "ledger", "transaction": TX_DETAIL_EXAMPLE})),
            OpenApiExample("Not your wallet", response_only=True, status_codes=["404"], value=_error(
                "NOT_FOUND", "Wallet not found.", {"operation_index": 1, "field": "operations[1].destination_wallet_id"})),
            OpenApiExample("Bad amount", response_only=True, status_codes=["400"], value=_error(
                "VALIDATION_ERROR", "operations[0].amount: This asset allows at most 0 decimals.",
                {"fields": {"operations[0].amount": ["This asset allows at most 0 decimals."]}})),
        ],
    )
    @idempotent(endpoint="ledger.transactions.create", key_optional=True)
    def post(self, request):
        data = validated(LedgerTransactionCreateInput(data=request.data))
        representation = organization_transaction_post(organization=request.organization, principal=request.user, **data)
        return Response(
            LedgerTransactionDetailOutput(representation).data,
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
        examples=[OpenApiExample("Entries", value=_paginated(*USER_ENTRIES_EXAMPLE), response_only=True)],
    )
    def get(self, request, transaction_id: int):
        viewer = viewer_of(request)
        entries = transaction_entries_visible(viewer=viewer, transaction_id=transaction_id)
        page = self.paginate_queryset(entries)
        presenter = TransactionPresenter(viewer=viewer)
        return self.get_paginated_response(LedgerEntryOutput([presenter.entry(e) for e in page], many=True).data)


# --- Organization wallets ------------------------------------------------------------------------------
# `/wallets`, `/wallets/{id}` and `/wallets/{id}/entries` are shared with users (wallets.apis): those
# views admit organization callers and hand them to the functions below. The lifecycle endpoints
# (`suspend`, `activate`, `close`, and DELETE through wallets.apis) are here.

WALLET_EVENTS = {"suspend": "wallet.suspended", "activate": "wallet.activated", "close": "wallet.closed"}


def _wallet_payload(wallet) -> dict[str, Any]:
    return dict(OrgWalletOutput(wallet).data)


def organization_wallet_open(*, organization: Organization, principal, currency: str, customer_external_id: str = "",
                             system: bool = False, label: str = "") -> Wallet:
    """Open a wallet for one of the organization's customers, or a system wallet of the
    organization; audited, and announced by a `wallet.created` webhook in the same transaction."""
    try:
        asset = asset_get(code=currency, organization=organization)
    except Asset.DoesNotExist:
        raise ValidationFailed(f"currency: unknown asset {currency!r}.", details={"fields": {"currency": ["Unknown asset."]}}) from None
    with db_transaction.atomic():
        if system:
            wallet = wallet_open(asset=asset, organization=organization, label=label)
        else:
            customer = Customer.objects.filter(organization=organization, external_id=customer_external_id).first()
            if customer is None:
                raise NotFound("Customer not found.", details={"customer_external_id": customer_external_id})
            wallet = wallet_open(asset=asset, customer=customer, label=label)
        wallet = Wallet.objects.select_related(*WALLET_RELATED).get(pk=wallet.pk)
        webhook_publish(organization=organization, event_type="wallet.created", payload=_wallet_payload(wallet))
        audit_record(
            actor=principal if isinstance(principal, User) else None, action="wallet.open", target=wallet,
            data={"currency": asset.code, "label": label, "system": system, "customer_external_id": customer_external_id or None,
                  **principal_audit_data(principal)},
        )
    return wallet


def organization_wallet_transition(*, organization: Organization | None, user: User | None, wallet_id: int, action: str,
                                   principal=None, reason: str = "") -> Wallet:
    """Suspend, activate or close a wallet the caller owns (404 otherwise) through the ledger's
    FSM services (INVALID_STATE, WALLET_NOT_EMPTY); an organization's wallet change is announced
    by a `wallet.<suspended|activated|closed>` webhook in the same transaction."""
    viewer = Viewer(organization=organization) if organization is not None else Viewer(user=user)
    owned = wallets_owned(viewer=viewer)
    if organization is None:
        owned = owned.filter(kind=Wallet.Kind.CUSTOMER)
    if not owned.filter(pk=wallet_id).exists():
        raise WalletNotFound(f"Wallet {wallet_id} not found.", details={"wallet_id": wallet_id})
    service = {"suspend": wallet_suspend, "activate": wallet_activate, "close": wallet_close}[action]
    actor = user if user is not None else (principal if isinstance(principal, User) else None)
    with db_transaction.atomic():
        service(wallet=wallet_id, actor=actor, reason=reason)
        wallet = Wallet.objects.select_related(*WALLET_RELATED).get(pk=wallet_id)
        if organization is not None:
            webhook_publish(organization=organization, event_type=WALLET_EVENTS[action], payload=_wallet_payload(wallet))
    return wallet


def org_wallets_for(organization: Organization):
    return wallets_owned(viewer=Viewer(organization=organization)).select_related(*WALLET_RELATED).order_by("id")


def org_wallet_get(organization: Organization, wallet_id: int) -> Wallet:
    wallet = org_wallets_for(organization).filter(pk=wallet_id).first()
    if wallet is None:
        raise WalletNotFound(f"Wallet {wallet_id} not found.", details={"wallet_id": wallet_id})
    return wallet


def org_wallets_list(request, view) -> Response:
    """GET /wallets for an organization: its system wallets and its customers' wallets;
    `?customer_external_id=`, `?currency=`, `?status=` narrow it."""
    wallets = org_wallets_for(request.organization)
    params = request.query_params
    if params.get("customer_external_id"):
        wallets = wallets.filter(customer__external_id=params["customer_external_id"])
    if params.get("currency"):
        wallets = wallets.filter(asset__code=params["currency"].strip().upper())
    if params.get("status"):
        if params["status"] not in Wallet.Status.values:
            raise ValidationFailed("status: not a wallet status.", details={"fields": {"status": [f"One of {', '.join(Wallet.Status.values)}."]}})
        wallets = wallets.filter(status=params["status"])
    paginator = LimitOffsetPagination()
    page = paginator.paginate_queryset(wallets, request, view=view)
    return paginator.get_paginated_response(OrgWalletOutput(page, many=True).data)


def org_wallet_create(request) -> Response:
    data = validated(OrgWalletCreateInput(data=request.data))
    wallet = organization_wallet_open(organization=request.organization, principal=request.user, **data)
    return Response(OrgWalletOutput(wallet).data, status=status.HTTP_201_CREATED)


def org_wallet_retrieve(request, wallet_id: int) -> Response:
    return Response(OrgWalletOutput(org_wallet_get(request.organization, wallet_id)).data)


def org_wallet_entries(request, view, wallet_id: int) -> Response:
    wallet = org_wallet_get(request.organization, wallet_id)
    entries = entries_in_range(wallet_entries(wallet=wallet).select_related("wallet__customer"), request.query_params)
    paginator = LimitOffsetPagination()
    page = paginator.paginate_queryset(entries, request, view=view)
    presenter = TransactionPresenter(viewer=Viewer(organization=request.organization))
    return paginator.get_paginated_response(LedgerEntryOutput([presenter.entry(e) for e in page], many=True).data)


def wallet_close_response(request, wallet_id: int) -> Response:
    """POST /wallets/{id}/close and DELETE /wallets/{id}, for users and organizations alike."""
    data = validated(WalletActionInput(data=request.data or {}))
    organization = request_organization(request)
    wallet = organization_wallet_transition(
        organization=organization, user=None if organization is not None else request.user, principal=request.user,
        wallet_id=wallet_id, action="close", reason=data["reason"],
    )
    return Response(OrgWalletOutput(wallet).data)


ORG_WALLET_EXAMPLE = {
    "id": 31, "currency": "POINTS", "label": "", "system": False, "customer_external_id": "user-8812", "balance": "120",
    "available_balance": "120", "held_balance": "0", "status": "active", "owner_name": "Ada Lovelace",
    "created_at": "2026-05-31T12:00:00Z", "updated_at": "2026-05-31T12:05:00Z",
}
WALLET_STATE_ERRORS = {
    **AUTH_ERRORS, **NOT_FOUND,
    409: OpenApiResponse(ErrorOutput, description="INVALID_STATE (e.g. activating an active wallet, anything on a closed one) or WALLET_NOT_EMPTY"),
}


class IsOrganizationOrWalletStaff(BasePermission):
    """Organizations (IsOrganization's rules) or, with a user token and no X-Organization header,
    staff holding `ledger.change_wallet` (the compliance officer role), on any wallet (SPEC 6:
    suspend/activate are for organizations or staff)."""

    message = "Use organization credentials, or a staff token with the wallet permission."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if isinstance(user, User) and user.is_active and user.is_staff and not request.META.get(ORGANIZATION_HEADER):
            request.organization = None
            return user.has_perm("ledger.change_wallet")
        return IsOrganization().has_permission(request, view)


def staff_wallet_transition(*, user: User, wallet_id: int, action: str, reason: str = "") -> Wallet:
    """A staff member suspends or activates any wallet through the ledger's FSM services
    (audited with the staff actor); the owning organization, if any, gets the webhook."""
    if not Wallet.objects.filter(pk=wallet_id).exists():
        raise WalletNotFound(f"Wallet {wallet_id} not found.", details={"wallet_id": wallet_id})
    service = {"suspend": wallet_suspend, "activate": wallet_activate}[action]
    with db_transaction.atomic():
        service(wallet=wallet_id, actor=user, reason=reason)
        wallet = Wallet.objects.select_related(*WALLET_RELATED).get(pk=wallet_id)
        owner = wallet.organization or (wallet.customer.organization if wallet.customer_id else None)
        if owner is not None:
            webhook_publish(organization=owner, event_type=WALLET_EVENTS[action], payload=_wallet_payload(wallet))
    return wallet


class _WalletTransitionApi(generics.GenericAPIView):
    serializer_class = OrgWalletOutput
    queryset = Wallet.objects.none()
    permission_classes = [IsOrganizationOrWalletStaff]
    filter_backends: list = []
    action = ""

    def post(self, request, wallet_id: int):
        data = validated(WalletActionInput(data=request.data or {}))
        if request.organization is None:  # staff (IsOrganizationOrWalletStaff)
            wallet = staff_wallet_transition(user=request.user, wallet_id=wallet_id, action=self.action, reason=data["reason"])
        else:
            wallet = organization_wallet_transition(
                organization=request.organization, user=None, principal=request.user, wallet_id=wallet_id, action=self.action,
                reason=data["reason"],
            )
        return Response(OrgWalletOutput(wallet).data)


class WalletSuspendApi(_WalletTransitionApi):
    action = "suspend"

    @extend_schema(
        operation_id="wallets_suspend", tags=["wallets"], parameters=[ORG_HEADER], request=WalletActionInput,
        summary="Suspend a wallet (organizations or staff): it keeps its balance but takes part in no transaction (WALLET_INACTIVE)",
        responses={200: OrgWalletOutput, **WALLET_STATE_ERRORS},
        examples=[
            OpenApiExample("Why", value={"reason": "chargeback investigation"}, request_only=True),
            OpenApiExample("Suspended", value={**ORG_WALLET_EXAMPLE, "status": "suspended"}, response_only=True),
            OpenApiExample("Not active", value=_error("INVALID_STATE", "A suspended wallet cannot be suspended.", {"wallet_id": 31, "status": "suspended"}),
                           response_only=True, status_codes=["409"]),
        ],
    )
    def post(self, request, wallet_id: int):
        return super().post(request, wallet_id)


class WalletActivateApi(_WalletTransitionApi):
    action = "activate"

    @extend_schema(
        operation_id="wallets_activate", tags=["wallets"], parameters=[ORG_HEADER], request=WalletActionInput,
        summary="Re-activate a suspended wallet (organizations or staff)",
        responses={200: OrgWalletOutput, **WALLET_STATE_ERRORS},
        examples=[
            OpenApiExample("Why", value={"reason": "investigation closed"}, request_only=True),
            OpenApiExample("Active again", value=ORG_WALLET_EXAMPLE, response_only=True),
        ],
    )
    def post(self, request, wallet_id: int):
        return super().post(request, wallet_id)


class WalletCloseApi(generics.GenericAPIView):
    serializer_class = OrgWalletOutput
    queryset = Wallet.objects.none()
    permission_classes = [IsOrganizationOrUser]
    filter_backends: list = []

    @extend_schema(
        operation_id="wallets_close", tags=["wallets"], parameters=[ORG_HEADER], request=WalletActionInput,
        summary="Close a wallet (final; only at zero balance and no holds). DELETE /wallets/{id} does the same; rows are never deleted",
        responses={200: OrgWalletOutput, **WALLET_STATE_ERRORS},
        examples=[
            OpenApiExample("Why", value={"reason": "customer left"}, request_only=True),
            OpenApiExample("Closed", value={**ORG_WALLET_EXAMPLE, "balance": "0", "available_balance": "0", "status": "closed"}, response_only=True),
            OpenApiExample("Not empty", value=_error("WALLET_NOT_EMPTY", "Wallet 31 still holds 120 POINTS.", {"wallet_id": 31, "balance": "120", "held": "0"}),
                           response_only=True, status_codes=["409"]),
        ],
    )
    def post(self, request, wallet_id: int):
        return wallet_close_response(request, wallet_id)
