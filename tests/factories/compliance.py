"""Compliance factories: the rows staff keep in the back office (sanctions entries, risk, limit
and fee rules). The admin saves these rows itself (they are configuration, not movements), so
the factories create them as it does; the rules snapshot (`compliance.rules`) is refreshed by
the models' save signals either way."""

from __future__ import annotations

from decimal import Decimal

import factory

from compliance.models import FeeRule, LimitRule, RiskRule, SanctionsEntry


class SanctionsEntryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SanctionsEntry

    name = factory.Faker("name")
    aliases = factory.LazyFunction(list)
    source = "TEST"
    list_id = factory.Sequence(lambda n: f"T-{n}")


class RiskRuleFactory(factory.django.DjangoModelFactory):
    """A rule of a registered kind; `amount_threshold` rejecting from 1,000 by default."""

    class Meta:
        model = RiskRule

    name = factory.Sequence(lambda n: f"rule {n}")
    kind = "amount_threshold"
    params = factory.LazyFunction(lambda: {"threshold": "1000"})
    action = RiskRule.Action.REJECT


class LimitRuleFactory(factory.django.DjangoModelFactory):
    """One scope's limits. The seed migration holds the blank-currency scopes: give a currency
    (that asset's own limits) or change the seeded row instead."""

    class Meta:
        model = LimitRule

    kyc_level = "none"
    movement_type = "withdrawal"
    direction = "outgoing"
    currency = ""
    single_limit = None
    daily_limit = None
    monthly_limit = None


class FeeRuleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = FeeRule

    movement_type = "withdrawal"
    destination_type = ""
    currency = ""
    percent = Decimal("0")
    fixed = Decimal("0")
