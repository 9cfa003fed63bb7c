"""`/reconciliations`: import an external statement (CSV or camt.053) against a wallet and read
the matching result (`ledger.reconciliation`).

Invariants:
* Organizations (scope `ledger:write` to import, `read` to read) reconcile their own wallets;
  staff with a user token (no X-Organization) and the model permission (`ledger.add_reconciliation`
  to import, `ledger.view_reconciliation` to read) any wallet, platform accounts included.
  Another organization's wallet or reconciliation is 404.
* Import takes a multipart upload; it writes no ledger row. The same file against the same
  wallet returns the first reconciliation (200 instead of 201). `Idempotency-Key` is optional
  (the file's digest is the retry key the database enforces, as a transaction's reference is);
  with one, the usual replay, 422 reuse and 409 in-progress answers apply, a file comparing by
  its content.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import generics, serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import BasePermission
from rest_framework.response import Response

from accounts.models import User
from accounts.orgs.tenancy import ORGANIZATION_HEADER, IsOrganization
from core.livemode import request_livemode
from core.errors import ValidationFailed
from core.idempotency import idempotent
from core.openapi import (
    ORG_HEADER,
    PAGE_LIMIT,
    PAGE_OFFSET,
    ErrorOutput,
    error_example,
    paginated,
)
from core.pagination import LimitOffsetPagination
from ledger.apis.common import AUTH_ERRORS, NOT_FOUND
from ledger.reconciliation.models import Reconciliation, ReconciliationLine
from ledger.reconciliation.selectors import (
    line_representation,
    reconciliation_get,
    reconciliation_lines,
    reconciliation_representation,
    reconciliations_visible,
    reconciliations_with_counts,
)
from ledger.reconciliation.services import (
    DEFAULT_WINDOW_DAYS,
    MAX_WINDOW_DAYS,
    reconciliation_import,
)
from ledger.serializers import validated


class IsOrganizationOrReconciliationStaff(BasePermission):
    """Organizations (IsOrganization's rules), or staff with a user token and no X-Organization
    header holding the reconciliation model permission for the method."""

    message = "Use organization credentials, or a staff token with the reconciliation permission."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if isinstance(user, User) and user.is_active and user.is_staff and not request.META.get(ORGANIZATION_HEADER):
            request.organization = None
            verb = "view" if request.method in ("GET", "HEAD", "OPTIONS") else "add"
            return user.has_perm(f"ledger.{verb}_reconciliation")
        return IsOrganization().has_permission(request, view)


class ReconciliationCreateInput(serializers.Serializer):
    wallet_id = serializers.IntegerField(min_value=1, help_text="The wallet the statement is of (e.g. a system wallet standing for a bank account).")
    file = serializers.FileField(help_text=(
        "The statement: a CSV (UTF-8, header row; columns date, amount, currency, reference, description, optional direction) "
        "or an ISO 20022 camt.053 XML file (booked entries; OPBD/CLBD balances)."))
    format = serializers.ChoiceField(choices=[("csv", "CSV"), ("camt053", "camt.053")], required=False,
                                     help_text="Default: detected (XML is camt.053, anything else CSV).")
    date_window_days = serializers.IntegerField(min_value=0, max_value=MAX_WINDOW_DAYS, required=False, default=DEFAULT_WINDOW_DAYS,
                                                help_text="How many days apart a line and a transaction of the same amount may be to match (default 3).")
    closing_balance = serializers.CharField(max_length=60, required=False, allow_blank=True,
                                            help_text="The statement's closing balance, signed (a CSV states none; a camt.053 file's CLBD wins).")
    period_from = serializers.DateField(required=False, help_text="Default: the statement's period (camt.053 FrToDt) or its first line's date.")
    period_to = serializers.DateField(required=False, help_text="Default: the statement's period end, closing balance date or last line's date.")

    def validate(self, attrs):
        for name in ("period_from", "period_to"):
            if name in attrs and not 1900 <= attrs[name].year <= 9000:
                raise serializers.ValidationError({name: ["A year from 1900 to 9000."]})
        if "period_from" in attrs and "period_to" in attrs and attrs["period_from"] > attrs["period_to"]:
            raise serializers.ValidationError({"period_from": ["Must not be after period_to."]})
        return attrs


class ReconciliationSummaryOutput(serializers.Serializer):
    matched = serializers.IntegerField(help_text="Pairs: a statement line and its ledger transaction (by reference, amount and date, or by hand).")
    unmatched_external = serializers.IntegerField(help_text="Statement lines the ledger lacks (resolved or not).")
    unmatched_ledger = serializers.IntegerField(help_text="Ledger transactions of the period the statement lacks (resolved or not).")
    unresolved = serializers.IntegerField()
    resolved = serializers.IntegerField()


class ReconciliationOutput(serializers.Serializer):
    id = serializers.IntegerField()
    wallet_id = serializers.IntegerField()
    currency = serializers.CharField()
    status = serializers.ChoiceField(choices=Reconciliation.Status.choices,
                                     help_text="reconciled: no unresolved line and no remaining difference; else open.")
    source_format = serializers.ChoiceField(choices=Reconciliation.Format.choices)
    source_name = serializers.CharField(allow_blank=True)
    source_digest = serializers.CharField(help_text="SHA-256 of the file: the same file against the same wallet is the same reconciliation.")
    statement_id = serializers.CharField(allow_blank=True)
    period_from = serializers.DateTimeField()
    period_to = serializers.DateTimeField()
    date_window_days = serializers.IntegerField()
    statement_opening_balance = serializers.CharField(allow_null=True)
    statement_closing_balance = serializers.CharField(allow_null=True)
    ledger_opening_balance = serializers.CharField()
    ledger_closing_balance = serializers.CharField(help_text="The wallet's balance at period_to (balance-at).")
    as_of_entry_id = serializers.IntegerField(allow_null=True)
    balance_difference = serializers.CharField(allow_null=True, help_text="statement_closing_balance - ledger_closing_balance; null without a closing balance.")
    adjustments_total = serializers.CharField(help_text="Net of the adjustments booked to resolve lines.")
    remaining_difference = serializers.CharField(allow_null=True, help_text="balance_difference - adjustments_total.")
    summary = ReconciliationSummaryOutput()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ReconciliationLineOutput(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=ReconciliationLine.Kind.choices)
    status = serializers.ChoiceField(choices=ReconciliationLine.Status.choices)
    method = serializers.CharField(allow_null=True, help_text="reference, amount_date, manual or adjustment; null while unmatched.")
    line_number = serializers.IntegerField(allow_null=True, help_text="The CSV line or camt.053 entry number; null for a ledger-only line.")
    date = serializers.DateField(allow_null=True)
    amount = serializers.CharField(allow_null=True, help_text="The statement's signed amount: + money in, - money out.")
    reference = serializers.CharField(allow_blank=True)
    description = serializers.CharField(allow_blank=True)
    transaction_id = serializers.IntegerField(allow_null=True)
    transaction_amount = serializers.CharField(allow_null=True, help_text="The transaction's net signed amount on the wallet.")
    transaction_at = serializers.DateTimeField(allow_null=True)
    adjustment_transaction_id = serializers.IntegerField(allow_null=True)
    paired_line_id = serializers.IntegerField(allow_null=True)
    note = serializers.CharField(allow_blank=True)
    resolution_reason = serializers.CharField(allow_blank=True)
    resolved_at = serializers.DateTimeField(allow_null=True)


class ReconciliationLinesPageOutput(serializers.Serializer):
    results = ReconciliationLineOutput(many=True)
    count = serializers.IntegerField()
    limit = serializers.IntegerField()
    offset = serializers.IntegerField()


class ReconciliationDetailOutput(ReconciliationOutput):
    lines = ReconciliationLinesPageOutput()


RECON_EXAMPLE = {
    "id": 7, "wallet_id": 31, "currency": "USD", "status": "open", "source_format": "camt053", "source_name": "bank-2026-05.xml",
    "source_digest": "9f2c4e0a51d7b3c88e6f0b1f6d2a7c3e5b8d9e0f1a2b3c4d5e6f708192a3b4c5", "statement_id": "STMT-2026-05",
    "period_from": "2026-05-01T00:00:00Z", "period_to": "2026-05-31T23:59:59.999999Z", "date_window_days": 3,
    "statement_opening_balance": "1000.00", "statement_closing_balance": "1275.00", "ledger_opening_balance": "1000.00",
    "ledger_closing_balance": "1225.00", "as_of_entry_id": 912, "balance_difference": "50.00", "adjustments_total": "0.00",
    "remaining_difference": "50.00",
    "summary": {"matched": 2, "unmatched_external": 1, "unmatched_ledger": 1, "unresolved": 2, "resolved": 0},
    "created_at": "2026-06-01T08:00:00Z", "updated_at": "2026-06-01T08:00:00Z",
}
LINE_EXAMPLES = [
    {"id": 40, "kind": "pair", "status": "matched", "method": "reference", "line_number": 1, "date": "2026-05-03", "amount": "300.00",
     "reference": "INV-1001", "description": "Invoice 1001", "transaction_id": 880, "transaction_amount": "300.00",
     "transaction_at": "2026-05-03T10:00:00Z", "adjustment_transaction_id": None, "paired_line_id": None, "note": "",
     "resolution_reason": "", "resolved_at": None},
    {"id": 41, "kind": "external", "status": "unmatched", "method": None, "line_number": 3, "date": "2026-05-20", "amount": "50.00",
     "reference": "NOTPROVIDED", "description": "Interest", "transaction_id": None, "transaction_amount": None, "transaction_at": None,
     "adjustment_transaction_id": None, "paired_line_id": None, "note": "", "resolution_reason": "", "resolved_at": None},
    {"id": 42, "kind": "ledger", "status": "unmatched", "method": None, "line_number": None, "date": None, "amount": None,
     "reference": "payout-77", "description": "Supplier payout", "transaction_id": 901, "transaction_amount": "-75.00",
     "transaction_at": "2026-05-30T16:00:00Z", "adjustment_transaction_id": None, "paired_line_id": None, "note": "",
     "resolution_reason": "", "resolved_at": None},
]
DETAIL_EXAMPLE = {**RECON_EXAMPLE, "lines": {"results": LINE_EXAMPLES, "count": 3, "limit": 20, "offset": 0}}
CSV_SAMPLE = (
    "date,amount,currency,reference,description\n2026-05-03,300.00,USD,INV-1001,Invoice 1001\n"
    "2026-05-04,-75.00,USD,payout-77,Supplier payout\n"
)
BAD_AMOUNT = OpenApiExample("Malformed camt.053 amount", response_only=True, status_codes=["400"], value=error_example(
    "VALIDATION_ERROR", "camt.053: entry 2, entry_ref E-2, field Amt: The amount must be a decimal number such as \"10.50\".",
    {"entry": 2, "entry_ref": "E-2", "field": "Amt", "message": "The amount must be a decimal number such as \"10.50\".",
     "errors": [{"entry": 2, "entry_ref": "E-2", "field": "Amt", "message": "The amount must be a decimal number such as \"10.50\"."}]}))
BAD_CSV = OpenApiExample("Malformed CSV row", response_only=True, status_codes=["400"], value=error_example(
    "VALIDATION_ERROR", "CSV: line 4, field date: Not an ISO 8601 date (YYYY-MM-DD).",
    {"line": 4, "field": "date", "message": "Not an ISO 8601 date (YYYY-MM-DD).",
     "errors": [{"line": 4, "field": "date", "message": "Not an ISO 8601 date (YYYY-MM-DD)."}]}))
LINE_FILTERS = [
    OpenApiParameter("kind", OpenApiTypes.STR, enum=[k for k, _ in ReconciliationLine.Kind.choices], description="Only lines of this kind."),
    OpenApiParameter("status", OpenApiTypes.STR, enum=[s for s, _ in ReconciliationLine.Status.choices], description="Only lines in this status."),
]


def _choice(params, name: str, allowed) -> str | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    if value not in allowed:
        raise ValidationFailed(f"{name}: one of {', '.join(allowed)}.", details={"fields": {name: [f"One of {', '.join(allowed)}."]}})
    return value


class ReconciliationListCreateApi(generics.GenericAPIView):
    serializer_class = ReconciliationOutput
    queryset = Reconciliation.objects.none()
    permission_classes = [IsOrganizationOrReconciliationStaff]
    parser_classes = [MultiPartParser]
    filter_backends: list = []

    @extend_schema(
        operation_id="reconciliations_list", tags=["ledger: reconciliations"], summary="Your reconciliations, newest first",
        parameters=[
            ORG_HEADER,
            OpenApiParameter("wallet_id", OpenApiTypes.INT, description="Only this wallet's."),
            OpenApiParameter("status", OpenApiTypes.STR, enum=[s for s, _ in Reconciliation.Status.choices]),
        ],
        responses={200: ReconciliationOutput(many=True), **AUTH_ERRORS},
        examples=[OpenApiExample("Reconciliations", value=paginated(RECON_EXAMPLE), response_only=True)],
    )
    def get(self, request):
        qs = reconciliations_visible(organization=request.organization, livemode=request_livemode(request))
        raw_wallet = request.query_params.get("wallet_id")
        if raw_wallet not in (None, ""):
            if not raw_wallet.isdigit() or len(raw_wallet) > 18:
                raise ValidationFailed("wallet_id: an integer.", details={"fields": {"wallet_id": ["An integer."]}})
            qs = qs.filter(wallet_id=int(raw_wallet))
        state = _choice(request.query_params, "status", [s for s, _ in Reconciliation.Status.choices])
        if state:
            qs = qs.filter(status=state)
        page = self.paginate_queryset(reconciliations_with_counts(qs))
        return self.get_paginated_response([reconciliation_representation(r) for r in page])

    @extend_schema(
        operation_id="reconciliations_create", tags=["ledger: reconciliations"], parameters=[ORG_HEADER],
        summary="Import a statement (CSV or camt.053) against a wallet and match it",
        description=(
            "Matches each statement line to a ledger transaction with entries on the wallet: first by reference (and the same "
            "signed amount), then by the same amount within `date_window_days` days, each transaction at most once. The result: "
            "matched pairs, statement lines the ledger lacks, ledger transactions of the period the statement lacks, and the "
            "difference between the statement's closing balance and the wallet's balance at the period end. Writes no ledger "
            "row; staff resolve unmatched lines in the admin (match by hand, or book an adjustment). The same file against the "
            "same wallet answers 200 with the first reconciliation. A malformed row is 400 naming its line (CSV) or entry "
            "(camt.053) and field. Signed amounts: + money into the account, - out (or a `direction` column)."
        ),
        request={"multipart/form-data": ReconciliationCreateInput},
        responses={
            201: ReconciliationDetailOutput,
            200: OpenApiResponse(ReconciliationDetailOutput, description="This file was imported against this wallet before: that reconciliation."),
            400: OpenApiResponse(ErrorOutput, description="VALIDATION_ERROR: a malformed file (line or entry and field named), a currency other than the wallet's, a bad parameter"),
            **AUTH_ERRORS,
            404: OpenApiResponse(ErrorOutput, description="NOT_FOUND: a wallet that is not yours"),
            409: OpenApiResponse(ErrorOutput, description="IDEMPOTENCY_KEY_IN_PROGRESS"),
            422: OpenApiResponse(ErrorOutput, description="IDEMPOTENCY_KEY_REUSED"),
        },
        examples=[
            OpenApiExample("A CSV", request_only=True, media_type="multipart/form-data", value={"wallet_id": 31, "file": CSV_SAMPLE, "date_window_days": 3, "closing_balance": "1225.00"}),
            OpenApiExample("Imported", response_only=True, status_codes=["201"], value=DETAIL_EXAMPLE),
            BAD_AMOUNT, BAD_CSV,
            OpenApiExample("Not your wallet", response_only=True, status_codes=["404"], value=error_example("NOT_FOUND", "Wallet 43 not found.", {"wallet_id": 43})),
        ],
    )
    @idempotent(endpoint="ledger.reconciliations.create", key_optional=True)
    def post(self, request):
        data = validated(ReconciliationCreateInput(data=request.data))
        rec, created = reconciliation_import(
            organization=request.organization, actor=request.user, wallet_id=data["wallet_id"], upload=data["file"],
            fmt=data.get("format"), date_window_days=data["date_window_days"], closing_balance=data.get("closing_balance"),
            period_from=data.get("period_from"), period_to=data.get("period_to"),
        )
        body = _detail(request, reconciliation_get(organization=request.organization, reconciliation_id=rec.pk, livemode=request_livemode(request)), view=self)
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
                        headers={"Location": f"/api/v1/reconciliations/{rec.pk}"})


def _detail(request, rec: Reconciliation, *, view) -> dict:
    params = request.query_params
    lines = reconciliation_lines(
        reconciliation=rec, kind=_choice(params, "kind", [k for k, _ in ReconciliationLine.Kind.choices]),
        status=_choice(params, "status", [s for s, _ in ReconciliationLine.Status.choices]),
    )
    paginator = LimitOffsetPagination()
    page = paginator.paginate_queryset(lines, request, view=view)
    exponent = rec.wallet.asset.exponent
    return {**reconciliation_representation(rec), "lines": {
        "results": [line_representation(line, exponent) for line in page], "count": paginator.count,
        "limit": paginator.limit, "offset": paginator.offset}}


class ReconciliationDetailApi(generics.GenericAPIView):
    serializer_class = ReconciliationDetailOutput
    queryset = Reconciliation.objects.none()
    permission_classes = [IsOrganizationOrReconciliationStaff]
    filter_backends: list = []
    pagination_class = None

    @extend_schema(
        operation_id="reconciliations_retrieve", tags=["ledger: reconciliations"],
        summary="One reconciliation with its lines (paginated: ?limit=&offset=, filters kind and status)",
        parameters=[ORG_HEADER, PAGE_LIMIT, PAGE_OFFSET, *LINE_FILTERS],
        responses={200: ReconciliationDetailOutput, **AUTH_ERRORS, **NOT_FOUND},
        examples=[
            OpenApiExample("With its lines", value=DETAIL_EXAMPLE, response_only=True),
            OpenApiExample("Not yours", response_only=True, status_codes=["404"],
                           value=error_example("NOT_FOUND", "Reconciliation 8 not found.", {"reconciliation_id": 8})),
        ],
    )
    def get(self, request, reconciliation_id: int):
        rec = reconciliation_get(organization=request.organization, reconciliation_id=reconciliation_id, livemode=request_livemode(request))
        return Response(_detail(request, rec, view=self))
