"""Routes of the ledger API under /api/v1/ (the rest of /wallets is `wallets.urls`)."""

from django.urls import path

from ledger.apis import assets, holds, reconciliations, reversals, statements, transactions, wallets

urlpatterns = [
    path("assets", assets.AssetListCreateApi.as_view(), name="asset-list"),
    path("transactions", transactions.LedgerTransactionListCreateApi.as_view(), name="transaction-list"),
    path("transactions/<int:transaction_id>", transactions.LedgerTransactionDetailApi.as_view(), name="transaction-detail"),
    path("transactions/<int:transaction_id>/entries", transactions.LedgerTransactionEntriesApi.as_view(), name="transaction-entries"),
    path("transactions/<int:transaction_id>/reverse", reversals.TransactionReverseApi.as_view(), name="transaction-reverse"),
    path("holds", holds.HoldListCreateApi.as_view(), name="hold-list"),
    path("holds/<int:hold_id>", holds.HoldDetailApi.as_view(), name="hold-detail"),
    path("holds/<int:hold_id>/capture", holds.HoldCaptureApi.as_view(), name="hold-capture"),
    path("holds/<int:hold_id>/void", holds.HoldVoidApi.as_view(), name="hold-void"),
    path("reconciliations", reconciliations.ReconciliationListCreateApi.as_view(), name="reconciliation-list"),
    path("reconciliations/<int:reconciliation_id>", reconciliations.ReconciliationDetailApi.as_view(), name="reconciliation-detail"),
]

# Lifecycle of wallets (the rest of /wallets is wallets.urls, shared by users and organizations).
urlpatterns += [
    path("wallets/<int:wallet_id>/suspend", wallets.WalletSuspendApi.as_view(), name="wallet-suspend"),
    path("wallets/<int:wallet_id>/activate", wallets.WalletActivateApi.as_view(), name="wallet-activate"),
    path("wallets/<int:wallet_id>/close", wallets.WalletCloseApi.as_view(), name="wallet-close"),
]

# Balance at a point in time and statements (reads; users and organizations alike).
urlpatterns += [
    path("wallets/<int:wallet_id>/balance", statements.WalletBalanceApi.as_view(), name="wallet-balance"),
    path("wallets/<int:wallet_id>/statement", statements.WalletStatementApi.as_view(), name="wallet-statement"),
    path("customers/<str:external_id>/statement", statements.CustomerStatementApi.as_view(), name="customer-statement"),
]
