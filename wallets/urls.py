from django.urls import path

from wallets import apis, schedule_apis

urlpatterns = [
    path("wallets", apis.WalletListCreateApi.as_view(), name="wallet-list"),
    path("wallets/<int:wallet_id>", apis.WalletDetailApi.as_view(), name="wallet-detail"),
    path("wallets/<int:wallet_id>/entries", apis.WalletEntriesApi.as_view(), name="wallet-entries"),
    path("deposits", apis.DepositCreateApi.as_view(), name="deposit-create"),
    path("transfers", apis.TransferCreateApi.as_view(), name="transfer-create"),
    path("withdrawals", apis.WithdrawalListCreateApi.as_view(), name="withdrawal-list"),
    path("withdrawals/<int:transaction_id>", apis.WithdrawalDetailApi.as_view(), name="withdrawal-detail"),
    path("exchanges/quote", apis.ExchangeQuoteApi.as_view(), name="exchange-quote"),
    path("exchanges", apis.ExchangeCreateApi.as_view(), name="exchange-create"),
    path("schedules", schedule_apis.ScheduleListCreateApi.as_view(), name="schedule-list"),
    path("schedules/<int:schedule_id>", schedule_apis.ScheduleDetailApi.as_view(), name="schedule-detail"),
    path("schedules/<int:schedule_id>/pause", schedule_apis.SchedulePauseApi.as_view(), name="schedule-pause"),
    path("schedules/<int:schedule_id>/resume", schedule_apis.ScheduleResumeApi.as_view(), name="schedule-resume"),
    path("schedules/<int:schedule_id>/cancel", schedule_apis.ScheduleCancelApi.as_view(), name="schedule-cancel"),
    path("schedules/<int:schedule_id>/occurrences", schedule_apis.ScheduleOccurrencesApi.as_view(), name="schedule-occurrences"),
]
