from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.generics import ListAPIView
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Customer
from accounts.orgs.tenancy import ORGANIZATION_HEADER, IsOrganization, IsUser, request_organization
from compliance.fees import fee_compute
from compliance.filters import AuditEventFilter
from compliance.limits import limits_status
from compliance.models import Direction, MovementType
from compliance.permissions import CanReadAudit
from compliance.selectors import audit_event_list
from compliance.serializers import (
    AuditEventOutput,
    AuditVerifyOutput,
    FeeQuoteInput,
    FeeQuoteOutput,
    LimitCheckInput,
    LimitScopeInput,
    LimitStatusOutput,
)
from compliance.audit import audit_verify
from core.livemode import mode_q, request_livemode
from core.errors import NotFound, ValidationFailed
from core.money import parse_amount
from core.openapi import error_example
from ledger.models import Asset
from ledger.selectors import asset_get

_EVENT_EXAMPLE = {
    "id": 42,
    "created_at": "2026-05-31T12:00:00.000000Z",
    "actor_id": 7,
    "actor_label": "jane@example.com",
    "action": "user.login",
    "target_type": "accounts.user",
    "target_id": "7",
    "data": {"client_ip": "203.0.113.9"},
    "sequence": 41,
    "prev_hash": "9f1c…",
    "hash": "4b2e…",
}


@extend_schema(tags=["audit"])
class AuditEventListApi(ListAPIView):
    permission_classes = [CanReadAudit]
    serializer_class = AuditEventOutput
    filterset_class = AuditEventFilter

    def get_queryset(self):
        return audit_event_list(viewer=self.request.user)

    @extend_schema(
        summary="List audit events (staff, auditors, compliance officers)",
        examples=[OpenApiExample("An event", value=_EVENT_EXAMPLE, response_only=True)],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


@extend_schema(tags=["audit"])
class AuditVerifyApi(APIView):
    permission_classes = [CanReadAudit]

    @extend_schema(
        summary="Verify the audit chain",
        description=(
            "Recomputes every chained event's keyed hash, link and sequence number in chain order, then compares "
            "the head with the sequencer's last signed checkpoint. `reason` names what is wrong (its first word: "
            "deleted, reordered, relinked, edited, rehashed, truncated, rewritten or checkpoint). Events not linked "
            "yet (written in the last seconds) are not examined."
        ),
        responses=AuditVerifyOutput,
        examples=[
            OpenApiExample("Intact", value={"valid": True, "checked": 1200, "head_hash": "4b2e…", "first_invalid_id": None, "reason": None}),
            OpenApiExample(
                "Broken",
                value={
                    "valid": False, "checked": 17, "head_hash": "4b2e…", "first_invalid_id": 17,
                    "reason": "edited: event 17 (sequence 17) no longer matches its keyed hash (its content was changed)",
                },
            ),
        ],
    )
    def get(self, request):
        return Response(AuditVerifyOutput(audit_verify()).data)


# --- Fees and limits ------------------------------------------------------------------------------


def _asset_for(request, code: str):
    try:
        return asset_get(code=code, organization=request_organization(request))
    except Asset.DoesNotExist:
        raise ValidationFailed(f"currency: unknown currency {code!r}.", details={"fields": {"currency": ["Unknown currency."]}}) from None


def _customer_for(request, external_id: str) -> Customer:
    """A user's own customer profile; for an organization, its customer by external id (404
    when it has none by that id). A user without a profile yet (created outside signup) gets
    an unsaved KYC-none profile: no usage, the lowest limits."""
    organization = request_organization(request)
    if organization is not None:
        if not external_id:
            raise ValidationFailed(
                "customer_external_id: required for organizations.",
                details={"fields": {"customer_external_id": ["Required for organizations."]}},
            )
        customer = Customer.objects.filter(mode_q(request_livemode(request)), organization=organization, external_id=external_id).first()
        if customer is None:
            raise NotFound(f"Customer {external_id!r} not found.")
        return customer
    user = request.user
    return Customer.objects.filter(user=user).first() or Customer(user=user, kyc_level=Customer.KycLevel.NONE)


class _UserOrOrganization(BasePermission):
    """A person's token, or an organization credential / member acting for one."""

    message = "Sign in as a user, or authenticate as an organization."

    def has_permission(self, request, view) -> bool:
        if IsUser().has_permission(request, view) and not request.META.get(ORGANIZATION_HEADER):
            return True
        return IsOrganization().has_permission(request, view)


_FEE_EXAMPLE = {
    "fee_amount": "10.00", "fee_currency": "USD", "fee_type": "percentage", "fee_percentage": "1.00",
    "total_amount": "1010.00", "description": "Withdrawal to a bank account: 1%, minimum USD 1.00 (reference currency, converted at the rate)",
    "minimum_fee": "1.00", "maximum_fee": None, "rule_currency": "USD", "reference_currency": "USD", "rate": "1",
    "reference": {"fee_amount": "10.00", "fixed": "0.00", "minimum_fee": "1.00", "maximum_fee": None},
}
_FEE_BTC_EXAMPLE = {
    "fee_amount": "0.00001539", "fee_currency": "BTC", "fee_type": "percentage", "fee_percentage": "1.00",
    "total_amount": "0.00101539", "description": "Withdrawal to a bank account: 1%, minimum USD 1.00 (reference currency, converted at the rate)",
    "minimum_fee": "0.00001539", "maximum_fee": None, "rule_currency": "USD", "reference_currency": "USD", "rate": "65000",
    "reference": {"fee_amount": "1.00", "fixed": "0.00", "minimum_fee": "1.00", "maximum_fee": None},
}
_BAD_AMOUNT = OpenApiExample(
    "Bad amount", status_codes=["400"],
    value=error_example("VALIDATION_ERROR", "amount: This asset allows at most 2 decimals.", {"fields": {"amount": ["This asset allows at most 2 decimals."]}}),
)


@extend_schema(tags=["fees"])
class FeeQuoteApi(APIView):
    permission_classes = [_UserOrOrganization]

    @extend_schema(
        summary="Quote the fee of a movement",
        description=(
            "The most specific active fee rule wins (currency + destination type > destination type > currency > "
            "generic). The fee is rounded UP to the asset's exponent (in the platform's favour), then raised to the "
            "rule's minimum / capped at its maximum. `total_amount` = amount + fee. A default rule (no currency) has its "
            "fixed part, minimum and maximum in the reference currency (`reference_currency`, LIMITS_REFERENCE_CURRENCY), "
            "converted to the asked currency at the price provider's `rate` (one unit of it in the reference currency); "
            "a rule naming the asset is in the asset's own units (`rule_currency`). `reference` shows the fee's worth."
        ),
        request=FeeQuoteInput,
        responses={200: FeeQuoteOutput, 400: OpenApiResponse(description="VALIDATION_ERROR naming the field")},
        examples=[
            OpenApiExample("Withdrawal to an IBAN", value={"type": "withdrawal", "amount": "1000.00", "currency": "USD", "destination_type": "IBAN"}, request_only=True),
            OpenApiExample("Small BTC withdrawal to an IBAN", value={"type": "withdrawal", "amount": "0.001", "currency": "BTC", "destination_type": "IBAN"}, request_only=True),
            OpenApiExample("Quote", value=_FEE_EXAMPLE, response_only=True, status_codes=["200"]),
            OpenApiExample("Quote in BTC: the USD 1.00 minimum converted", value=_FEE_BTC_EXAMPLE, response_only=True, status_codes=["200"]),
            _BAD_AMOUNT,
        ],
    )
    def post(self, request):
        data = FeeQuoteInput(data=request.data)
        data.is_valid(raise_exception=True)
        asset = _asset_for(request, data.validated_data["currency"])
        amount = parse_amount(data.validated_data["amount"], exponent=asset.exponent, field="amount")
        quote = fee_compute(
            movement_type=data.validated_data["type"], amount=amount, asset=asset,
            destination_type=data.validated_data["destination_type"],
        )
        return Response(FeeQuoteOutput(quote.as_dict()).data)


_LIMITS_EXAMPLE = {
    "limit_check": "PASSED", "single_transaction_limit": "1000.00", "daily_limit": "2000.00", "daily_used": "500.00",
    "daily_remaining": "1500.00", "monthly_limit": "5000.00", "monthly_used": "1200.00", "monthly_remaining": "3800.00",
    "failed_limit": None, "type": "withdrawal", "direction": "outgoing", "currency": "USD", "kyc_level": "none",
    "limit_currency": "USD", "reference_currency": "USD", "rate": "1",
    "reference": {
        "single_transaction_limit": "1000.00", "daily_limit": "2000.00", "daily_used": "500.00", "daily_remaining": "1500.00",
        "monthly_limit": "5000.00", "monthly_used": "1200.00", "monthly_remaining": "3800.00", "amount": None,
    },
}
_LIMITS_BTC_EXAMPLE = {
    "limit_check": "FAILED", "single_transaction_limit": "0.01538461", "daily_limit": "0.03076923", "daily_used": "0.00000000",
    "daily_remaining": "0.03076923", "monthly_limit": "0.07692307", "monthly_used": "0.00000000", "monthly_remaining": "0.07692307",
    "failed_limit": "single", "type": "withdrawal", "direction": "outgoing", "currency": "BTC", "kyc_level": "none",
    "limit_currency": "USD", "reference_currency": "USD", "rate": "65000",
    "reference": {
        "single_transaction_limit": "1000.00", "daily_limit": "2000.00", "daily_used": "0.00", "daily_remaining": "2000.00",
        "monthly_limit": "5000.00", "monthly_used": "0.00", "monthly_remaining": "5000.00", "amount": "1300.00",
    },
}
_LIMITS_DESCRIPTION = (
    "Limits of the caller's KYC level for one movement type, direction and asset, and what is used of them, "
    "computed from the ledger (completed, pending and in-review movements of the current UTC day / calendar "
    "month; fees and moves between one's own wallets do not count). Null means no limit. Users see their own "
    "profile; organizations name a customer with `customer_external_id`. Figures are in the asked `currency`; the "
    "default rules are in the reference currency (`limit_currency` = `reference_currency`, LIMITS_REFERENCE_CURRENCY): "
    "converted at the price provider's `rate` (one unit of the asset in the reference currency; limits rounded down), "
    "each earlier movement counted at the rate of its own time. A rule naming the asset (`limit_currency` = the asset) "
    "wins over the default. `reference` gives the same figures in the reference currency."
)


@extend_schema(tags=["limits"])
class LimitCheckApi(APIView):
    permission_classes = [_UserOrOrganization]

    @extend_schema(
        summary="Check an amount against the limits",
        description=_LIMITS_DESCRIPTION + " `limit_check` is FAILED (and `failed_limit` names the limit) when moving "
        "`amount` now would break the single, daily or monthly limit. Advisory: the money path re-checks under lock.",
        request=LimitCheckInput,
        responses={200: LimitStatusOutput, 400: OpenApiResponse(description="VALIDATION_ERROR naming the field"), 404: OpenApiResponse(description="NOT_FOUND: no such customer (organizations)")},
        examples=[
            OpenApiExample("Check", value={"type": "withdrawal", "amount": "500.00", "currency": "USD"}, request_only=True),
            OpenApiExample("Passed", value=_LIMITS_EXAMPLE, response_only=True, status_codes=["200"]),
            OpenApiExample("Failed", value={**_LIMITS_EXAMPLE, "limit_check": "FAILED", "failed_limit": "daily"}, response_only=True, status_codes=["200"]),
            OpenApiExample("Check in BTC", value={"type": "withdrawal", "amount": "0.02", "currency": "BTC"}, request_only=True),
            OpenApiExample("Failed in BTC: over USD 1,000 worth", value=_LIMITS_BTC_EXAMPLE, response_only=True, status_codes=["200"]),
            _BAD_AMOUNT,
        ],
    )
    def post(self, request):
        data = LimitCheckInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        asset = _asset_for(request, values["currency"])
        customer = _customer_for(request, values["customer_external_id"])
        amount = parse_amount(values["amount"], exponent=asset.exponent, field="amount")
        result = limits_status(customer=customer, asset=asset, movement_type=values["type"], direction=values["direction"] or None, amount=amount, always_usage=True)
        return Response(LimitStatusOutput(result.as_dict()).data)


@extend_schema(tags=["limits"])
class LimitListApi(APIView):
    permission_classes = [_UserOrOrganization]

    @extend_schema(
        summary="Your limits and their usage",
        description=_LIMITS_DESCRIPTION + " `limit_check` is FAILED when the daily or monthly allowance is used up.",
        parameters=[
            OpenApiParameter("type", str, required=True, enum=MovementType.values),
            OpenApiParameter("currency", str, required=True, description="Asset code"),
            OpenApiParameter("direction", str, required=False, enum=Direction.values),
            OpenApiParameter("customer_external_id", str, required=False, description="Organizations only"),
        ],
        responses={200: LimitStatusOutput, 400: OpenApiResponse(description="VALIDATION_ERROR naming the parameter")},
        examples=[OpenApiExample("Limits", value=_LIMITS_EXAMPLE, response_only=True, status_codes=["200"])],
    )
    def get(self, request):
        data = LimitScopeInput(data=request.query_params)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        asset = _asset_for(request, values["currency"])
        customer = _customer_for(request, values["customer_external_id"])
        result = limits_status(customer=customer, asset=asset, movement_type=values["type"], direction=values["direction"] or None, always_usage=True)
        return Response(LimitStatusOutput(result.as_dict()).data)
