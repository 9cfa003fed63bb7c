"""Sandbox chain endpoints: a developer tool for paying and confirming pay orders without a real
chain. They exist while settings.CHAIN_PROVIDER == "sandbox"; on a live deployment only for a test
API key (whose test-mode orders are paid on the sandbox chain, core.livemode): anyone else gets
404 NOT_FOUND, authenticated or not, and learns nothing.

Any authenticated caller may use them (a user's JWT or an organization's key, whatever the
platform's authenticators accept): the sandbox moves no real value. They take no
Idempotency-Key, because nothing in our ledger moves; a retried send is simply a second transfer.
"""

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import (
    AuthenticationFailed,
    NotAuthenticated,
    PermissionDenied,
)
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import NotFound
from core.fields import RawAmountField
from core.money import format_amount
from payorders.chains import chain_provider_name, get_chain_provider, sandbox_enabled
from payorders.chains.base import CHAIN_ASSETS, chain_asset
from payorders.chains.sandbox import MAX_BLOCKS_PER_MINE, sandbox_mine, sandbox_send

_TX_HASH = "0x5c504ed432cb51138bcf09aa5e8a410dd4a1e204ef84bfed1be16dfba1b22060"


class SandboxTransactionInput(serializers.Serializer):
    to_address = serializers.CharField(max_length=100, help_text="A Bitcoin address for BTC, an Ethereum address for ETH/USDC.")
    amount = RawAmountField(help_text='Major units as a decimal string, e.g. "0.015".')
    currency = serializers.ChoiceField(choices=sorted(CHAIN_ASSETS))
    from_address = serializers.CharField(
        max_length=100, required=False, allow_blank=True, help_text="Optional sender; it must hold the amount. Default: the faucet."
    )


class SandboxTransactionOutput(serializers.Serializer):
    tx_hash = serializers.CharField()
    chain = serializers.CharField()
    currency = serializers.CharField()
    from_address = serializers.CharField()
    to_address = serializers.CharField()
    amount = serializers.CharField()
    status = serializers.CharField()
    block_number = serializers.IntegerField(allow_null=True)
    confirmations = serializers.IntegerField()


class SandboxMineInput(serializers.Serializer):
    blocks = serializers.IntegerField(min_value=1, max_value=MAX_BLOCKS_PER_MINE, default=1)


class SandboxMineOutput(serializers.Serializer):
    block_number = serializers.IntegerField(help_text="The new head of the sandbox chain.")


class _SandboxApi(APIView):
    def initial(self, request, *args, **kwargs):
        if sandbox_enabled():
            return super().initial(request, *args, **kwargs)
        # A live deployment: only a test key may drive the sandbox chain (its test-mode orders are
        # paid there, core.livemode); to anyone else it does not exist.
        try:
            super().initial(request, *args, **kwargs)
        except (NotAuthenticated, AuthenticationFailed, PermissionDenied):
            raise NotFound("The sandbox chain is not enabled on this deployment.") from None
        key = getattr(request.user, "api_key", None)
        if key is None or key.livemode or chain_provider_name(livemode=False) != "sandbox":
            raise NotFound("The sandbox chain is not enabled on this deployment.")


_NOT_FOUND = OpenApiResponse(description="The sandbox is off (CHAIN_PROVIDER is not `sandbox`).")


class SandboxTransactionCreateApi(_SandboxApi):
    @extend_schema(
        tags=["sandbox"],
        summary="Send a transfer on the sandbox chain",
        description="Records a pending transaction; the next mined block includes it.",
        request=SandboxTransactionInput,
        responses={201: SandboxTransactionOutput, 404: _NOT_FOUND},
        examples=[
            OpenApiExample(
                "Pay 0.015 ETH", value={"to_address": "0x9858EfFD232B4033E47d90003D41EC34EcaEda94", "amount": "0.015", "currency": "ETH"}, request_only=True
            ),
            OpenApiExample(
                "Pending transaction",
                value={
                    "tx_hash": _TX_HASH,
                    "chain": "ethereum",
                    "currency": "ETH",
                    "from_address": "sandbox-faucet",
                    "to_address": "0x9858EfFD232B4033E47d90003D41EC34EcaEda94",
                    "amount": "0.015000000000000000",
                    "status": "pending",
                    "block_number": None,
                    "confirmations": 0,
                },
                response_only=True,
                status_codes=["201"],
            ),
        ],
    )
    def post(self, request):
        data = SandboxTransactionInput(data=request.data)
        data.is_valid(raise_exception=True)
        asset = chain_asset(data.validated_data["currency"])
        tx_hash = sandbox_send(
            to_address=data.validated_data["to_address"],
            amount=data.validated_data["amount"],
            currency=asset.symbol,
            from_address=data.validated_data.get("from_address") or None,
        )
        (transfer,) = get_chain_provider(asset.chain, livemode=False).get_transaction(tx_hash)  # always the sandbox chain
        body = {
            "tx_hash": transfer.tx_hash,
            "chain": transfer.chain,
            "currency": transfer.asset,
            "from_address": transfer.from_address,
            "to_address": transfer.to_address,
            "amount": format_amount(transfer.amount, asset.decimals),
            "status": transfer.status,
            "block_number": transfer.block_number,
            "confirmations": transfer.confirmations,
        }
        return Response(SandboxTransactionOutput(body).data, status=201)


class SandboxMineApi(_SandboxApi):
    @extend_schema(
        tags=["sandbox"],
        summary="Mine blocks on the sandbox chain",
        description="Mines 1..1000 blocks; the first includes every pending transaction, each further block adds a confirmation.",
        request=SandboxMineInput,
        responses={200: SandboxMineOutput, 404: _NOT_FOUND},
        examples=[
            OpenApiExample("Mine three blocks", value={"blocks": 3}, request_only=True),
            OpenApiExample("New head", value={"block_number": 42}, response_only=True),
        ],
    )
    def post(self, request):
        data = SandboxMineInput(data=request.data)
        data.is_valid(raise_exception=True)
        head = sandbox_mine(blocks=data.validated_data["blocks"])
        return Response(SandboxMineOutput({"block_number": head}).data)
