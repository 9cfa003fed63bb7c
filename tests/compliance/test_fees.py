"""Fees: rule choice, rounding per asset exponent, minimum/maximum, and POST /api/v1/fees/quote."""

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from compliance.fees import fee_compute, fee_rule_for
from compliance.models import FeeRule
from core.errors import ValidationFailed
from ledger.models import Asset
from ledger.services import asset_create
from tests.factories.compliance import FeeRuleFactory
from tests.factories.accounts import UserFactory
from tests.factories.orgs import key_client, make_org_key

pytestmark = pytest.mark.django_db

URL = "/api/v1/fees/quote"


def asset(code: str) -> Asset:
    return Asset.objects.get(code=code, organization__isnull=True)


def fee(movement_type: str, amount: str, code: str = "USD", destination_type: str = ""):
    return fee_compute(movement_type=movement_type, amount=Decimal(amount), asset=asset(code), destination_type=destination_type)


# --- seeded defaults (SPEC 11) -------------------------------------------------------------------


def test_transfers_and_deposits_are_free():
    for kind in ("transfer", "deposit"):
        quote = fee(kind, "1234.56")
        assert quote.fee_amount == Decimal("0.00")
        assert quote.fee_type == "free"
        assert quote.total_amount == Decimal("1234.56")
        assert quote.as_dict()["fee_amount"] == "0.00"


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ("1000.00", "10.00"),  # 1%
        ("50.00", "1.00"),  # below the minimum: raised to 1.00
        ("0.01", "1.00"),
        ("100.00", "1.00"),  # exactly the minimum
        ("100.55", "1.01"),  # 1.0055 rounded up
        ("150.01", "1.51"),  # 1.5001 -> 1.51 (platform's favour)
    ],
)
def test_withdrawal_to_iban_one_percent_minimum_one(amount, expected):
    quote = fee("withdrawal", amount, destination_type="IBAN")
    assert quote.fee_amount == Decimal(expected)
    assert quote.total_amount == Decimal(amount) + Decimal(expected)
    assert quote.fee_type == "percentage"
    assert quote.as_dict()["fee_percentage"] == "1.00"


def test_withdrawal_to_other_destination_has_no_minimum():
    assert fee("withdrawal", "50.00", destination_type="EXTERNAL").fee_amount == Decimal("0.50")
    assert fee("withdrawal", "50.00").fee_amount == Decimal("0.50")  # no destination: the generic rule


def test_exchange_half_percent_of_source_rounded_up():
    assert fee("exchange", "10.01").fee_amount == Decimal("0.06")  # 0.05005 -> 0.06
    assert fee("exchange", "1000.00").fee_amount == Decimal("5.00")
    assert fee("exchange", "1000.00").as_dict()["fee_percentage"] == "0.50"


def test_settlement_one_percent():
    assert fee("settlement", "250.00").fee_amount == Decimal("2.50")


# --- rounding per exponent -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "amount", "expected", "rendered"),
    [
        ("BTC", "0.00000001", "0.00000001", "0.00000001"),  # 0.5% of one satoshi -> one satoshi
        ("BTC", "1.23456789", "0.00617284", "0.00617284"),  # 0.00617283945 -> up
        ("ETH", "0.000000000000000001", "0.000000000000000001", "0.000000000000000001"),
        ("ETH", "2.000000000000000001", "0.010000000000000001", "0.010000000000000001"),
        ("USDC", "3.333333", "0.016667", "0.016667"),
        ("SOL", "1", "0.005000000", "0.005000000"),
    ],
)
def test_exchange_fee_rounds_up_to_the_asset_exponent(code, amount, expected, rendered):
    quote = fee("exchange", amount, code)
    assert quote.fee_amount == Decimal(expected)
    assert quote.as_dict()["fee_amount"] == rendered
    assert quote.fee_currency == code


def test_exponent_zero_asset():
    points = asset_create(code="PTS", name="Points", exponent=0)
    quote = fee_compute(movement_type="exchange", amount=Decimal(101), asset=points)
    assert quote.fee_amount == Decimal(1)  # 0.505 -> 1
    assert quote.as_dict() == {
        "fee_amount": "1", "fee_currency": "PTS", "fee_type": "percentage", "fee_percentage": "0.50",
        "total_amount": "102", "description": "Currency exchange: 0.5% of the source amount",
        # a custom asset nobody prices: the default rule's percentage applies, no reference view
        "minimum_fee": None, "maximum_fee": None, "rule_currency": "USD", "reference_currency": "USD", "rate": None, "reference": None,
    }


def test_a_fee_that_is_exact_is_not_rounded_up():
    assert fee("withdrawal", "1234.00", destination_type="IBAN").fee_amount == Decimal("12.34")


# --- rule choice, minimum, maximum, fixed ----------------------------------------------------------


def test_most_specific_rule_wins():
    generic = FeeRule.objects.get(movement_type="withdrawal", destination_type="", currency="")
    by_destination = FeeRule.objects.get(movement_type="withdrawal", destination_type="IBAN", currency="")
    by_currency = FeeRuleFactory(movement_type="withdrawal", currency="EUR", percent=Decimal("2"))
    both = FeeRuleFactory(movement_type="withdrawal", currency="EUR", destination_type="IBAN", percent=Decimal("3"))

    assert fee_rule_for(movement_type="withdrawal", currency="EUR", destination_type="IBAN") == both
    assert fee_rule_for(movement_type="withdrawal", currency="USD", destination_type="IBAN") == by_destination
    assert fee_rule_for(movement_type="withdrawal", currency="EUR", destination_type="EXTERNAL") == by_currency
    assert fee_rule_for(movement_type="withdrawal", currency="USD", destination_type="EXTERNAL") == generic
    assert fee("withdrawal", "100.00", "EUR", "IBAN").fee_amount == Decimal("3.00")
    assert fee("withdrawal", "100.00", "EUR", "iban").fee_amount == Decimal("3.00")  # case-insensitive

    both.active = False
    both.save()
    # inactive is ignored: the destination rule (1%, minimum 1.00) beats the currency rule (2%)
    assert fee("withdrawal", "100.00", "EUR", "IBAN").fee_amount == Decimal("1.00")
    assert fee("withdrawal", "100.00", "EUR", "EXTERNAL").fee_amount == Decimal("2.00")


def test_ties_go_to_the_lowest_id():
    first = FeeRuleFactory(movement_type="transfer", currency="GBP", percent=Decimal("1"))
    FeeRuleFactory(movement_type="transfer", currency="GBP", percent=Decimal("9"))
    assert fee_rule_for(movement_type="transfer", currency="GBP") == first


def test_no_rule_means_no_fee():
    FeeRule.objects.filter(movement_type="settlement").delete()
    quote = fee("settlement", "100.00")
    assert (quote.fee_amount, quote.fee_type, quote.description) == (Decimal("0.00"), "free", "No fee")


def test_fixed_plus_percent_with_maximum_rounded_down():
    FeeRuleFactory(
        movement_type="transfer", currency="USD", percent=Decimal("2"), fixed=Decimal("0.30"),
        maximum=Decimal("5.009"), description="card-like",
    )
    small = fee("transfer", "10.00")
    assert small.fee_amount == Decimal("0.50") and small.fee_type == "percentage_plus_fixed"
    assert fee("transfer", "1000.00").fee_amount == Decimal("5.00")  # capped at 5.009 rounded DOWN


def test_fixed_only_and_minimum_with_extra_decimals_rounded_up():
    FeeRuleFactory(movement_type="deposit", currency="USD", fixed=Decimal("0.25"), minimum=Decimal("0.301"))
    quote = fee("deposit", "10.00")
    assert quote.fee_amount == Decimal("0.31") and quote.fee_type == "fixed"


def test_unknown_movement_type_is_refused():
    with pytest.raises(ValidationFailed) as exc:
        fee("teleport", "1.00")
    assert "type" in exc.value.details["fields"]


def test_float_amount_is_refused():
    with pytest.raises(TypeError):
        fee_compute(movement_type="transfer", amount=1.5, asset=asset("USD"))  # type: ignore[arg-type]


def test_database_refuses_a_minimum_above_the_maximum():
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        FeeRuleFactory(movement_type="transfer", minimum=Decimal("5"), maximum=Decimal("1"))


# --- API ---------------------------------------------------------------------------------------------


@pytest.fixture
def user_client():
    client = APIClient()
    client.force_authenticate(UserFactory())
    return client


def test_quote_api_shape(user_client):
    response = user_client.post(URL, {"type": "withdrawal", "amount": "1000.00", "currency": "usd", "destination_type": "IBAN"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    # migration 0010 names the minimum's currency (a database re-seeded by 0005 alone does not)
    assert body.pop("description").startswith("Withdrawal to a bank account: 1%, minimum ")
    assert body == {
        "fee_amount": "10.00", "fee_currency": "USD", "fee_type": "percentage", "fee_percentage": "1.00",
        "total_amount": "1010.00",
        "minimum_fee": "1.00", "maximum_fee": None, "rule_currency": "USD", "reference_currency": "USD", "rate": "1",
        "reference": {"fee_amount": "10.00", "fixed": "0.00", "minimum_fee": "1.00", "maximum_fee": None},
    }


def test_quote_api_json_number_is_exact(user_client):
    response = user_client.post(URL, '{"type": "exchange", "amount": 0.1, "currency": "BTC"}', content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["fee_amount"] == "0.00050000"
    assert response.json()["total_amount"] == "0.10050000"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "withdrawal", "amount": "10.001", "currency": "USD"}, "amount"),
        ({"type": "withdrawal", "amount": "-5", "currency": "USD"}, "amount"),
        ({"type": "withdrawal", "amount": "0", "currency": "USD"}, "amount"),
        ({"type": "withdrawal", "amount": "1e3", "currency": "USD"}, "amount"),
        ({"type": "withdrawal", "amount": "NaN", "currency": "USD"}, "amount"),
        ({"type": "withdrawal", "amount": "", "currency": "USD"}, "amount"),
        ({"type": "withdrawal", "amount": True, "currency": "USD"}, "amount"),
        ({"type": "withdrawal", "currency": "USD"}, "amount"),
        ({"type": "withdrawal", "amount": "10", "currency": "XXX"}, "currency"),
        ({"type": "withdrawal", "amount": "10"}, "currency"),
        ({"type": "gift", "amount": "10", "currency": "USD"}, "type"),
        ({"amount": "10", "currency": "USD"}, "type"),
        ({"type": "withdrawal", "amount": "10", "currency": "USD", "destination_type": "CHEQUE"}, "destination_type"),
    ],
)
def test_quote_api_refuses_bad_input(user_client, body, field):
    response = user_client.post(URL, body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert field in error["details"]["fields"]


def test_quote_api_refuses_a_non_object_body(user_client):
    response = user_client.post(URL, "[1, 2]", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"


def test_quote_api_needs_authentication():
    response = APIClient().post(URL, {"type": "transfer", "amount": "1", "currency": "USD"}, format="json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AUTHENTICATION_FAILED"


def test_organizations_may_quote_their_own_custom_assets_only():
    alpha, beta = make_org_key("Alpha"), make_org_key("Beta")
    asset_create(code="MILES", name="Miles", exponent=0, organization=alpha.organization)
    body = {"type": "exchange", "amount": "1000", "currency": "MILES"}

    response = key_client(alpha).post(URL, body, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["fee_amount"] == "5" and response.json()["fee_currency"] == "MILES"

    other = key_client(beta).post(URL, body, format="json")
    assert other.status_code == 400
    assert "currency" in other.json()["error"]["details"]["fields"]

    member = APIClient()
    member.force_authenticate(alpha.owner)
    response = member.post(URL, body, format="json", HTTP_X_ORGANIZATION=alpha.organization.slug)
    assert response.status_code == 200, response.content
