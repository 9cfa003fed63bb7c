"""Django app config of the ledger (label `ledger`; tables `ledger_*`, never renamed by moves)."""

from django.apps import AppConfig


class LedgerConfig(AppConfig):
    name = "ledger"
    verbose_name = "Ledger"
