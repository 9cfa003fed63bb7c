"""Input and output shapes of the customer wallets API. Amounts in: strings or JSON numbers,
passed untouched to `core.money.parse_amount` (which knows the asset's exponent). Amounts out:
strings at the asset's exponent."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ledger.models import Entry, Wallet
from wallets.selectors import wallet_owner_name


@extend_schema_field(OpenApiTypes.STR)
class RawAmountField(serializers.Field):
    """Keeps the request value as sent (str, int or Decimal from `DecimalJSONParser`); the
    service parses it for the wallet's asset and names the field when it refuses it."""

    def to_internal_value(self, data):
        return data

    def to_representation(self, value):
        return str(value)


class WalletCreateInput(serializers.Serializer):
    currency = serializers.CharField(max_length=16, help_text="Asset code, e.g. USD, BTC, ETH.")
    label = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")


class WalletOutput(serializers.ModelSerializer):
    currency = serializers.CharField(source="asset.code")
    balance = serializers.SerializerMethodField()
    available_balance = serializers.SerializerMethodField()
    held_balance = serializers.SerializerMethodField()
    owner_name = serializers.SerializerMethodField()

    class Meta:
        model = Wallet
        fields = ["id", "currency", "label", "balance", "available_balance", "held_balance", "status", "owner_name", "created_at", "updated_at"]

    def get_balance(self, wallet: Wallet) -> str:
        return wallet.asset.format(wallet.balance)

    def get_available_balance(self, wallet: Wallet) -> str:
        return wallet.asset.format(wallet.available_balance)

    def get_held_balance(self, wallet: Wallet) -> str:
        return wallet.asset.format(wallet.held)

    def get_owner_name(self, wallet: Wallet) -> str | None:
        return wallet_owner_name(wallet)


class EntryOutput(serializers.ModelSerializer):
    entry_type = serializers.CharField(source="direction")
    currency = serializers.CharField(source="wallet.asset.code")
    amount = serializers.SerializerMethodField()
    balance_after = serializers.SerializerMethodField()

    class Meta:
        model = Entry
        fields = ["id", "transaction_id", "wallet_id", "entry_type", "amount", "currency", "balance_after", "created_at"]

    def get_amount(self, entry: Entry) -> str:
        return entry.wallet.asset.format(entry.amount)

    def get_balance_after(self, entry: Entry) -> str:
        return entry.wallet.asset.format(entry.balance_after)


class DepositInput(serializers.Serializer):
    wallet_id = serializers.IntegerField(min_value=1)
    amount = RawAmountField(help_text='Decimal string in major units, e.g. "100.50".')
    source = serializers.CharField(max_length=200, required=False, allow_blank=True, default="", help_text="Where the money comes from, e.g. card, bank_transfer.")


class TransferInput(serializers.Serializer):
    source_wallet_id = serializers.IntegerField(min_value=1)
    destination_wallet_id = serializers.IntegerField(min_value=1)
    amount = RawAmountField(help_text='Decimal string in major units, e.g. "25.00".')
    currency = serializers.CharField(max_length=16)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class MoneyTransactionOutput(serializers.Serializer):
    id = serializers.IntegerField()
    type = serializers.CharField()
    status = serializers.CharField()
    amount = serializers.CharField()
    currency = serializers.CharField()
    fee = serializers.CharField()
    source_wallet_id = serializers.IntegerField(allow_null=True)
    source_wallet_name = serializers.CharField(allow_null=True)
    destination_wallet_id = serializers.IntegerField(allow_null=True)
    destination_wallet_name = serializers.CharField(allow_null=True)
    reference = serializers.CharField(allow_blank=True)
    description = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField(allow_null=True)
    balance_after = serializers.CharField(allow_null=True, help_text="The caller's wallet balance right after this transaction.")
