"""Django app config of the ledger (label `ledger`; tables `ledger_*`, never renamed by moves)."""

from django.apps import AppConfig


class LedgerConfig(AppConfig):
    name = "ledger"
    verbose_name = "Ledger"

    def ready(self) -> None:
        from ledger import tasks  # noqa: F401 - Celery tasks and the hold-expiry beat entry
