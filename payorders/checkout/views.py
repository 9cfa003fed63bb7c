"""The hosted checkout page (`/pay/<public id>`, SPEC 9) and its small endpoints. No login: the
order's public id is the capability (see payorders.checkout.services).

- GET  /pay/<id>                  the page (server-rendered; works without JavaScript too)
- GET  /pay/<id>/status.json      what the page polls every 2 s
- POST /pay/<id>/quote            price the order in each offered currency (JSON)
- POST /pay/<id>/payment-details  {currency, quote_id?} -> the deposit address, amount, QR (JSON);
                                  a plain form post (no JavaScript) redirects back to the page
- POST /pay/<id>/choose-again     back to choosing a currency while nothing is paid (JSON, or a
                                  form post redirected back to the page)
- GET  /pay/<id>/qr.svg           the payment URI as a QR code image

The page and its status poll look for a broadcast, unmined payment first (at most every few
seconds per order; payorders.checkout.services.checkout_look_for_payment).

POSTs are CSRF-protected: the page carries Django's token and the script sends it as
X-CSRFToken; a failed check on a JSON endpoint is a JSON 403, not Django's HTML page. Every
endpoint is rate-limited per client address (payorders.checkout.services.checkout_rate_limit). Responses
are never cached, never indexed, send no Referer onwards (the URL is the capability) and the page
runs under a strict Content-Security-Policy (no inline script or style).
"""

from __future__ import annotations

from functools import wraps

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_POST
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from core.errors import CofferError, RateLimited, ValidationFailed
from core.exceptions import error_body
from core.parsers import json_loads_capped
from payorders.checkout import services as checkout
from payorders.errors import PayOrderNotFound

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def _client_ident(request: HttpRequest) -> str:
    """REMOTE_ADDR, unless REST_FRAMEWORK["NUM_PROXIES"] says proxies sit in front (the same rule
    as accounts.identity.throttles: a client-made X-Forwarded-For must not dodge the limit)."""
    if api_settings.NUM_PROXIES is None:
        return request.META.get("REMOTE_ADDR", "")
    return BaseThrottle().get_ident(request)


def _private(response: HttpResponse, *, csp: str | None = None) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    response["X-Robots-Tag"] = "noindex, nofollow"
    if csp:
        response["Content-Security-Policy"] = csp
    return response


def _json_error(exc: CofferError) -> JsonResponse:
    response = JsonResponse(error_body(exc.code, exc.message, exc.details), status=exc.status)
    for name, value in exc.headers.items():
        response[name] = value
    return _private(response)


def _message_page(request: HttpRequest, exc: CofferError) -> HttpResponse:
    titles = {404: "Payment request not found", 429: "Too many requests"}
    texts = {
        404: "This payment link is not valid. Check the link you were given, or ask the merchant for a new one.",
        429: "You have made too many requests. Wait a minute and reload the page.",
    }
    context = {"title": titles.get(exc.status, "Something went wrong"), "text": texts.get(exc.status, exc.message)}
    response = render(request, "payorders/checkout_message.html", context, status=exc.status)
    for name, value in exc.headers.items():
        response[name] = value
    return _private(response, csp=PAGE_CSP)


class CsrfFailed(CofferError):
    code, status = "PERMISSION_DENIED", 403
    default_message = "The page's security token is missing or stale; reload the page and try again."


_csrf_check = CsrfViewMiddleware(lambda request: None)


def csrf_protect_json(view):
    """Django's own CSRF check, answered in JSON: the middleware skips the view (csrf_exempt) and
    the view runs exactly the same check first (`CsrfViewMiddleware.process_view`)."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if _csrf_check.process_view(request, None, (), {}) is not None:
            return _json_error(CsrfFailed(details={"reason": "csrf"}))
        return view(request, *args, **kwargs)

    return csrf_exempt(wrapped)


def _limited(request: HttpRequest, scope: str) -> None:
    checkout.checkout_rate_limit(scope=scope, ident=_client_ident(request))


def _time_left(seconds: int) -> str:
    """The countdown's first value (the script takes over; without it, this is what shows)."""
    hours, rest = divmod(max(seconds, 0), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _render_checkout(request: HttpRequest, order, *, error: str = "", status: int = 200) -> HttpResponse:
    state = checkout.checkout_state(order)
    payment = state["payment"]
    context = {
        "state": state,
        "order_id": state["id"],
        # every option is rendered (hidden outside the choice) so the payer can switch coin in place
        "currencies": checkout.checkout_currencies(order) if state["phase"] in (checkout.CHOOSE, checkout.AWAITING_PAYMENT) else [],
        "qr_svg": checkout.payment_qr_svg(payment["payment_uri"]) if payment else "",
        "error": error,
        "time_left": _time_left(state["seconds_left"]),
    }
    return _private(render(request, "payorders/checkout.html", context, status=status), csp=PAGE_CSP)


@require_GET
@ensure_csrf_cookie
def checkout_page(request: HttpRequest, public_id: str) -> HttpResponse:
    try:
        _limited(request, "page")
        order = checkout.checkout_order(public_id=public_id)
    except (PayOrderNotFound, RateLimited) as exc:
        return _message_page(request, exc)
    return _render_checkout(request, checkout.checkout_look_for_payment(order))


@require_GET
def checkout_status(request: HttpRequest, public_id: str) -> JsonResponse:
    try:
        _limited(request, "status")
        order = checkout.checkout_look_for_payment(checkout.checkout_order(public_id=public_id))
    except CofferError as exc:
        return _json_error(exc)
    return _private(JsonResponse(checkout.checkout_state(order)))


def _json_body(request: HttpRequest) -> dict:
    try:
        body = json_loads_capped(request.body or b"{}")  # a 10,000-deep body is malformed, not a crash
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed("The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ValidationFailed("The body must be a JSON object.")
    return body


@require_POST
@csrf_protect_json
def checkout_quote(request: HttpRequest, public_id: str) -> JsonResponse:
    try:
        _limited(request, "post")
        quotes = checkout.checkout_quotes(public_id=public_id)
    except CofferError as exc:
        return _json_error(exc)
    return _private(JsonResponse({"quotes": quotes}))


def _payment_json(order) -> dict:
    state = checkout.checkout_state(order)
    return {**state, "qr_svg": checkout.payment_qr_svg(state["payment"]["payment_uri"]) if state["payment"] else None}


@require_POST
@csrf_protect_json
def checkout_payment_details(request: HttpRequest, public_id: str):
    """JSON from the page's script; a form post (the page without JavaScript) is redirected back
    to the page, or re-renders it with the error."""
    as_json = request.content_type == "application/json"
    try:
        _limited(request, "post")
        body = _json_body(request) if as_json else request.POST
        order = checkout.checkout_choose(public_id=public_id, currency=body.get("currency"), quote_id=body.get("quote_id"))
    except CofferError as exc:
        if as_json:
            return _json_error(exc)
        if isinstance(exc, (PayOrderNotFound, RateLimited)):
            return _message_page(request, exc)
        order = checkout.checkout_order(public_id=public_id)
        return _render_checkout(request, order, error=exc.message, status=exc.status)
    if not as_json:
        response = HttpResponseRedirect(reverse("checkout", args=[order.public_id]))
        response.status_code = 303  # POST, then GET the page
        return response
    return _private(JsonResponse(_payment_json(order)))


@require_POST
@csrf_protect_json
def checkout_choose_again(request: HttpRequest, public_id: str):
    """Back to the currency choice (JSON from the script; a form post is redirected to the page)."""
    as_json = request.content_type == "application/json"
    try:
        _limited(request, "post")
        order = checkout.checkout_choose_again(public_id=public_id)
    except CofferError as exc:
        if as_json:
            return _json_error(exc)
        if isinstance(exc, (PayOrderNotFound, RateLimited)):
            return _message_page(request, exc)
        order = checkout.checkout_order(public_id=public_id)
        return _render_checkout(request, order, error=exc.message, status=exc.status)
    if not as_json:
        response = HttpResponseRedirect(reverse("checkout", args=[order.public_id]))
        response.status_code = 303
        return response
    return _private(JsonResponse(_payment_json(order)))


@require_GET
def checkout_qr(request: HttpRequest, public_id: str) -> HttpResponse:
    try:
        _limited(request, "qr")
        order = checkout.checkout_order(public_id=public_id)
    except CofferError as exc:
        return _json_error(exc)
    state = checkout.checkout_state(order)
    if state["payment"] is None:
        return _json_error(PayOrderNotFound("This order has no payment details yet.", details={"id": state["id"]}))
    response = HttpResponse(checkout.payment_qr_document(state["payment"]["payment_uri"]), content_type="image/svg+xml")
    return _private(response, csp="default-src 'none'; style-src 'unsafe-inline'")
