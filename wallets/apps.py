from django.apps import AppConfig


class WalletsConfig(AppConfig):
    name = "wallets"
    verbose_name = "Customer wallets API"

    def ready(self) -> None:
        from wallets import tasks  # noqa: F401 - outbox handlers (payout send and status checks)
