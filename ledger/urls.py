from django.urls import path

from ledger import apis

urlpatterns = [
    path("assets", apis.AssetListCreateApi.as_view(), name="asset-list"),
    path("transactions", apis.LedgerTransactionListCreateApi.as_view(), name="transaction-list"),
    path("transactions/<int:transaction_id>", apis.LedgerTransactionDetailApi.as_view(), name="transaction-detail"),
    path("transactions/<int:transaction_id>/entries", apis.LedgerTransactionEntriesApi.as_view(), name="transaction-entries"),
]
