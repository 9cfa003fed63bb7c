"""core.money: the one parser of request amounts, and the formatter (no database needed)."""

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ValidationFailed
from core.money import (
    MAX_INTEGER_DIGITS,
    embedded_precision_problem,
    format_amount,
    parse_amount,
)


def refused(value, exponent=2, field="amount") -> str:
    with pytest.raises(ValidationFailed) as info:
        parse_amount(value, exponent=exponent, field=field)
    err = info.value
    assert err.code == "VALIDATION_ERROR" and err.status == 400
    assert list(err.details["fields"]) == [field]
    return err.details["fields"][field][0]


@pytest.mark.parametrize(
    ("value", "exponent", "expected"),
    [
        ("10", 2, Decimal("10.00")),
        ("10.5", 2, Decimal("10.50")),
        ("0.01", 2, Decimal("0.01")),
        (" 7.25 ", 2, Decimal("7.25")),
        ("1.000", 2, Decimal("1.00")),  # trailing zeros are judged by value
        (5, 0, Decimal("5")),
        (Decimal("100.50"), 2, Decimal("100.50")),
        (Decimal("1e-2"), 2, Decimal("0.01")),
        ("0.000000000000000001", 18, Decimal("0.000000000000000001")),
        pytest.param("99999999999999999999.999999999999999999", 18, Decimal("99999999999999999999.999999999999999999"),
                     marks=pytest.mark.postgres),  # 38 digits: SQLite keeps 15 and refuses more (test_embedded_exactness)
        ("00012.30", 2, Decimal("12.30")),
    ],
)
def test_accepts_exact_positive_amounts(value, exponent, expected):
    parsed = parse_amount(value, exponent=exponent)
    assert parsed == expected
    assert parsed.as_tuple().exponent == -exponent  # quantized to the asset


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (10.5, "floating-point"),
        (0.1, "floating-point"),
        (True, "boolean"),
        (False, "boolean"),
        (0, "greater than zero"),
        ("0", "greater than zero"),
        ("0.00", "greater than zero"),
        ("-0", "greater than zero"),
        (Decimal("-0"), "greater than zero"),
        (-1, "positive"),
        ("-5.00", "positive"),
        (Decimal("-0.01"), "positive"),
        ("+5", "without a sign"),
        ("10.001", "at most 2 decimals"),
        (Decimal("0.001"), "at most 2 decimals"),
        ("NaN", "finite"),
        ("nan", "finite"),
        ("Infinity", "finite"),
        ("-inf", "finite"),
        (Decimal("NaN"), "finite"),
        (Decimal("sNaN"), "finite"),
        (Decimal("Infinity"), "finite"),
        ("1e3", "exponent notation"),
        ("1E+3", "exponent notation"),
        ("2.5e-1", "exponent notation"),
        (Decimal("1E+3"), "exponent notation"),
        ("", "required"),
        ("   ", "required"),
        (None, "required"),
        ("abc", "decimal number"),
        ("1,000.00", "decimal number"),
        ("10.", "decimal number"),
        (".5", "decimal number"),
        ("1 000", "decimal number"),
        ("0x10", "decimal number"),
        ("١٢", "decimal number"),  # non-ASCII digits
        ([10], "decimal number"),
        ({"amount": 1}, "decimal number"),
        ("1" * (MAX_INTEGER_DIGITS + 1), "too large"),
        (10 ** MAX_INTEGER_DIGITS, "too large"),
        (Decimal("1" * (MAX_INTEGER_DIGITS + 1)), "too large"),
    ],
)
def test_refuses_with_a_field_error(value, fragment):
    assert fragment in refused(value)


def test_error_names_the_given_field():
    assert "decimals" in refused("1.234", field="operations[3].amount")


def test_exponent_zero_refuses_any_fraction():
    assert "at most 0 decimals" in refused("1.5", exponent=0)
    assert parse_amount("1.0", exponent=0) == Decimal("1")


@pytest.mark.parametrize("exponent", [-1, 19, 2.0, "2", True])
def test_bad_exponent_is_a_programming_error(exponent):
    with pytest.raises(ValueError):
        parse_amount("1", exponent=exponent)


@pytest.mark.parametrize(
    ("amount", "exponent", "text"),
    [
        (Decimal("1000.5"), 2, "1000.50"),
        (Decimal("1E+3"), 2, "1000.00"),
        (Decimal("0"), 2, "0.00"),
        (Decimal("-0.00"), 2, "0.00"),
        (Decimal("-12.3"), 2, "-12.30"),
        (Decimal("10.000000000000000000"), 2, "10.00"),
        (Decimal("1"), 18, "1.000000000000000000"),
        (Decimal("99999999999999999999.999999999999999999"), 18, "99999999999999999999.999999999999999999"),
        (Decimal("7"), 0, "7"),
        (5, 2, "5.00"),
    ],
)
def test_format_amount(amount, exponent, text):
    assert format_amount(amount, exponent) == text


@pytest.mark.parametrize("bad", [1.5, True, "1.50"])
def test_format_amount_refuses_non_decimals(bad):
    with pytest.raises(TypeError):
        format_amount(bad, 2)


@settings(max_examples=300, deadline=None)
@given(
    exponent=st.integers(min_value=0, max_value=18),
    units=st.integers(min_value=1, max_value=10**20 - 1),
)
def test_round_trip_of_every_representable_amount(exponent, units):
    """Any whole number of minor units that fits survives format -> parse unchanged."""
    amount = Decimal(units).scaleb(-exponent)
    if amount.adjusted() >= MAX_INTEGER_DIGITS:
        return
    text = format_amount(amount, exponent)
    assert "E" not in text and "e" not in text
    if embedded_precision_problem(amount):  # SQLite keeps 15 significant digits: refused, never rounded
        with pytest.raises(ValidationFailed, match="keeps 15 exactly"):
            parse_amount(text, exponent=exponent)
        return
    assert parse_amount(text, exponent=exponent) == amount
    assert parse_amount(amount, exponent=exponent) == amount


@settings(max_examples=300, deadline=None)
@given(exponent=st.integers(min_value=0, max_value=17), units=st.integers(min_value=1, max_value=10**15))
def test_one_digit_too_many_is_always_refused(exponent, units):
    """A value with a non-zero digit beyond the exponent is refused, never rounded."""
    amount = Decimal(units * 10 + 1).scaleb(-(exponent + 1))
    text = format(amount, "f")
    with pytest.raises(ValidationFailed):
        parse_amount(text, exponent=exponent)
    with pytest.raises(ValidationFailed):
        parse_amount(amount, exponent=exponent)


@settings(max_examples=200, deadline=None)
@given(value=st.floats(allow_nan=True, allow_infinity=True))
def test_floats_are_always_refused(value):
    with pytest.raises(ValidationFailed):
        parse_amount(value, exponent=2)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=30))
def test_arbitrary_text_is_parsed_or_refused_cleanly(text):
    """No input makes the parser raise anything but ValidationFailed, and what it accepts is a
    positive, finite Decimal at the exponent."""
    try:
        value = parse_amount(text, exponent=2)
    except ValidationFailed as exc:
        assert exc.details["fields"]["amount"]
    else:
        assert value.is_finite() and value > 0 and value.as_tuple().exponent == -2


@pytest.mark.parametrize(
    ("amount", "exponent", "text"),
    [
        (Decimal("0.012531330000000000"), 18, "0.01253133"),  # ETH: the 18-decimal noise goes
        (Decimal("1"), 18, "1.00"),
        (Decimal("0.000000000000000001"), 18, "0.000000000000000001"),  # never a significant digit
        (Decimal("0.50000000"), 8, "0.50"),
        (Decimal("40"), 2, "40.00"),  # fiat keeps its exponent
        (Decimal("7"), 0, "7"),
        (Decimal("1.5"), 1, "1.5"),
        (Decimal("-0"), 6, "0.00"),
    ],
)
def test_format_amount_trimmed_for_people(amount, exponent, text):
    assert format_amount(amount, exponent, trim=True) == text
    assert Decimal(text) == amount.quantize(Decimal(1).scaleb(-exponent))  # the value is unchanged


def test_the_amount_template_filter_uses_the_formatter():
    from django.template import Context, Template

    rendered = Template("{% load money %}[{{ a|amount:18 }}][{{ b|amount }}][{{ c|amount:2 }}][{{ d|amount }}][{{ e|amount:asset }}]").render(
        Context({"a": Decimal("0.031328330000000000"), "b": "0.000078330000000000", "c": Decimal("12.5"), "d": None,
                 "e": Decimal("3"), "asset": type("A", (), {"exponent": 6})()})
    )
    assert rendered == "[0.03132833][0.00007833][12.50][][3.00]"
    with pytest.raises(TypeError):
        Template("{% load money %}{{ f|amount:2 }}").render(Context({"f": 1.5}))


@pytest.mark.django_db
def test_the_amount_filter_looks_up_a_platform_currency():
    from django.template import Context, Template

    from ledger.models import Asset

    Asset.objects.get_or_create(code="USD", organization=None, defaults={"name": "US Dollar", "exponent": 2, "kind": "fiat"})
    Asset.objects.get_or_create(code="ETH", organization=None, defaults={"name": "Ether", "exponent": 18, "kind": "crypto"})
    out = Template("{% load money %}{{ a|amount:'USD' }} {{ b|amount:'ETH' }} {{ c|amount:'XYZ' }}").render(
        Context({"a": Decimal("42.5"), "b": Decimal("2.000000000000000000"), "c": Decimal("1.230")})
    )
    assert out == "42.50 2.00 1.23"
