"""Date-range query parameters, one parser for every list (`/transactions?from=&to=`,
`/wallets/{id}/entries?from=&to=`, `/pay-orders?created_from=&created_to=`, `/audit-logs?from=&to=`).

`parse_instant` accepts an ISO 8601 date-time (an offset is optional: naive means UTC) or a bare
date, and returns an aware UTC datetime or a date. It refuses, as a 400 naming the parameter,
what the database cannot compare against: an offset beyond the real-world range (-12:00 ..
+14:00; PostgreSQL rejects past 15:59 with a server error), and an instant that leaves the years
1..9999 once in UTC. Values reach the database in UTC only.

`InstantFilter(bound="from"|"to")` filters a timestamp field: `from` is inclusive; `to` is
inclusive, and a bare `to` date includes that whole day (the last representable day: no bound).
"""

from __future__ import annotations

import datetime as dt
import re

import django_filters
from django import forms
from django.utils.dateparse import parse_date, parse_datetime

MAX_UTC_OFFSET = dt.timedelta(hours=14)  # Line Islands, the easternmost zone
MIN_UTC_OFFSET = -dt.timedelta(hours=12)  # Baker Island, the westernmost

_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
FORMAT_HELP = "Enter an ISO 8601 date or date-time, e.g. 2026-05-31 or 2026-05-31T12:00:00Z."


def parse_instant(text: str) -> dt.datetime | dt.date:
    """An aware UTC datetime, or a date for a bare date; `ValueError` with the reason otherwise."""
    text = text.strip()
    try:
        if _DATE_ONLY.fullmatch(text):  # parse_datetime would read it as midnight
            day = parse_date(text)
            if day is None:
                raise ValueError
            return day
        moment = parse_datetime(text)
    except ValueError:  # well-formed but impossible, e.g. 2026-02-30 or an offset of 24:00
        moment = None
    if moment is None:
        raise ValueError(FORMAT_HELP)
    offset = moment.utcoffset()
    if offset is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    elif not MIN_UTC_OFFSET <= offset <= MAX_UTC_OFFSET:
        raise ValueError("The UTC offset must be between -12:00 and +14:00.")
    try:
        return moment.astimezone(dt.timezone.utc)
    except OverflowError:
        raise ValueError("The instant must fall within the years 1 to 9999 in UTC.") from None


class InstantField(forms.Field):
    """A form field for `parse_instant`; its error names the query parameter (the form's key)."""

    def to_python(self, value):
        if value in self.empty_values:
            return None
        try:
            return parse_instant(str(value))
        except ValueError as exc:
            raise forms.ValidationError(str(exc), code="invalid") from None


class InstantFilter(django_filters.Filter):
    field_class = InstantField

    def __init__(self, *args, bound: str, field_name: str = "created_at", **kwargs):
        if bound not in ("from", "to"):
            raise ValueError(f"bound must be 'from' or 'to', got {bound!r}")
        self.bound = bound
        super().__init__(*args, field_name=field_name, **kwargs)

    def filter(self, qs, value):
        if value is None:
            return qs
        gte, lte, lt = (f"{self.field_name}__{lookup}" for lookup in ("gte", "lte", "lt"))
        if isinstance(value, dt.datetime):
            return qs.filter(**{gte if self.bound == "from" else lte: value})
        start = dt.datetime.combine(value, dt.time.min, tzinfo=dt.timezone.utc)
        if self.bound == "from":
            return qs.filter(**{gte: start})
        if value == dt.date.max:  # through the last representable day: no upper bound at all
            return qs
        return qs.filter(**{lt: start + dt.timedelta(days=1)})  # a bare `to` date: through that day
