"""List-page pieces the other apps' admins use (issue 14 item 11): the amount and currency of a
ledger transaction (read per page in three queries), and platform shard wallets hidden unless
asked for. Kept here so that ledger/admin.py only names them."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList

from compliance.backoffice import transaction_summaries


class _TransactionSummariesChangeList(ChangeList):
    def get_results(self, request):
        super().get_results(request)
        rows = list(self.result_list)
        summaries = transaction_summaries(rows)
        for row in rows:
            row.movement_summary = summaries.get(row.pk)


class TransactionAmountMixin:
    """Adds `amount_display` (e.g. "100.13 USD": the first operation's amount in its asset) and
    `counterparty_display` columns to a ledger Transaction admin."""

    def get_changelist(self, request, **kwargs):
        return _TransactionSummariesChangeList

    def _movement_summary(self, obj):
        summary = getattr(obj, "movement_summary", None)
        if summary is None:
            summary = obj.movement_summary = transaction_summaries([obj]).get(obj.pk)
        return summary

    @admin.display(description="amount")
    def amount_display(self, obj) -> str:
        summary = self._movement_summary(obj)
        return summary.amount_display if summary else ""

    @admin.display(description="counterparty")
    def counterparty_display(self, obj) -> str:
        summary = self._movement_summary(obj)
        return summary.counterparty if summary else ""


class PlatformShardFilter(admin.SimpleListFilter):
    """Platform hot accounts are split into LEDGER_HOT_ACCOUNT_SHARDS rows (ledger.models); the
    extra shards (shard > 0) are hidden unless this filter shows them. Shard 0 stays listed."""

    title = "platform shards"
    parameter_name = "shards"

    def lookups(self, request, model_admin):
        return [("shown", "Shown"), ("only", "Only shards")]

    def choices(self, changelist):
        yield {"selected": self.value() is None, "query_string": changelist.get_query_string(remove=[self.parameter_name]), "display": "Hidden"}
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == str(lookup),
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request, queryset):
        shard = {"customer__isnull": True, "organization__isnull": True, "shard__gt": 0}
        if self.value() == "shown":
            return queryset
        if self.value() == "only":
            return queryset.filter(**shard)
        return queryset.exclude(**shard)
