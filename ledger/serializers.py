"""Input and output shapes of the ledger API, and `TransactionPresenter` (SPEC 6).

Invariants:
* Amounts in are strings or JSON numbers, parsed by `core.money.parse_amount` for the wallet's
  asset (never through a float); amounts out are strings at the asset's exponent.
* A page of transactions is presented in a fixed number of queries whatever its size (entries
  and postings prefetched, the remaining wallets in one query); a transaction a posting just
  returned is presented from `posted_entries` / `posted_postings`, without reading it back.
* Summary fields describe the first posting (the principal operation); the outside world and
  platform accounts are null sides; `fee` is the postings paid into the platform fee account;
  `balance_after` is the caller's own balance after the transaction, else null.
* A `balance_after` on a wallet the viewer does not own is always null.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.db.models import Prefetch, prefetch_related_objects
from rest_framework import serializers

from core.errors import ValidationFailed
from core.fields import RawAmountField
from core.livemode import object_livemode
from core.money import format_amount
from ledger.models import Asset, Entry, Posting, Transaction, Wallet
from ledger.selectors import Viewer, wallet_owner_name

MAX_OPERATIONS = 100
_WALLET_RELATED = ("asset", "customer__user", "organization")


# --- Inputs ---------------------------------------------------------------------------------------


OPERATION_TYPES = [("issue", "Issue"), ("redeem", "Redeem"), ("transfer", "Transfer")]


class AssetCreateInput(serializers.Serializer):
    code = serializers.CharField(max_length=16, help_text="1-16 letters, digits, '-' or '_' (stored upper-case), e.g. POINTS.")
    name = serializers.CharField(max_length=100)
    exponent = serializers.IntegerField(min_value=0, max_value=18, help_text="Minor-unit digits, 0-18.")


class LedgerOperationInput(serializers.Serializer):
    type = serializers.ChoiceField(choices=OPERATION_TYPES, help_text="issue: value enters the wallet; redeem: value leaves it; transfer: wallet to wallet.")
    wallet_id = serializers.IntegerField(min_value=1, required=False, help_text="issue and redeem: the wallet.")
    source_wallet_id = serializers.IntegerField(min_value=1, required=False, help_text="transfer: the wallet debited.")
    destination_wallet_id = serializers.IntegerField(min_value=1, required=False, help_text="transfer: the wallet credited.")
    amount = RawAmountField(help_text='Decimal string in major units, e.g. "10.50".')
    currency = serializers.CharField(max_length=16, required=False, help_text="Optional: the asset code the wallets must hold.")

    def validate(self, attrs):
        needed = ["source_wallet_id", "destination_wallet_id"] if attrs["type"] == "transfer" else ["wallet_id"]
        unwanted = ["wallet_id"] if attrs["type"] == "transfer" else ["source_wallet_id", "destination_wallet_id"]
        errors = {name: [f"Required for a {attrs['type']} operation."] for name in needed if name not in attrs}
        errors.update({name: [f"Not allowed in a {attrs['type']} operation."] for name in unwanted if name in attrs})
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class LedgerTransactionCreateInput(serializers.Serializer):
    reference = serializers.CharField(
        max_length=200,
        help_text="Your unique id for this transaction (per organization). Retrying with it is safe: a used reference "
        "answers 409 DUPLICATE_REFERENCE carrying the transaction it was used for.",
    )
    operations = LedgerOperationInput(many=True, allow_empty=False, max_length=MAX_OPERATIONS)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    metadata = serializers.DictField(required=False, default=dict)

    def validate_reference(self, value: str) -> str:
        value = value.strip()
        if not value or not value.isprintable():
            raise serializers.ValidationError("1-200 printable characters.")
        return value


def flatten_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested errors as flat field paths, the way `parse_amount` names fields:
    {"operations": [{}, {"amount": ["..."]}]} -> {"operations[1].amount": ["..."]}."""
    flat: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            key = str(key)
            if key.isdigit() and prefix:
                path = f"{prefix}[{key}]"
            elif key == "non_field_errors" and prefix:
                path = prefix
            else:
                path = f"{prefix}.{key}" if prefix else key
            flat.update(flatten_errors(value, path))
    elif isinstance(detail, list) and detail and all(isinstance(item, (dict, list)) for item in detail):
        for index, item in enumerate(detail):
            if item:
                flat.update(flatten_errors(item, f"{prefix}[{index}]"))
    else:
        messages = detail if isinstance(detail, list) else [detail]
        flat.setdefault(prefix or "non_field_errors", []).extend(str(m) for m in messages)
    return flat


def validated(serializer: serializers.Serializer) -> dict[str, Any]:
    """`serializer.validated_data`, or a 400 VALIDATION_ERROR whose `details.fields` are flat paths."""
    if not serializer.is_valid():
        fields = flatten_errors(serializer.errors)
        first = next(iter(fields.items()))
        raise ValidationFailed(f"Invalid input: {first[0]}: {first[1][0]}", details={"fields": fields})
    return serializer.validated_data


# --- Outputs --------------------------------------------------------------------------------------


class AssetOutput(serializers.ModelSerializer):
    custom = serializers.SerializerMethodField(help_text="True for your organization's own asset.")

    class Meta:
        model = Asset
        fields = ["id", "code", "name", "exponent", "kind", "custom", "created_at"]

    def get_custom(self, asset: Asset) -> bool:
        return asset.organization_id is not None


class OrgWalletCreateInput(serializers.Serializer):
    customer_external_id = serializers.CharField(max_length=200, required=False, help_text="Your customer's id (PUT /customers/{external_id} first).")
    system = serializers.BooleanField(required=False, default=False, help_text="true: a system wallet of your organization (fees, treasury...).")
    currency = serializers.CharField(max_length=16, help_text="A platform asset code or one of your custom assets.")
    label = serializers.CharField(max_length=100, required=False, allow_blank=True, default="",
                                  help_text="Needed for a second open wallet of the same owner and currency.")

    def validate(self, attrs):
        if attrs.get("system") and attrs.get("customer_external_id"):
            raise serializers.ValidationError({"system": ["Give either customer_external_id or system: true, not both."]})
        if not attrs.get("system") and not attrs.get("customer_external_id"):
            raise serializers.ValidationError({"customer_external_id": ["Required unless system is true."]})
        return attrs


class WalletActionInput(serializers.Serializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="", help_text="Kept in the audit log.")


# A wallet as its owner sees it (the customer wallets API); `OrgWalletOutput` adds the organization's
# fields. (Comments, not docstrings: a docstring would become the schema components' description.)
class WalletOutput(serializers.ModelSerializer):
    currency = serializers.CharField(source="asset.code")
    balance = serializers.SerializerMethodField()
    available_balance = serializers.SerializerMethodField()
    held_balance = serializers.SerializerMethodField()
    owner_name = serializers.SerializerMethodField()
    livemode = serializers.SerializerMethodField(help_text="False for a test-mode wallet (a test key's, or any on the sandbox).")

    class Meta:
        model = Wallet
        fields = ["id", "currency", "label", "balance", "available_balance", "held_balance", "status", "owner_name", "livemode", "created_at", "updated_at"]

    def get_livemode(self, wallet: Wallet) -> bool:
        return object_livemode(wallet)

    def get_balance(self, wallet: Wallet) -> str:
        return wallet.asset.format(wallet.balance)

    def get_available_balance(self, wallet: Wallet) -> str:
        return wallet.asset.format(wallet.available_balance)

    def get_held_balance(self, wallet: Wallet) -> str:
        return wallet.asset.format(wallet.held)

    def get_owner_name(self, wallet: Wallet) -> str | None:
        return wallet_owner_name(wallet)


class OrgWalletOutput(WalletOutput):
    customer_external_id = serializers.SerializerMethodField()
    system = serializers.SerializerMethodField()

    class Meta(WalletOutput.Meta):
        fields = ["id", "currency", "label", "system", "customer_external_id", "balance", "available_balance", "held_balance",
                  "status", "owner_name", "livemode", "created_at", "updated_at"]

    def get_customer_external_id(self, wallet: Wallet) -> str | None:
        return wallet.customer.external_id if wallet.customer_id else None

    def get_system(self, wallet: Wallet) -> bool:
        return wallet.customer_id is None


class LedgerEntryOutput(serializers.Serializer):
    id = serializers.IntegerField()
    transaction_id = serializers.IntegerField()
    wallet_id = serializers.IntegerField()
    entry_type = serializers.ChoiceField(choices=Entry.Direction.choices, help_text="credit raises the wallet's balance, debit lowers it.")
    amount = serializers.CharField()
    currency = serializers.CharField()
    balance_after = serializers.CharField(allow_null=True, help_text="Null unless you own the wallet.")
    operation_index = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class LedgerOperationOutput(serializers.Serializer):
    index = serializers.IntegerField()
    type = serializers.ChoiceField(choices=OPERATION_TYPES)
    wallet_id = serializers.IntegerField(required=False, help_text="issue and redeem.")
    source_wallet_id = serializers.IntegerField(required=False, allow_null=True, help_text="transfer; null for a platform account.")
    destination_wallet_id = serializers.IntegerField(required=False, allow_null=True, help_text="transfer; null for a platform account.")
    platform_account = serializers.CharField(required=False, help_text="transfer to or from a platform account, e.g. fee.")
    amount = serializers.CharField()
    currency = serializers.CharField()

    def to_representation(self, instance):
        # Only the keys of this operation's type (an issue has no source_wallet_id key at all).
        return {k: v for k, v in super().to_representation(instance).items() if k in instance}


class LedgerFailureOutput(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    operation_index = serializers.IntegerField(allow_null=True)


class LedgerTransactionOutput(serializers.Serializer):
    id = serializers.IntegerField()
    type = serializers.ChoiceField(choices=Transaction.Type.choices)
    status = serializers.ChoiceField(choices=Transaction.Status.choices)
    amount = serializers.CharField(help_text="The first operation's amount.")
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
    balance_after = serializers.CharField(allow_null=True, help_text="Your wallet's balance right after this transaction.")
    livemode = serializers.SerializerMethodField(help_text="False for a test-mode transaction (a test key's, or any on the sandbox).")

    def get_livemode(self, obj) -> bool:
        return bool(obj["livemode"]) if isinstance(obj, dict) else object_livemode(obj)


class LedgerTransactionDetailOutput(LedgerTransactionOutput):
    """Organizations' view: with the operations as requested, the entries and any failure."""

    metadata = serializers.DictField()
    reversal_of = serializers.IntegerField(allow_null=True, help_text="A reversal: the transaction it reverses.")
    reversed_amount = serializers.CharField(help_text="How much of `amount` has been reversed so far (status `reversed` once all of it).")
    failure = LedgerFailureOutput(allow_null=True)
    operations = LedgerOperationOutput(many=True)
    entries = LedgerEntryOutput(many=True)


# --- Presenting transactions ----------------------------------------------------------------------


def _entries_prefetch() -> Prefetch:
    return Prefetch("entries", queryset=Entry.objects.select_related(*(f"wallet__{r}" for r in _WALLET_RELATED)).order_by("id"))


def _postings_prefetch() -> Prefetch:
    return Prefetch("postings", queryset=Posting.objects.order_by("index"))


def transactions_with_entries(queryset) -> Any:
    """`queryset` with the entries (and their wallets, assets, owners) and the postings
    prefetched, one query each."""
    return queryset.prefetch_related(_entries_prefetch(), _postings_prefetch())


def _operation_wallet_ids(posting: Posting) -> list[int]:
    """The wallets of an operation, the one it names first (an issue's wallet is its destination)."""
    if posting.kind == Posting.Kind.ISSUE:
        return [posting.destination_wallet_id, posting.source_wallet_id]
    return [posting.source_wallet_id, posting.destination_wallet_id]


class TransactionPresenter:
    """Builds SPEC 6 representations for one viewer. Give it transactions whose entries were
    prefetched with `transactions_with_entries` (else it prefetches them, in one query); it loads
    the remaining wallets in one query."""

    def __init__(self, *, viewer: Viewer):
        self.viewer = viewer

    def _wallets(self, transactions: Iterable[Transaction], *, detail: bool) -> dict[int, Wallet]:
        """The wallets the representations name, with their assets and owners: those the caller
        already holds (`known_wallets`, set on a transaction by the money path), those loaded
        with the entries, and the rest in one query. A summary needs only the principal
        operation's wallets; a detail view every operation's."""
        wallets: dict[int, Wallet] = {}
        wanted: set[int] = set()
        for tx in transactions:
            wallets.update(getattr(tx, "known_wallets", None) or {})
            for entry in self._entries(tx, detail=detail):
                if Entry.wallet.is_cached(entry):
                    wallets[entry.wallet_id] = entry.wallet
                elif detail:
                    wanted.add(entry.wallet_id)
            postings = self._postings(tx)
            for posting in postings if detail else postings[:1]:
                wanted.update(_operation_wallet_ids(posting) if detail else [w for w in self._sides(posting) if w is not None])
        missing = wanted - wallets.keys()
        if missing:
            wallets.update({w.pk: w for w in Wallet.objects.filter(pk__in=missing).select_related(*_WALLET_RELATED)})
        return wallets

    def many(self, transactions: Iterable[Transaction], *, detail: bool = False) -> list[dict[str, Any]]:
        transactions = list(transactions)
        # A no-op for transactions from `transactions_with_entries`, and not needed for one a
        # posting just returned (`posted_entries`); one query for the others.
        unread = [tx for tx in transactions if self._posted(tx, detail=detail) is None]
        if unread:  # building the Prefetch queryset alone was ~4% of a transfer's CPU
            prefetch_related_objects(unread, _entries_prefetch())
        unlisted = [tx for tx in transactions if getattr(tx, "posted_postings", None) is None]
        if unlisted:  # a posting's response has its postings already
            prefetch_related_objects(unlisted, _postings_prefetch())
        wallets = self._wallets(transactions, detail=detail)
        return [self._one(tx, wallets, detail=detail) for tx in transactions]

    def one(self, transaction: Transaction, *, detail: bool = False) -> dict[str, Any]:
        return self.many([transaction], detail=detail)[0]

    @staticmethod
    def _posted(tx: Transaction, *, detail: bool) -> list[Entry] | None:
        """The entries a posting just wrote (`ledger.posting`), when they serve this view (a
        detail view shows entry ids: only if the database returned them)."""
        posted = getattr(tx, "posted_entries", None)
        if posted is None or (detail and any(e.pk is None for e in posted)):
            return None
        return posted

    @staticmethod
    def _postings(tx: Transaction) -> list[Posting]:
        """The transaction's operations: as the posting just wrote them, else as stored."""
        posted = getattr(tx, "posted_postings", None)
        return posted if posted is not None else list(tx.postings.all())

    def _entries(self, tx: Transaction, *, detail: bool) -> list[Entry]:
        posted = self._posted(tx, detail=detail)
        return posted if posted is not None else list(tx.entries.all())

    def entry(self, entry: Entry, wallets: dict[int, Wallet] | None = None) -> dict[str, Any]:
        wallet = wallets[entry.wallet_id] if wallets and entry.wallet_id in wallets else entry.wallet
        asset = wallet.asset
        return {
            "id": entry.pk,
            "transaction_id": entry.transaction_id,
            "wallet_id": entry.wallet_id,
            "entry_type": entry.direction,
            "amount": asset.format(entry.amount),
            "currency": asset.code,
            "balance_after": asset.format(entry.balance_after) if self.viewer.owns(wallet) else None,
            "operation_index": entry.operation_index,
            "created_at": entry.created_at,
        }

    @staticmethod
    def _sides(posting: Posting) -> tuple[int | None, int | None]:
        """(source, destination) wallet ids of an operation as the caller sees it: the outside
        world (an issuance account) and platform accounts are None."""
        source = None if posting.source_purpose else posting.source_wallet_id
        destination = None if posting.destination_purpose else posting.destination_wallet_id
        return source, destination

    def _operation(self, posting: Posting, wallets: dict[int, Wallet]) -> dict[str, Any]:
        asset = self._asset_of(posting, wallets)
        out: dict[str, Any] = {"index": posting.index, "type": posting.kind}
        source, destination = self._sides(posting)
        if posting.kind == Posting.Kind.ISSUE:
            out["wallet_id"] = destination
        elif posting.kind == Posting.Kind.REDEEM:
            out["wallet_id"] = source
        else:
            out["source_wallet_id"], out["destination_wallet_id"] = source, destination
            platform = posting.source_purpose or posting.destination_purpose
            if platform:
                out["platform_account"] = platform
        out["amount"] = self._format(posting.amount, asset)
        out["currency"] = asset.code if asset else ""
        return out

    @staticmethod
    def _asset_of(posting: Posting | None, wallets: dict[int, Wallet]) -> Asset | None:
        for wid in _operation_wallet_ids(posting) if posting is not None else ():
            if wid in wallets:
                return wallets[wid].asset
        return None

    @staticmethod
    def _format(raw: Any, asset: Asset | None) -> str:
        try:
            value = Decimal(str(raw))
        except Exception:  # noqa: BLE001 - a malformed stored amount is shown as stored
            return str(raw)
        if asset is None or not value.is_finite():
            return str(raw)
        return format_amount(value, asset.exponent)

    def _one(self, tx: Transaction, wallets: dict[int, Wallet], *, detail: bool) -> dict[str, Any]:
        postings = self._postings(tx)
        principal = postings[0] if postings else None
        asset = self._asset_of(principal, wallets)
        source_id, destination_id = self._sides(principal) if principal is not None else (None, None)
        source, destination = wallets.get(source_id), wallets.get(destination_id)
        fee = sum((p.amount for p in postings[1:] if p.destination_purpose == Wallet.Purpose.FEE), Decimal(0))
        entries = self._entries(tx, detail=detail)
        balance_after = None
        for wallet in (source, destination):
            if wallet is not None and self.viewer.owns(wallet):
                mine = [e for e in entries if e.wallet_id == wallet.pk]
                if mine:
                    balance_after = wallet.asset.format(mine[-1].balance_after)
                break
        data: dict[str, Any] = {
            "id": tx.pk,
            "type": tx.type,
            "status": tx.status,
            "amount": self._format(principal.amount if principal is not None else "0", asset),
            "currency": asset.code if asset else "",
            "fee": format_amount(fee, asset.exponent) if asset else str(fee),
            "source_wallet_id": source_id,
            "source_wallet_name": wallet_owner_name(source) if source_id is not None else None,
            "destination_wallet_id": destination_id,
            "destination_wallet_name": wallet_owner_name(destination) if destination_id is not None else None,
            "reference": tx.reference,
            "description": tx.description,
            "created_at": tx.created_at,
            "completed_at": tx.completed_at,
            "balance_after": balance_after,
            "livemode": object_livemode(tx),
        }
        if detail:
            data["metadata"] = tx.metadata or {}
            data["reversal_of"] = tx.reversal_of_id
            data["reversed_amount"] = format_amount(tx.reversed_amount, asset.exponent) if asset else str(tx.reversed_amount)
            data["failure"] = (
                {"code": tx.failure_code, "message": tx.failure_message, "operation_index": tx.failure_operation_index}
                if tx.failure_code
                else None
            )
            data["operations"] = [self._operation(p, wallets) for p in postings]
            data["entries"] = [self.entry(e, wallets) for e in entries]
        return data
