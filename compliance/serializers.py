from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from compliance.models import AuditEvent, Direction, FeeRule, MovementType


class AuditEventOutput(serializers.ModelSerializer):
    actor_id = serializers.IntegerField(allow_null=True, read_only=True)

    class Meta:
        model = AuditEvent
        fields = ["id", "created_at", "actor_id", "actor_label", "action", "target_type", "target_id", "data", "sequence", "prev_hash", "hash"]
        read_only_fields = fields


class AuditVerifyOutput(serializers.Serializer):
    valid = serializers.BooleanField()
    checked = serializers.IntegerField()
    head_hash = serializers.CharField(allow_null=True)
    first_invalid_id = serializers.IntegerField(allow_null=True)
    reason = serializers.CharField(allow_null=True)


# --- Fees and limits ------------------------------------------------------------------------------


@extend_schema_field(OpenApiTypes.STR)
class ComplianceAmountField(serializers.Field):
    """The request value as sent (str, int, or Decimal from `DecimalJSONParser`); parsed by
    `core.money.parse_amount` once the asset is known, which names the field when it refuses."""

    def to_internal_value(self, data):
        return data

    def to_representation(self, value):
        return str(value)


class FeeQuoteInput(serializers.Serializer):
    type = serializers.ChoiceField(choices=MovementType.choices, help_text="deposit, withdrawal, transfer, exchange or settlement.")
    amount = ComplianceAmountField(help_text='Major units, as a string ("100.50") or a JSON number.')
    currency = serializers.CharField(max_length=16, help_text="Asset code, e.g. USD.")
    destination_type = serializers.ChoiceField(
        choices=[c for c in FeeRule.DestinationType.values if c], required=False, allow_blank=True, default="",
        help_text="For withdrawals: IBAN or EXTERNAL.",
    )

    def to_internal_value(self, data):
        if isinstance(data, dict) and isinstance(data.get("destination_type"), str):
            data = {**data, "destination_type": data["destination_type"].strip().upper()}
        return super().to_internal_value(data)


class FeeReferenceOutput(serializers.Serializer):
    fee_amount = serializers.CharField()
    fixed = serializers.CharField(required=False)
    minimum_fee = serializers.CharField(required=False, allow_null=True)
    maximum_fee = serializers.CharField(required=False, allow_null=True)


class FeeQuoteOutput(serializers.Serializer):
    fee_amount = serializers.CharField()
    fee_currency = serializers.CharField()
    fee_type = serializers.ChoiceField(choices=["free", "percentage", "fixed", "percentage_plus_fixed"])
    fee_percentage = serializers.CharField()
    total_amount = serializers.CharField(help_text="amount + fee_amount")
    description = serializers.CharField()
    minimum_fee = serializers.CharField(allow_null=True, help_text="The rule's minimum as applied, in the asked currency.")
    maximum_fee = serializers.CharField(allow_null=True, help_text="The rule's maximum as applied, in the asked currency.")
    rule_currency = serializers.CharField(
        allow_null=True, help_text="What the rule's fixed part, minimum and maximum are in: the reference currency (a default "
        "rule) or the asset (a per-asset rule); null without a rule.",
    )
    reference_currency = serializers.CharField(help_text="LIMITS_REFERENCE_CURRENCY, e.g. USD.")
    rate = serializers.CharField(allow_null=True, help_text="One unit of the asked currency in the reference currency (mid rate); null when it cannot be priced.")
    reference = FeeReferenceOutput(allow_null=True, help_text="The fee's worth and a default rule's own figures, in the reference currency.")


class LimitScopeInput(serializers.Serializer):
    type = serializers.ChoiceField(choices=MovementType.choices)
    currency = serializers.CharField(max_length=16)
    direction = serializers.ChoiceField(
        choices=Direction.choices, required=False, allow_blank=True, default="",
        help_text="Defaults to incoming for deposits and settlements, outgoing otherwise.",
    )
    customer_external_id = serializers.CharField(
        max_length=200, required=False, allow_blank=True, default="",
        help_text="Organizations: the customer (by your external id). Users: ignored (always your own profile).",
    )


class LimitCheckInput(LimitScopeInput):
    amount = ComplianceAmountField(help_text="Major units.")


class LimitReferenceOutput(serializers.Serializer):
    single_transaction_limit = serializers.CharField(allow_null=True)
    daily_limit = serializers.CharField(allow_null=True)
    daily_used = serializers.CharField()
    daily_remaining = serializers.CharField(allow_null=True)
    monthly_limit = serializers.CharField(allow_null=True)
    monthly_used = serializers.CharField()
    monthly_remaining = serializers.CharField(allow_null=True)
    amount = serializers.CharField(allow_null=True, help_text="The checked amount's worth (POST /limits/check).")


class LimitStatusOutput(serializers.Serializer):
    limit_check = serializers.ChoiceField(choices=["PASSED", "FAILED"])
    single_transaction_limit = serializers.CharField(allow_null=True)
    daily_limit = serializers.CharField(allow_null=True)
    daily_used = serializers.CharField()
    daily_remaining = serializers.CharField(allow_null=True)
    monthly_limit = serializers.CharField(allow_null=True)
    monthly_used = serializers.CharField()
    monthly_remaining = serializers.CharField(allow_null=True)
    failed_limit = serializers.ChoiceField(choices=["single", "daily", "monthly"], allow_null=True)
    type = serializers.CharField()
    direction = serializers.CharField()
    currency = serializers.CharField()
    kyc_level = serializers.CharField()
    limit_currency = serializers.CharField(
        help_text="What the applying rule is expressed in: the reference currency (the default rules) or the asset (a per-asset rule)."
    )
    reference_currency = serializers.CharField(help_text="LIMITS_REFERENCE_CURRENCY, e.g. USD.")
    rate = serializers.CharField(allow_null=True, help_text="One unit of the asked currency in the reference currency (mid rate); null when it cannot be priced.")
    reference = LimitReferenceOutput(allow_null=True, help_text="The same figures in the reference currency; null without a rate.")
