"""Input and output shapes of the customer wallets API. Amounts in: strings or JSON numbers,
passed untouched to `core.money.parse_amount` (which knows the asset's exponent). Amounts out:
strings at the asset's exponent."""

from rest_framework import serializers

from core.fields import RawAmountField
from ledger.models import Entry
from ledger.selectors import Viewer, wallet_owner_name
from ledger.serializers import LedgerTransactionOutput, TransactionPresenter


class WalletCreateInput(serializers.Serializer):
    currency = serializers.CharField(max_length=16, help_text="Asset code, e.g. USD, BTC, ETH.")
    label = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")


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


class MoneyTransactionOutput(LedgerTransactionOutput):
    """A money movement as its initiator sees it: the SPEC 6 transaction representation, the same
    as `GET /transactions/{id}` shows it."""


class WithdrawalInput(serializers.Serializer):
    wallet_id = serializers.IntegerField(min_value=1)
    amount = RawAmountField(help_text='Decimal string in major units, e.g. "100.00". The fee is charged on top.')
    destination = serializers.JSONField(
        help_text='{"type": "IBAN", "iban", "name", "bank_name"?, "country"?} or {"type": "EXTERNAL", "name", "account", "network"?}. '
        "Checked by the service: 400 INVALID_IBAN / INVALID_BENEFICIARY."
    )
    description = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class PayoutOutput(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField(help_text="in_review, pending, sending, sent, completed, failed or cancelled.")
    destination_type = serializers.CharField()
    beneficiary_name = serializers.CharField(source="beneficiary_name_masked", help_text='Masked: "J*** S****".')
    destination = serializers.SerializerMethodField(help_text='The beneficiary, masked: the IBAN as "DE89 **** **** **** 3000" (country, check digits, last 4), the name as "J*** S****", an account as "****1234".')
    amount = serializers.SerializerMethodField()
    fee = serializers.SerializerMethodField()
    total_amount = serializers.SerializerMethodField()
    currency = serializers.CharField()
    provider_reference = serializers.CharField(allow_blank=True)
    failure_reason = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    sent_at = serializers.DateTimeField(allow_null=True)
    settled_at = serializers.DateTimeField(allow_null=True)

    def _exp(self, payout) -> int:
        return payout.wallet.asset.exponent

    def get_destination(self, payout) -> dict:
        return dict(payout.destination_masked)

    def get_amount(self, payout) -> str:
        return payout.wallet.asset.format(payout.amount)

    def get_fee(self, payout) -> str:
        return payout.wallet.asset.format(payout.fee)

    def get_total_amount(self, payout) -> str:
        return payout.wallet.asset.format(payout.amount + payout.fee)


class WithdrawalOutput(MoneyTransactionOutput):
    payout = PayoutOutput()


class ExchangeQuoteInput(serializers.Serializer):
    source_wallet_id = serializers.IntegerField(min_value=1)
    destination_wallet_id = serializers.IntegerField(min_value=1)
    amount = RawAmountField(help_text="What leaves the source wallet, fee included, in the source currency.")


class ExchangeQuoteOutput(serializers.Serializer):
    quote_id = serializers.UUIDField(source="pk")
    source_wallet_id = serializers.IntegerField()
    destination_wallet_id = serializers.IntegerField()
    source_currency = serializers.CharField()
    destination_currency = serializers.CharField()
    amount = serializers.SerializerMethodField(help_text="Leaves the source wallet (fee included).")
    fee = serializers.SerializerMethodField(help_text="0.5% of amount, rounded up, in the source currency.")
    rate = serializers.SerializerMethodField(help_text="Destination units per source unit (the bid side).")
    destination_amount = serializers.SerializerMethodField(help_text="(amount - fee) * rate, rounded DOWN to the destination exponent.")
    status = serializers.CharField()
    expires_at = serializers.DateTimeField()
    transaction_id = serializers.IntegerField(allow_null=True)

    def get_amount(self, quote) -> str:
        return quote.source_wallet.asset.format(quote.source_amount)

    def get_fee(self, quote) -> str:
        return quote.source_wallet.asset.format(quote.fee)

    def get_rate(self, quote) -> str:
        return format(quote.rate.normalize(), "f")

    def get_destination_amount(self, quote) -> str:
        return quote.destination_wallet.asset.format(quote.destination_amount)


class ExchangeInput(serializers.Serializer):
    quote_id = serializers.UUIDField()


class ExchangeOutput(MoneyTransactionOutput):
    quote = ExchangeQuoteOutput()


def transaction_representation(*, transaction, viewer) -> dict:
    """A transaction (SPEC 6 "A transaction in responses") for the user `viewer`, by the ledger's
    one presenter: amounts at the asset's exponent, the caller's own `balance_after`."""
    return TransactionPresenter(viewer=Viewer(user=viewer)).one(transaction)


def withdrawal_representation(*, transaction, viewer) -> dict:
    """A withdrawal's transaction (SPEC 6 shape) with its payout."""
    data = transaction_representation(transaction=transaction, viewer=viewer)
    data["payout"] = transaction.payout  # serialized by WithdrawalOutput.payout
    return data


def exchange_representation(*, transaction, viewer) -> dict:
    """An exchange's transaction: the amount that left the source wallet (fee included), the
    caller's destination wallet (not the platform FX account the legs go through), and the quote."""
    quote = transaction.exchange_quote
    data = transaction_representation(transaction=transaction, viewer=viewer)
    destination = quote.destination_wallet
    data.update(
        amount=quote.source_wallet.asset.format(quote.source_amount),
        destination_wallet_id=destination.pk,
        destination_wallet_name=wallet_owner_name(destination),
        quote=quote,  # serialized by ExchangeOutput.quote
    )
    return data
