"""`/holds`: an organization's authorization holds (`wallets.movements.holds`): authorize, capture, void, read.

Invariants:
* Create, capture and void move (or reserve) money: `Idempotency-Key` required, `@idempotent`
  owns the durable transaction, MoneyThrottle, scope `ledger:write`. Reads need `read`.
* Another organization's hold is 404; errors in the SPEC 5 envelope.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response

from accounts.identity.throttles import MoneyThrottle
from accounts.orgs.tenancy import IsOrganization
from core.livemode import request_livemode
from core.fields import RawAmountField
from core.idempotency import idempotent
from core.openapi import ErrorOutput, ORG_HEADER, error_example, paginated
from ledger.apis.common import AUTH_ERRORS, NOT_FOUND
from wallets.movements.holds import (
    MAX_EXPIRES_IN,
    hold_get,
    hold_representation,
    holds_visible,
    organization_hold_capture,
    organization_hold_create,
    organization_hold_void,
)
from ledger.models import AuthorizationHold
from ledger.serializers import validated


class HoldCreateInput(serializers.Serializer):
    source_wallet_id = serializers.IntegerField(min_value=1, help_text="Your wallet the amount is reserved on.")
    destination_wallet_id = serializers.IntegerField(min_value=1, help_text="Your wallet a capture pays into.")
    amount = RawAmountField(help_text='Decimal string in major units, e.g. "25.00".')
    currency = serializers.CharField(max_length=16, help_text="The asset code both wallets hold.")
    reference = serializers.CharField(max_length=200, help_text="Your unique id for the hold (shared with transaction references: a used one is 409 DUPLICATE_REFERENCE).")
    description = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    expires_in = serializers.IntegerField(required=False, min_value=1, max_value=MAX_EXPIRES_IN,
                                          help_text="Seconds until the hold is released if not captured (default 7 days, at most 30).")

    def validate_reference(self, value: str) -> str:
        value = value.strip()
        if not value or not value.isprintable():
            raise serializers.ValidationError("1-200 printable characters.")
        return value


class HoldCaptureInput(serializers.Serializer):
    amount = RawAmountField(required=False, help_text="At most the held amount (default: all of it); the rest is released.")


class HoldOutput(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=AuthorizationHold.Status.choices)
    source_wallet_id = serializers.IntegerField()
    destination_wallet_id = serializers.IntegerField()
    amount = serializers.CharField()
    captured_amount = serializers.CharField(allow_null=True)
    currency = serializers.CharField()
    reference = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    transaction_id = serializers.IntegerField(help_text="The pending ledger transaction that reserves the amount.")
    capture_transaction_id = serializers.IntegerField(allow_null=True, help_text="The transaction that posted the capture (the same one for a full capture).")
    expires_at = serializers.DateTimeField()
    closed_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    livemode = serializers.BooleanField(help_text="False for a test-mode hold (a test key's, or any on the sandbox).")


HOLD_EXAMPLE = {
    "id": 12, "status": "held", "source_wallet_id": 31, "destination_wallet_id": 32, "amount": "25.00", "captured_amount": None,
    "currency": "USD", "reference": "booking-881", "description": "Hotel deposit", "transaction_id": 1201, "capture_transaction_id": None,
    "expires_at": "2026-06-07T12:00:00Z", "closed_at": None, "created_at": "2026-05-31T12:00:00Z", "updated_at": "2026-05-31T12:00:00Z", "livemode": True,
}
CAPTURED_EXAMPLE = {**HOLD_EXAMPLE, "status": "captured", "captured_amount": "20.00", "capture_transaction_id": 1207,
                    "closed_at": "2026-06-01T09:00:00Z", "updated_at": "2026-06-01T09:00:00Z"}
VOIDED_EXAMPLE = {**HOLD_EXAMPLE, "status": "voided", "closed_at": "2026-06-01T09:00:00Z", "updated_at": "2026-06-01T09:00:00Z"}
MONEY_ERRORS = {
    **AUTH_ERRORS,
    429: OpenApiResponse(ErrorOutput, description="RATE_LIMITED (Retry-After)"),
}
NOT_HELD = OpenApiExample("Not held any more", response_only=True, status_codes=["409"], value=error_example(
    "INVALID_STATE", "Hold 12 is expired.", {"hold_id": 12, "status": "expired"}))


class HoldListCreateApi(generics.GenericAPIView):
    serializer_class = HoldOutput
    queryset = AuthorizationHold.objects.none()
    permission_classes = [IsOrganization]
    filter_backends: list = []

    def get_throttles(self):
        return [MoneyThrottle()] if self.request.method == "POST" else super().get_throttles()

    @extend_schema(
        operation_id="holds_list", tags=["ledger: holds"], parameters=[ORG_HEADER], summary="Your authorization holds, newest first",
        responses={200: HoldOutput(many=True), **AUTH_ERRORS},
        examples=[OpenApiExample("Holds", value=paginated(HOLD_EXAMPLE), response_only=True)],
    )
    def get(self, request):
        page = self.paginate_queryset(holds_visible(organization=request.organization, livemode=request_livemode(request)))
        return self.get_paginated_response([hold_representation(h) for h in page])

    @extend_schema(
        operation_id="holds_create", tags=["ledger: holds"], parameters=[ORG_HEADER],
        summary="Authorize: reserve an amount on a wallet for a later capture",
        description=(
            "Runs the money path (limits as for a transfer: an open hold counts toward the customer's usage) and reserves "
            "`amount` on the source wallet: its `available_balance` drops at once, its `balance` does not. The hold is a "
            "`pending` ledger transaction (`transaction_id`) until captured, voided or expired (`expires_in`, default 7 "
            "days; a beat task releases it). Both wallets must be yours (else 404). Idempotency-Key required."
        ),
        request=HoldCreateInput,
        responses={
            201: HoldOutput,
            400: OpenApiResponse(ErrorOutput, description="VALIDATION_ERROR, CURRENCY_MISMATCH, IDEMPOTENCY_KEY_REQUIRED"),
            404: OpenApiResponse(ErrorOutput, description="NOT_FOUND: a wallet that is not your organization's"),
            409: OpenApiResponse(ErrorOutput, description="DUPLICATE_REFERENCE, WALLET_INACTIVE, IDEMPOTENCY_KEY_IN_PROGRESS"),
            422: OpenApiResponse(ErrorOutput, description="INSUFFICIENT_FUNDS (available balance; the failed attempt is recorded), LIMIT_EXCEEDED"),
            **MONEY_ERRORS,
        },
        examples=[
            OpenApiExample("Authorize", request_only=True, value={
                "source_wallet_id": 31, "destination_wallet_id": 32, "amount": "25.00", "currency": "USD", "reference": "booking-881",
                "description": "Hotel deposit", "expires_in": 604800}),
            OpenApiExample("Held", response_only=True, status_codes=["201"], value=HOLD_EXAMPLE),
            OpenApiExample("Not enough available", response_only=True, status_codes=["422"], value=error_example(
                "INSUFFICIENT_FUNDS", "Operation 0: wallet 31 has insufficient available funds.",
                {"operation_index": 0, "wallet_id": 31, "transaction_id": 1202})),
        ],
    )
    @idempotent(endpoint="ledger.holds.create")
    def post(self, request):
        data = validated(HoldCreateInput(data=request.data))
        hold = organization_hold_create(organization=request.organization, principal=request.user, **data)
        return Response(hold_representation(hold), status=status.HTTP_201_CREATED, headers={"Location": f"/api/v1/holds/{hold.pk}"})


class HoldDetailApi(generics.GenericAPIView):
    serializer_class = HoldOutput
    queryset = AuthorizationHold.objects.none()
    permission_classes = [IsOrganization]

    @extend_schema(
        operation_id="holds_retrieve", tags=["ledger: holds"], parameters=[ORG_HEADER], summary="One authorization hold",
        responses={200: HoldOutput, **AUTH_ERRORS, **NOT_FOUND},
        examples=[OpenApiExample("Captured in part", value=CAPTURED_EXAMPLE, response_only=True)],
    )
    def get(self, request, hold_id: int):
        return Response(hold_representation(hold_get(organization=request.organization, hold_id=hold_id, livemode=request_livemode(request))))


class HoldCaptureApi(generics.GenericAPIView):
    serializer_class = HoldOutput
    queryset = AuthorizationHold.objects.none()
    permission_classes = [IsOrganization]
    throttle_classes = [MoneyThrottle]

    @extend_schema(
        operation_id="holds_capture", tags=["ledger: holds"], parameters=[ORG_HEADER],
        summary="Capture: post all of the hold, or part of it and release the rest",
        description=(
            "In full, the hold's pending transaction posts; in part, a new transaction posts `amount` and the rest goes back "
            "to the available balance (the pending one becomes `voided`). A hold past `expires_at` is expired instead and "
            "answered 409 INVALID_STATE, even if the expiry task has not run yet. Idempotency-Key required."
        ),
        request=HoldCaptureInput,
        responses={
            200: HoldOutput,
            400: OpenApiResponse(ErrorOutput, description="VALIDATION_ERROR: amount malformed or more than held; IDEMPOTENCY_KEY_REQUIRED"),
            **NOT_FOUND,
            409: OpenApiResponse(ErrorOutput, description="INVALID_STATE (captured, voided or expired), WALLET_INACTIVE (the hold stays open)"),
            **MONEY_ERRORS,
        },
        examples=[
            OpenApiExample("Partial", request_only=True, value={"amount": "20.00"}),
            OpenApiExample("Captured", response_only=True, status_codes=["200"], value=CAPTURED_EXAMPLE),
            OpenApiExample("More than held", response_only=True, status_codes=["400"], value=error_example(
                "VALIDATION_ERROR", "amount: at most the held 25.00 USD.", {"fields": {"amount": ["At most the held 25.00."]}, "held_amount": "25.00"})),
            NOT_HELD,
        ],
    )
    @idempotent(endpoint="ledger.holds.capture")
    def post(self, request, hold_id: int):
        data = validated(HoldCaptureInput(data=request.data))
        hold = organization_hold_capture(organization=request.organization, principal=request.user, hold_id=hold_id, amount=data.get("amount"))
        return Response(hold_representation(hold))


class HoldVoidApi(generics.GenericAPIView):
    serializer_class = HoldOutput
    queryset = AuthorizationHold.objects.none()
    permission_classes = [IsOrganization]
    throttle_classes = [MoneyThrottle]

    @extend_schema(
        operation_id="holds_void", tags=["ledger: holds"], parameters=[ORG_HEADER],
        summary="Void: release the whole hold", request=None,
        responses={200: HoldOutput, 400: OpenApiResponse(ErrorOutput, description="IDEMPOTENCY_KEY_REQUIRED"), **NOT_FOUND,
                   409: OpenApiResponse(ErrorOutput, description="INVALID_STATE (captured, voided or expired)"), **MONEY_ERRORS},
        examples=[OpenApiExample("Voided", response_only=True, status_codes=["200"], value=VOIDED_EXAMPLE), NOT_HELD],
    )
    @idempotent(endpoint="ledger.holds.void")
    def post(self, request, hold_id: int):
        hold = organization_hold_void(organization=request.organization, principal=request.user, hold_id=hold_id)
        return Response(hold_representation(hold))
