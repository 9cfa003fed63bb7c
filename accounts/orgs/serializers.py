"""Input and output serializers of the organization API (errors, keys, customers).
Names are unique across the project so drf-spectacular's components stay distinct."""

from __future__ import annotations

import json

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import ApiKey, Customer
from accounts.orgs.scopes import DEFAULT_SCOPES, SCOPES
from core.livemode import object_livemode
from ledger.selectors import customer_wallets


# --- API keys ------------------------------------------------------------------------------------


class ApiKeyCreateInput(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=list(SCOPES.items())), required=False, allow_empty=False, max_length=len(SCOPES),
        default=list(DEFAULT_SCOPES),
        help_text="What the key may do; default `[\"read\"]`. A key with `keys:manage` grants at most its own scopes.",
    )
    livemode = serializers.BooleanField(
        required=False, default=True,
        help_text="false: a test key (secret `sk_test_...`): it creates and sees only test-mode pay orders (sandbox chain, testnet URIs).",
    )


class ApiKeyOutput(serializers.ModelSerializer):
    class Meta:
        model = ApiKey
        fields = ["key_id", "name", "scopes", "livemode", "secret_prefix", "created_at", "last_used_at", "revoked_at"]


class ApiKeyCreatedOutput(ApiKeyOutput):
    secret = serializers.CharField(help_text="Shown once, now. Store it: Coffer keeps only a hash and an encrypted copy.")

    class Meta(ApiKeyOutput.Meta):
        fields = [*ApiKeyOutput.Meta.fields, "secret"]


# --- Customers -------------------------------------------------------------------------------------


class CustomerUpsertInput(serializers.Serializer):
    name = serializers.CharField(max_length=300, required=False, allow_blank=True)
    email = serializers.EmailField(required=False, allow_blank=True)
    kyc_level = serializers.ChoiceField(choices=Customer.KycLevel.choices, required=False)
    metadata = serializers.DictField(required=False, help_text="Free-form JSON object, yours to keep (at most 16 KB).")

    def validate_metadata(self, value: dict) -> dict:
        if len(json.dumps(value, default=str)) > 16384:
            raise serializers.ValidationError("At most 16 KB of metadata.")
        return value


class CustomerWalletOutput(serializers.Serializer):
    id = serializers.IntegerField()
    currency = serializers.CharField(source="asset.code")
    label = serializers.CharField()
    status = serializers.CharField()
    balance = serializers.SerializerMethodField()
    available_balance = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    def get_balance(self, wallet) -> str:
        return wallet.asset.format(wallet.balance)

    def get_available_balance(self, wallet) -> str:
        return wallet.asset.format(wallet.available_balance)


class CustomerOutput(serializers.ModelSerializer):
    livemode = serializers.SerializerMethodField(help_text="False for a test-mode customer (a test key's, or any on the sandbox).")

    class Meta:
        model = Customer
        fields = ["external_id", "name", "email", "kyc_level", "metadata", "livemode", "created_at", "updated_at"]

    def get_livemode(self, customer) -> bool:
        return object_livemode(customer)


class CustomerDetailOutput(CustomerOutput):
    wallets = serializers.SerializerMethodField()

    class Meta(CustomerOutput.Meta):
        fields = [*CustomerOutput.Meta.fields, "wallets"]

    @extend_schema_field(CustomerWalletOutput(many=True))
    def get_wallets(self, customer):
        return CustomerWalletOutput(customer_wallets(customer=customer), many=True).data
