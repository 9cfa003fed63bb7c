"""Input and output shapes of the pay-order API. Amounts are strings at the asset's exponent;
`id`s are the orders' public UUIDs (the database key is never exposed)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.fields import RawAmountField
from core.money import format_amount
from payorders.models import PayOrder, PayOrderPayment, PayOrderQuote, PayOrderStatusChange, Refund, XpubKey
from payorders.selectors import checkout_url, currency_exponent, fmt_source, payment_details, payorder_livemode, source_exponent, xpub_key_unused_run
from payorders.services.quotes import SOURCE_CURRENCIES

# --- Inputs ----------------------------------------------------------------------------------------


class PayOrderCreateInput(serializers.Serializer):
    type = serializers.ChoiceField(choices=PayOrder.Type.choices)
    amount = RawAmountField(help_text='The price in major units, e.g. "100.00".')
    currency = serializers.CharField(max_length=16, help_text="The price's currency, e.g. USD.")
    settlement_currency = serializers.CharField(max_length=16, required=False, allow_blank=True, help_text="Default: currency.")
    customer_external_id = serializers.CharField(max_length=200, required=False, allow_blank=True, allow_null=True)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    metadata = serializers.DictField(required=False, default=dict, help_text="A JSON object, up to 8 KiB (numbers are kept as decimal strings).")
    redirect_url = serializers.URLField(max_length=2000, required=False, allow_blank=True, default="")
    expires_in = serializers.IntegerField(required=False, min_value=60, max_value=7 * 24 * 3600, help_text="Seconds; default 1800.")


class PayOrderQuoteInput(serializers.Serializer):
    wallet_address = serializers.CharField(max_length=100, required=False, allow_blank=True, allow_null=True)
    source_currencies = serializers.ListField(
        child=serializers.CharField(max_length=12), required=False, allow_empty=True, help_text=f"Any of {', '.join(SOURCE_CURRENCIES)}; default all."
    )


class PaymentDetailsInput(serializers.Serializer):
    quote_id = serializers.CharField(max_length=64)


class ProcessInput(serializers.Serializer):
    tx_hash = serializers.CharField(max_length=100)


class CancelInput(serializers.Serializer):
    reason = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")


class RefundInput(serializers.Serializer):
    destination_address = serializers.CharField(max_length=100, help_text="The payer's address on the order's chain.")
    kind = serializers.ChoiceField(choices=Refund.Kind.choices, default=Refund.Kind.FULL)
    reason = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")


class RefundTransactionInput(serializers.Serializer):
    tx_hash = serializers.CharField(max_length=100)


class XpubKeyInput(serializers.Serializer):
    chain = serializers.ChoiceField(choices=XpubKey.Chain.choices)
    xpub = serializers.CharField(max_length=200)
    gap_limit = serializers.IntegerField(
        required=False, min_value=1, max_value=1000,
        help_text="How many unused addresses in a row your wallet scans before it stops (default 20, as in BIP44 wallets).",
    )


# --- Outputs ---------------------------------------------------------------------------------------


class QuoteOutput(serializers.Serializer):
    quote_id = serializers.UUIDField(source="public_id")
    source_currency = serializers.CharField()
    chain = serializers.CharField()
    amount = serializers.SerializerMethodField()
    rate = serializers.SerializerMethodField(help_text="Units of the order's currency one unit of source_currency counts for.")
    fee = serializers.SerializerMethodField(help_text="The part of amount due to the conversion spread (source units).")
    expires_at = serializers.DateTimeField()

    def get_amount(self, q: PayOrderQuote) -> str:
        return format_amount(q.amount, source_exponent(q.source_currency))

    def get_rate(self, q: PayOrderQuote) -> str:
        return format(q.rate.normalize(), "f")

    def get_fee(self, q: PayOrderQuote) -> str:
        return format_amount(q.fee, source_exponent(q.source_currency))


class QuoteListOutput(serializers.Serializer):
    quotes = QuoteOutput(many=True)


class PaymentDetailsOutput(serializers.Serializer):
    deposit_address = serializers.CharField()
    amount = serializers.CharField()
    source_currency = serializers.CharField()
    chain = serializers.CharField()
    payment_uri = serializers.CharField()
    expires_at = serializers.DateTimeField()
    quote_id = serializers.CharField(allow_null=True)
    livemode = serializers.BooleanField(help_text="False in test mode: payment_uri is on a test network (EIP-681 @EVM_TEST_CHAIN_ID, BIP21 testnet address).")


class StatusChangeOutput(serializers.ModelSerializer):
    class Meta:
        model = PayOrderStatusChange
        fields = ["from_status", "to_status", "at", "cause", "actor_label"]


class PaymentOutput(serializers.ModelSerializer):
    amount = serializers.SerializerMethodField()

    class Meta:
        model = PayOrderPayment
        fields = ["tx_hash", "log_index", "chain", "asset", "from_address", "amount", "block_number", "confirmations", "status", "source", "late", "detected_at", "confirmed_at"]

    def get_amount(self, p: PayOrderPayment) -> str:
        return format_amount(p.amount, source_exponent(p.asset))


class RefundOutput(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id")
    pay_order_id = serializers.UUIDField(source="pay_order.public_id")
    amount = serializers.SerializerMethodField()
    ledger_transaction_id = serializers.IntegerField(allow_null=True)

    class Meta:
        model = Refund
        fields = ["id", "pay_order_id", "kind", "status", "chain", "currency", "amount", "destination_address", "tx_hash", "ledger_transaction_id", "reason", "created_at", "sent_at"]

    def get_amount(self, r: Refund) -> str:
        return format_amount(r.amount, source_exponent(r.currency))


class PayOrderOutput(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id")
    amount = serializers.SerializerMethodField()
    customer_external_id = serializers.SerializerMethodField()
    checkout_url = serializers.SerializerMethodField()
    payment = serializers.SerializerMethodField()
    amount_received = serializers.SerializerMethodField()
    refund_due = serializers.SerializerMethodField()
    settlement = serializers.SerializerMethodField()
    livemode = serializers.SerializerMethodField(
        help_text="False for a test-mode order (sandbox chain or a test API key): paid on the sandbox chain, testnet payment URIs."
    )

    class Meta:
        model = PayOrder
        fields = [
            "id", "type", "status", "amount", "currency", "settlement_currency", "customer_external_id", "description",
            "metadata", "redirect_url", "checkout_url", "expires_at", "payment", "amount_received", "underpaid", "overpaid",
            "late_payment", "refund_due", "failure_reason", "settlement", "livemode", "created_at", "updated_at", "completed_at",
        ]

    def get_livemode(self, o: PayOrder) -> bool:
        return payorder_livemode(o)

    def get_amount(self, o: PayOrder) -> str:
        return format_amount(o.amount, currency_exponent(o.currency))

    def get_customer_external_id(self, o: PayOrder) -> str | None:
        return o.customer.external_id if o.customer_id else None

    def get_checkout_url(self, o: PayOrder) -> str:
        return checkout_url(o)

    @extend_schema_field(PaymentDetailsOutput(allow_null=True))
    def get_payment(self, o: PayOrder) -> dict | None:
        details = payment_details(o)
        return PaymentDetailsOutput(details).data if details else None

    def get_amount_received(self, o: PayOrder) -> str | None:
        return fmt_source(o, o.amount_received)

    def get_refund_due(self, o: PayOrder) -> str | None:
        return fmt_source(o, o.refund_due)

    @extend_schema_field(
        {
            "type": "object",
            "nullable": True,
            "properties": {
                "transaction_id": {"type": "integer"},
                "currency": {"type": "string"},
                "gross": {"type": "string"},
                "fee": {"type": "string"},
                "net": {"type": "string"},
                "settled_at": {"type": "string", "format": "date-time"},
            },
        }
    )
    def get_settlement(self, o: PayOrder) -> dict | None:
        if o.settlement_transaction_id is None:
            return None
        exp = currency_exponent(o.settlement_currency)
        fee = o.settlement_fee or 0
        return {
            "transaction_id": o.settlement_transaction_id,
            "currency": o.settlement_currency,
            "gross": format_amount(o.settlement_amount, exp),
            "fee": format_amount(fee, exp),
            "net": format_amount(o.settlement_amount - fee, exp),
            "settled_at": serializers.DateTimeField().to_representation(o.settled_at),
        }


class PayOrderDetailOutput(PayOrderOutput):
    status_history = StatusChangeOutput(source="status_changes", many=True)
    payments = PaymentOutput(many=True)
    refunds = RefundOutput(many=True)

    class Meta(PayOrderOutput.Meta):
        fields = [*PayOrderOutput.Meta.fields, "status_history", "payments", "refunds"]


class XpubKeyOutput(serializers.ModelSerializer):
    unused_addresses = serializers.SerializerMethodField(help_text="Never-funded addresses after the last funded one (at most gap_limit).")
    constrained_since = serializers.DateTimeField(
        allow_null=True, help_text="Set while addresses are reused or refused to stay within gap_limit (null otherwise)."
    )

    class Meta:
        model = XpubKey
        fields = ["id", "chain", "xpub", "network", "next_index", "gap_limit", "unused_addresses", "constrained_since", "is_active", "created_at"]

    def get_unused_addresses(self, key: XpubKey) -> int:
        return xpub_key_unused_run(key)
