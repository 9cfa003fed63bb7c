from django.urls import path

from ledger import apis

urlpatterns = [
    path("assets", apis.AssetListCreateApi.as_view(), name="asset-list"),
    path("transactions", apis.LedgerTransactionListCreateApi.as_view(), name="transaction-list"),
    path("transactions/<int:transaction_id>", apis.LedgerTransactionDetailApi.as_view(), name="transaction-detail"),
    path("transactions/<int:transaction_id>/entries", apis.LedgerTransactionEntriesApi.as_view(), name="transaction-entries"),
]

# Lifecycle of wallets (the rest of /wallets is wallets.urls, shared by users and organizations).
urlpatterns += [
    path("wallets/<int:wallet_id>/suspend", apis.WalletSuspendApi.as_view(), name="wallet-suspend"),
    path("wallets/<int:wallet_id>/activate", apis.WalletActivateApi.as_view(), name="wallet-activate"),
    path("wallets/<int:wallet_id>/close", apis.WalletCloseApi.as_view(), name="wallet-close"),
]
