"""Balance at a point in time and statements (`ledger.statements`), for users and organizations.

Invariants:
* Read-only: nothing here writes or locks.
* A user reaches only their own wallets; an organization its system wallets and its customers'
  (`ledger.selectors.wallet_get_visible`), and `/customers/{external_id}/statement` only its own
  customers. Anything else is 404.
* `format=csv` streams (any size); `json` and `pdf` carry at most STATEMENT_INLINE_MAX_ENTRIES
  entries (a 400 pointing to CSV beyond). Errors are always the JSON envelope, whatever format
  was asked for (`?format=` is ours, not DRF's renderer switch).
"""

from __future__ import annotations

from django.http import HttpResponse, StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Customer
from accounts.orgs.tenancy import IsOrganization
from core.livemode import mode_q, request_livemode
from core.errors import NotFound
from core.openapi import ErrorOutput, ORG_HEADER, error_example
from ledger.apis.common import AUTH_ERRORS, NOT_FOUND, IsOrganizationOrUser, viewer_of
from ledger.models import Wallet
from ledger.selectors import wallet_balance_at, wallet_get_visible
from ledger.statements import (
    _iso,
    balance_at_parse,
    format_parse,
    period_parse,
    statement_build,
    statement_csv_lines,
    statement_inline_check,
    statement_json,
    statement_pdf,
)


class _JsonErrorsNegotiation(BaseContentNegotiation):
    """Always the JSON renderer: `?format=` picks the statement's format, not DRF's renderer, and
    errors stay in the JSON envelope."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class _ReadApi(APIView):
    permission_classes = [IsOrganizationOrUser]
    content_negotiation_class = _JsonErrorsNegotiation


# --- Balance at -----------------------------------------------------------------------------------

class WalletBalanceOutput(serializers.Serializer):
    wallet_id = serializers.IntegerField()
    currency = serializers.CharField()
    at = serializers.DateTimeField(help_text="The instant the balance is for: `at`, or now when `at` is absent or later than now.")
    balance = serializers.CharField(help_text="Posted balance right after the last entry at or before `at` (0 before the first).")
    available_balance = serializers.CharField(allow_null=True, help_text="Current available balance; null for a past `at` (holds are not historised).")
    as_of_entry_id = serializers.IntegerField(allow_null=True, help_text="The entry whose `balance_after` this is; null before the first entry.")


BALANCE_EXAMPLE = {
    "wallet_id": 42, "currency": "USD", "at": "2026-05-31T23:59:59.999999Z", "balance": "550.00",
    "available_balance": None, "as_of_entry_id": 5,
}
BAD_DATE = OpenApiExample(
    "Bad date", status_codes=["400"], response_only=True,
    value=error_example("VALIDATION_ERROR", "at: Enter an ISO 8601 date or date-time, e.g. 2026-05-31 or 2026-05-31T12:00:00Z.",
                     {"fields": {"at": ["Enter an ISO 8601 date or date-time, e.g. 2026-05-31 or 2026-05-31T12:00:00Z."]}}),
)
UNKNOWN_PARAM = OpenApiExample(
    "Unknown parameter", status_codes=["400"], response_only=True,
    value=error_example("VALIDATION_ERROR", "Unknown query parameter(s): since.", {"unknown_parameters": ["since"], "allowed_parameters": ["at"]}),
)
HISTORY_ARCHIVED = {410: OpenApiResponse(ErrorOutput, description="HISTORY_ARCHIVED: the answer needs entries of a month that was archived "
                                                                    "(`archive_entries`); ask from `details.available_from` on")}
ARCHIVED_EXAMPLE = OpenApiExample(
    "Archived month", status_codes=["410"], response_only=True,
    value=error_example("HISTORY_ARCHIVED", "The entries of 2026-01 of this wallet were archived; ask for balances at and periods from 2026-02-01T00:00:00Z on.",
                        {"wallet_id": 42, "archived_months": ["2026-01"], "available_from": "2026-02-01T00:00:00Z"}),
)
WALLET_NOT_FOUND = OpenApiExample(
    "Not yours", status_codes=["404"], response_only=True,
    value=error_example("NOT_FOUND", "Wallet 43 not found.", {"wallet_id": 43}),
)


class WalletBalanceApi(_ReadApi):
    @extend_schema(
        operation_id="wallets_balance", tags=["wallets"], summary="A wallet's balance at a point in time",
        description=(
            "The `balance_after` of the wallet's last entry at or before `at` (one index lookup), 0 before its first entry. "
            "Without `at`, or with an `at` later than now, the balance now, with the current `available_balance`; for a past "
            "`at`, `available_balance` is null. Users: their own wallets; organizations: their system wallets and their "
            "customers'. Anyone else's wallet is 404."
        ),
        parameters=[
            OpenApiParameter("at", OpenApiTypes.DATETIME, description="ISO 8601 instant (UTC if no offset); a bare date means the end of that UTC day.",
                             examples=[OpenApiExample("End of May", value="2026-05-31"), OpenApiExample("Instant", value="2026-05-31T12:00:00Z")]),
            ORG_HEADER,
        ],
        responses={200: WalletBalanceOutput, 400: OpenApiResponse(ErrorOutput, description="VALIDATION_ERROR: a malformed `at`, or an unknown query parameter"),
                   **AUTH_ERRORS, **NOT_FOUND, **HISTORY_ARCHIVED},
        examples=[
            OpenApiExample("At the end of May", value=BALANCE_EXAMPLE, response_only=True),
            OpenApiExample("Now", value={**BALANCE_EXAMPLE, "at": "2026-06-02T09:00:00Z", "balance": "700.00", "available_balance": "650.00", "as_of_entry_id": 9}, response_only=True),
            BAD_DATE, UNKNOWN_PARAM, WALLET_NOT_FOUND, ARCHIVED_EXAMPLE,
        ],
    )
    def get(self, request, wallet_id: int):
        at = balance_at_parse(request.query_params)
        wallet = wallet_get_visible(viewer=viewer_of(request), wallet_id=wallet_id)
        now = timezone.now()
        past = at is not None and at < now
        effective = at if past else now
        found = wallet_balance_at(wallet=wallet, at=effective)
        return Response(WalletBalanceOutput({
            "wallet_id": wallet.pk, "currency": wallet.asset.code, "at": effective,
            "balance": wallet.asset.format(found.balance),
            "available_balance": None if past else wallet.asset.format(wallet.available_balance),
            "as_of_entry_id": found.entry_id,
        }).data)


# --- Statements -------------------------------------------------------------------------------------

class StatementEntryOutput(serializers.Serializer):
    entry_id = serializers.IntegerField()
    transaction_id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    transaction_type = serializers.CharField()
    entry_type = serializers.ChoiceField(choices=["credit", "debit"], help_text="credit: money in; debit: money out.")
    amount = serializers.CharField()
    balance_after = serializers.CharField()
    counterparty_wallet_id = serializers.IntegerField(allow_null=True, help_text="The other side's wallet; null for a platform account (issuance, fees, FX).")
    counterparty = serializers.CharField(help_text="Who the other side is (a person, a customer, an organization, or a Coffer account).")
    reference = serializers.CharField()
    description = serializers.CharField()


class WalletStatementOutput(serializers.Serializer):
    wallet_id = serializers.IntegerField()
    currency = serializers.CharField()
    owner_name = serializers.CharField(allow_null=True)
    customer_external_id = serializers.CharField(allow_null=True)
    # `from` is a Python keyword: declared below.
    to = serializers.DateTimeField()
    as_of_entry_id = serializers.IntegerField(allow_null=True, help_text="The statement is taken as of this entry (the last at or before `to`).")
    opening_balance = serializers.CharField(help_text="Balance just before `from` (0 before the first entry).")
    total_in = serializers.CharField()
    total_out = serializers.CharField()
    closing_balance = serializers.CharField(help_text="Balance at `to`: always opening + total_in - total_out.")
    entry_count = serializers.IntegerField()
    balanced = serializers.BooleanField(help_text="Always true: a statement that does not balance is refused (500), never returned.")
    check = serializers.CharField()
    entries = StatementEntryOutput(many=True)


WalletStatementOutput._declared_fields["from"] = serializers.DateTimeField(allow_null=True, help_text="Start (inclusive); null: since the first entry.")


class CustomerStatementOutput(serializers.Serializer):
    customer_external_id = serializers.CharField()
    customer_name = serializers.CharField()
    to = serializers.DateTimeField()
    wallets = WalletStatementOutput(many=True)


CustomerStatementOutput._declared_fields["from"] = serializers.DateTimeField(allow_null=True)

STATEMENT_EXAMPLE = {
    "wallet_id": 42, "currency": "USD", "owner_name": "Jane Doe", "customer_external_id": None,
    "from": "2026-05-01T00:00:00Z", "to": "2026-05-31T23:59:59.999999Z", "as_of_entry_id": 5,
    "opening_balance": "500.00", "total_in": "150.00", "total_out": "100.00", "closing_balance": "550.00", "entry_count": 2,
    "balanced": True, "check": "Opening 500.00 + in 150.00 - out 100.00 = closing 550.00 USD: balanced.",
    "entries": [
        {"entry_id": 4, "transaction_id": 2, "created_at": "2026-05-20T10:00:00Z", "transaction_type": "deposit", "entry_type": "credit",
         "amount": "150.00", "balance_after": "650.00", "counterparty_wallet_id": None, "counterparty": "Coffer issuance account",
         "reference": "", "description": "Deposit from card"},
        {"entry_id": 5, "transaction_id": 3, "created_at": "2026-05-31T12:05:00Z", "transaction_type": "transfer", "entry_type": "debit",
         "amount": "100.00", "balance_after": "550.00", "counterparty_wallet_id": 43, "counterparty": "John Smith",
         "reference": "", "description": "Dinner"},
    ],
}
EMPTY_STATEMENT_EXAMPLE = {
    **STATEMENT_EXAMPLE, "from": "2026-04-01T00:00:00Z", "to": "2026-04-30T23:59:59.999999Z", "as_of_entry_id": 3,
    "opening_balance": "500.00", "total_in": "0.00", "total_out": "0.00", "closing_balance": "500.00", "entry_count": 0,
    "check": "Opening 500.00 + in 0.00 - out 0.00 = closing 500.00 USD: balanced.", "entries": [],
}
STATEMENT_PARAMETERS = [
    OpenApiParameter("from", OpenApiTypes.STR, description="Start, inclusive: ISO 8601 date or date-time (UTC if no offset). Default: the first entry.",
                     examples=[OpenApiExample("May", value="2026-05-01")]),
    OpenApiParameter("to", OpenApiTypes.STR, description="End, inclusive: ISO 8601 (a bare date includes that whole day). Default: now.",
                     examples=[OpenApiExample("May", value="2026-05-31")]),
    OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "csv", "pdf"], default="json",
                     description="json (at most STATEMENT_INLINE_MAX_ENTRIES entries, default 10000), csv (streamed, any size; rows "
                                 "`opening`, `entry`..., `total_in`, `total_out`, `closing`, `check` per wallet) or pdf (a document)."),
    ORG_HEADER,
]
STATEMENT_ERRORS = {
    400: OpenApiResponse(ErrorOutput, description="VALIDATION_ERROR: a malformed date, `from` after `to`, an unknown format or query parameter, "
                                                  "or too many entries for json/pdf (use csv)"),
    **AUTH_ERRORS, **NOT_FOUND, **HISTORY_ARCHIVED,
    500: OpenApiResponse(ErrorOutput, description="SERVER_ERROR: the ledger does not balance for this wallet; the statement is refused and the incident logged"),
}
STATEMENT_ERROR_EXAMPLES = [
    ARCHIVED_EXAMPLE,
    OpenApiExample("from after to", status_codes=["400"], response_only=True,
                   value=error_example("VALIDATION_ERROR", "'from' must not be after 'to'.",
                                    {"fields": {"from": ["'from' must not be after 'to'."]}, "from": "2026-06-01T00:00:00+00:00", "to": "2026-05-31T23:59:59.999999+00:00"})),
    OpenApiExample("Bad date", status_codes=["400"], response_only=True,
                   value=error_example("VALIDATION_ERROR", "from: Enter an ISO 8601 date or date-time, e.g. 2026-05-31 or 2026-05-31T12:00:00Z.",
                                    {"fields": {"from": ["Enter an ISO 8601 date or date-time, e.g. 2026-05-31 or 2026-05-31T12:00:00Z."]}})),
    OpenApiExample("Too long for JSON", status_codes=["400"], response_only=True,
                   value=error_example("VALIDATION_ERROR", "This period has 25000 entries; JSON and PDF statements carry at most 10000. Use format=csv or a shorter period.",
                                    {"entry_count": 25000, "limit": 10000, "fields": {"format": ["Use csv for this period."]}})),
]
STATEMENT_CONTENT = {
    (200, "application/json"): WalletStatementOutput,
    (200, "text/csv"): OpenApiTypes.STR,
    (200, "application/pdf"): OpenApiTypes.BINARY,
}


def _filename(stem: str, statements, fmt: str) -> str:
    period = statements[0].period if statements else None
    start = period.start.date().isoformat() if period and period.start else "start"
    end = period.end.date().isoformat() if period else timezone.now().date().isoformat()
    return f"{stem}-{start}-{end}.{fmt}"


def statement_response(statements: list, *, fmt: str, stem: str, title: str, json_body=None):
    """The statements in `fmt`: a JSON Response, a streamed CSV or a PDF (the dashboard and the
    admin serve the same files through this)."""
    if fmt == "csv":
        response = StreamingHttpResponse(statement_csv_lines(statements), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{_filename(stem, statements, "csv")}"'
        response["Cache-Control"] = "no-store"
        return response
    statement_inline_check(statements)
    if fmt == "pdf":
        response = HttpResponse(statement_pdf(statements, title=title), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{_filename(stem, statements, "pdf")}"'
        response["Cache-Control"] = "no-store"
        return response
    return Response(json_body() if json_body else statement_json(statements[0]))


class WalletStatementApi(_ReadApi):
    @extend_schema(
        operation_id="wallets_statement", tags=["wallets"], summary="A wallet's statement for a period (JSON, CSV or PDF)",
        description=(
            "Opening balance, every entry in the period (oldest first) with its counterparty, reference and description, "
            "closing balance, totals in and out, and the check opening + in - out = closing. A period without entries has "
            "opening = closing. Users: their own wallets; organizations: their system wallets and their customers'."
        ),
        parameters=STATEMENT_PARAMETERS,
        responses={**STATEMENT_CONTENT, **STATEMENT_ERRORS},
        examples=[
            OpenApiExample("May", value=STATEMENT_EXAMPLE, response_only=True),
            OpenApiExample("A period without entries", value=EMPTY_STATEMENT_EXAMPLE, response_only=True),
            *STATEMENT_ERROR_EXAMPLES, WALLET_NOT_FOUND,
        ],
    )
    def get(self, request, wallet_id: int):
        params = request.query_params
        period, fmt = period_parse(params), format_parse(params)
        wallet = wallet_get_visible(viewer=viewer_of(request), wallet_id=wallet_id)
        statement = statement_build(wallet=wallet, period=period)
        return statement_response([statement], fmt=fmt, stem=f"statement-wallet-{wallet.pk}", title="Statement")


def customer_statements(*, organization, external_id: str, period, livemode: bool = True) -> tuple[Customer, list]:
    """One statement per wallet of the organization's customer `external_id` of mode `livemode` (404 otherwise)."""
    customer = Customer.objects.filter(mode_q(livemode), organization=organization, external_id=external_id).first()
    if customer is None:
        raise NotFound(f"Customer {external_id!r} not found.", details={"external_id": external_id})
    wallets = list(
        Wallet.objects.filter(customer=customer).select_related("asset", "customer__user", "customer__organization").order_by("id")
    )
    return customer, [statement_build(wallet=w, period=period) for w in wallets]


class CustomerStatementApi(_ReadApi):
    permission_classes = [IsOrganization]

    @extend_schema(
        operation_id="customers_statement", tags=["organization: customers"],
        summary="A customer's statement for a period: one section per wallet (JSON, CSV or PDF)",
        description="Each wallet of the customer, with the same sections as GET /wallets/{id}/statement. Organizations only; another organization's customer is 404.",
        parameters=STATEMENT_PARAMETERS,
        responses={(200, "application/json"): CustomerStatementOutput, (200, "text/csv"): OpenApiTypes.STR,
                   (200, "application/pdf"): OpenApiTypes.BINARY, **STATEMENT_ERRORS},
        examples=[
            OpenApiExample("May", response_only=True, value={
                "customer_external_id": "user-8812", "customer_name": "Ada Lovelace", "from": "2026-05-01T00:00:00Z",
                "to": "2026-05-31T23:59:59.999999Z",
                "wallets": [{**STATEMENT_EXAMPLE, "owner_name": "Ada Lovelace", "customer_external_id": "user-8812"}]}),
            *STATEMENT_ERROR_EXAMPLES,
            OpenApiExample("Not yours", status_codes=["404"], response_only=True,
                           value=error_example("NOT_FOUND", "Customer 'user-0000' not found.", {"external_id": "user-0000"})),
        ],
    )
    def get(self, request, external_id: str):
        params = request.query_params
        period, fmt = period_parse(params), format_parse(params)
        customer, statements = customer_statements(organization=request.organization, external_id=external_id, period=period, livemode=request_livemode(request))
        return statement_response(
            statements, fmt=fmt, stem=f"statement-customer-{customer.pk}", title=f"Statement of {customer.name or customer.external_id}",
            json_body=lambda: {
                "customer_external_id": customer.external_id, "customer_name": customer.name,
                "from": _iso(period.start), "to": _iso(period.end), "wallets": [statement_json(s) for s in statements],
            },
        )


__all__ = ["WalletBalanceApi", "WalletStatementApi", "CustomerStatementApi", "statement_response", "customer_statements"]
