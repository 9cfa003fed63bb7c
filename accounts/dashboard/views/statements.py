"""Statements from the dashboard: the same documents as GET /api/v1/wallets/{id}/statement
(`ledger.statements`), for the current organization's wallets (its system wallets and its
customers'); another organization's wallet is the 404 page. Read-only."""

from __future__ import annotations

from django.http import HttpResponseBadRequest

from accounts.dashboard.access import dashboard_view
from core.errors import ValidationFailed
from ledger.apis.statements import statement_response
from ledger.selectors import Viewer, wallet_get_visible
from ledger.statements import format_parse, period_parse, statement_build


@dashboard_view()
def wallet_statement(request, wallet_id: int):
    try:
        period, fmt = period_parse(request.GET), format_parse(request.GET, default="pdf")
        if fmt == "json":
            raise ValidationFailed("format: csv or pdf.")
    except ValidationFailed as exc:
        return HttpResponseBadRequest(exc.message, content_type="text/plain; charset=utf-8")
    wallet = wallet_get_visible(viewer=Viewer(organization=request.organization), wallet_id=wallet_id)
    statement = statement_build(wallet=wallet, period=period)
    try:
        return statement_response([statement], fmt=fmt, stem=f"statement-wallet-{wallet.pk}", title="Statement")
    except ValidationFailed as exc:  # too many entries for a PDF: the message points to the CSV
        return HttpResponseBadRequest(exc.message, content_type="text/plain; charset=utf-8")
