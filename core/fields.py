"""Serializer fields shared by the APIs."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


@extend_schema_field(OpenApiTypes.STR)
class RawAmountField(serializers.Field):
    """An amount in a request, kept as sent: a str, an int, or a Decimal from
    `core.parsers.DecimalJSONParser` (never a float). The service parses it with
    `core.money.parse_amount` for the asset's exponent, which names the field when it refuses it."""

    def to_internal_value(self, data):
        return data

    def to_representation(self, value):
        return str(value)
