from django.urls import path

from payorders import sandbox_apis

urlpatterns: list = [
    path("sandbox/chain/transactions", sandbox_apis.SandboxTransactionCreateApi.as_view(), name="sandbox-chain-transactions"),
    path("sandbox/chain/mine", sandbox_apis.SandboxMineApi.as_view(), name="sandbox-chain-mine"),
]
