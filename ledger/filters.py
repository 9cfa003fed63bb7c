"""FilterSets of the ledger's history endpoints (SPEC 6): `GET /transactions` and statements.

Invariants:
* Filters only narrow a queryset that `ledger.selectors` already restricted to the viewer;
  they never widen it and never decide access.
* `type`, `status`, `currency` (the asset of the first posting), `wallet_id` (any posting
  names the wallet, so failed and held attempts match too; both index-backed), `from`/`to` (ISO 8601 instants or dates; a
  naive time is UTC; a bare `to` date includes that whole day), `search` (reference or
  description, case-insensitive).
* A malformed value is a 400 VALIDATION_ERROR naming the parameter.
"""

from __future__ import annotations

import django_filters
from django import forms
from django.db.models import Exists, OuterRef, Q, QuerySet
from rest_framework import serializers

from core.filters import InstantFilter
from ledger.models import Entry, Posting, Transaction


class PositiveIntegerFilter(django_filters.NumberFilter):
    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        super().__init__(*args, **kwargs)


class EntryFilter(django_filters.FilterSet):
    """A wallet statement's date range (`GET /wallets/{id}/entries?from=&to=`)."""

    locals()["from"] = InstantFilter(bound="from", help_text="Posted at or after (ISO 8601 date or date-time; UTC if no offset).")
    locals()["to"] = InstantFilter(bound="to", help_text="Posted at or before (ISO 8601; a bare date includes that whole day).")

    class Meta:
        model = Entry
        fields: list[str] = []


def entries_in_range(queryset: QuerySet[Entry], params) -> QuerySet[Entry]:
    """`queryset` narrowed by the `from`/`to` query parameters; a malformed one is a 400."""
    entry_filter = EntryFilter(params, queryset=queryset)
    if not entry_filter.is_valid():
        raise serializers.ValidationError(entry_filter.errors)
    return entry_filter.qs


class TransactionFilter(django_filters.FilterSet):
    type = django_filters.ChoiceFilter(choices=Transaction.Type.choices, help_text="Transaction type.")
    status = django_filters.ChoiceFilter(choices=Transaction.Status.choices, help_text="Transaction status.")
    currency = django_filters.CharFilter(method="filter_currency", max_length=16, help_text="Asset code, e.g. USD.")
    wallet_id = PositiveIntegerFilter(method="filter_wallet", help_text="Only transactions with an operation on this wallet.")
    locals()["from"] = InstantFilter(bound="from", help_text="Created at or after (ISO 8601 date or date-time; UTC if no offset).")
    locals()["to"] = InstantFilter(bound="to", help_text="Created at or before (ISO 8601; a bare date includes that whole day).")
    search = django_filters.CharFilter(method="filter_search", max_length=200, help_text="Part of the reference or the description.")

    class Meta:
        model = Transaction
        fields = ["type", "status"]

    def filter_currency(self, queryset, name, value):
        # The representation's currency is the asset of the first operation.
        first = Posting.objects.filter(transaction_id=OuterRef("pk"), index=0, asset__code=value.strip().upper())
        return queryset.filter(Exists(first))

    def filter_wallet(self, queryset, name, value):
        wallet_id = int(value)
        postings = Posting.objects.filter(transaction_id=OuterRef("pk"))
        return queryset.filter(Exists(postings.filter(source_wallet_id=wallet_id)) | Exists(postings.filter(destination_wallet_id=wallet_id)))

    def filter_search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(reference__icontains=value) | Q(description__icontains=value))
