from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opus.domain.models import Diamond, PricedDiamond, PricingRule
from opus.domain.pricing import (
    DEFAULT_MARKUP,
    DEFAULT_RULE,
    DEFAULT_RULE_PRIORITY,
    PricingEngine,
    round_cents,
    rule_matches,
    validate_rule,
)

STONE = Diamond(
    feed="nivoda",
    supplier_stone_id="SD-1",
    offer_id="OF-1",
    shape="ROUND",
    carats=Decimal("1.00"),
    lab_grown=False,
    feed_price=Decimal("1000.00"),
)


def stone(**changes: Any) -> Diamond:
    return replace(STONE, **changes)


def rule(rule_id: int = 1, priority: int = 10, markup: str = "1.50", **changes: Any) -> PricingRule:
    return replace(PricingRule(id=rule_id, priority=priority, markup_ratio=Decimal(markup)), **changes)


# --- rule_matches: each filter alone ---------------------------------------------------------------------


def test_rule_without_filters_matches_anything() -> None:
    assert rule_matches(rule(), STONE)
    assert rule_matches(rule(), stone(shape="PEAR", lab_grown=True, feed="other", carats=Decimal("9.99")))


def test_inactive_rule_never_matches() -> None:
    assert not rule_matches(rule(active=False), STONE)


def test_feed_filter() -> None:
    assert rule_matches(rule(feed="nivoda"), STONE)
    assert not rule_matches(rule(feed="other"), STONE)


def test_shapes_filter() -> None:
    assert rule_matches(rule(shapes=frozenset({"ROUND", "OVAL"})), STONE)
    assert not rule_matches(rule(shapes=frozenset({"OVAL"})), STONE)


@pytest.mark.parametrize("lab_grown", [True, False])
def test_lab_grown_filter(lab_grown: bool) -> None:
    assert rule_matches(rule(lab_grown=lab_grown), stone(lab_grown=lab_grown))
    assert not rule_matches(rule(lab_grown=lab_grown), stone(lab_grown=not lab_grown))


@pytest.mark.parametrize(
    ("carats", "matches"),
    [("0.499", False), ("0.500", True), ("0.75", True), ("0.999", True), ("1.000", False), ("1.5", False)],
)
def test_carat_range_is_min_inclusive_max_exclusive(carats: str, matches: bool) -> None:
    r = rule(carat_min=Decimal("0.50"), carat_max=Decimal("1.00"))
    assert rule_matches(r, stone(carats=Decimal(carats))) is matches


def test_carat_bounds_alone() -> None:
    assert rule_matches(rule(carat_min=Decimal("1.00")), stone(carats=Decimal("1.00")))
    assert not rule_matches(rule(carat_min=Decimal("1.01")), stone(carats=Decimal("1.00")))
    assert rule_matches(rule(carat_max=Decimal("1.01")), stone(carats=Decimal("1.00")))
    assert not rule_matches(rule(carat_max=Decimal("1.00")), stone(carats=Decimal("1.00")))


@pytest.mark.parametrize(
    ("price", "matches"),
    [("499.99", False), ("500.00", True), ("999.99", True), ("1000.00", False)],
)
def test_feed_price_range_is_min_inclusive_max_exclusive(price: str, matches: bool) -> None:
    r = rule(feed_price_min=Decimal("500"), feed_price_max=Decimal("1000"))
    assert rule_matches(r, stone(feed_price=Decimal(price))) is matches


def test_feed_price_bounds_alone() -> None:
    assert rule_matches(rule(feed_price_min=Decimal("1000.00")), STONE)
    assert not rule_matches(rule(feed_price_min=Decimal("1000.01")), STONE)
    assert rule_matches(rule(feed_price_max=Decimal("1000.01")), STONE)
    assert not rule_matches(rule(feed_price_max=Decimal("1000.00")), STONE)


def test_adjacent_ranges_never_both_match() -> None:
    low = rule(1, carat_min=Decimal("0.5"), carat_max=Decimal("1.0"))
    high = rule(2, carat_min=Decimal("1.0"), carat_max=Decimal("2.0"))
    for carats in ("0.5", "0.999", "1.0", "1.999"):
        d = stone(carats=Decimal(carats))
        assert rule_matches(low, d) != rule_matches(high, d)


def test_all_filters_must_hold() -> None:
    r = rule(feed="nivoda", shapes=frozenset({"ROUND"}), lab_grown=False, carat_min=Decimal("1"))
    assert rule_matches(r, STONE)
    assert not rule_matches(r, stone(lab_grown=True))
    assert not rule_matches(r, stone(shape="OVAL"))


# --- the engine ------------------------------------------------------------------------------------------


def test_lowest_priority_wins_whatever_the_input_order() -> None:
    rules = [rule(1, priority=30, markup="1.30"), rule(2, priority=10, markup="1.10"), rule(3, 20, "1.20")]
    priced = PricingEngine(rules).price(STONE)
    assert priced == PricedDiamond(STONE, Decimal("1100.00"), Decimal("1.10"), 2, None)
    assert [r.id for r in PricingEngine(rules).rules] == [2, 3, 1]


def test_first_match_wins_over_later_matches() -> None:
    rules = [
        rule(1, priority=10, markup="2.00", shapes=frozenset({"OVAL"})),
        rule(2, priority=20, markup="1.40", lab_grown=False, rating=4),
        rule(3, priority=30, markup="1.10"),
    ]
    priced = PricingEngine(rules).price(STONE)
    assert priced is not None
    assert (priced.pricing_rule_id, priced.price, priced.markup_ratio, priced.rating) == (
        2,
        Decimal("1400.00"),
        Decimal("1.40"),
        4,
    )


def test_equal_priorities_are_ordered_by_id() -> None:
    rules = [rule(7, priority=5, markup="1.70"), rule(3, priority=5, markup="1.30")]
    priced = PricingEngine(rules).price(STONE)
    assert priced is not None
    assert priced.pricing_rule_id == 3


def test_no_match_gives_none() -> None:
    engine = PricingEngine([rule(shapes=frozenset({"OVAL"})), rule(2, lab_grown=True)])
    assert engine.price(STONE) is None
    assert PricingEngine([]).price(STONE) is None


def test_inactive_rules_are_skipped() -> None:
    rules = [rule(1, priority=1, markup="9.00", active=False), rule(2, priority=2, markup="1.25")]
    engine = PricingEngine(rules)
    assert [r.id for r in engine.rules] == [2]
    priced = engine.price(STONE)
    assert priced is not None
    assert (priced.pricing_rule_id, priced.price) == (2, Decimal("1250.00"))


def test_engine_accepts_a_one_shot_iterable() -> None:
    engine = PricingEngine(r for r in [rule(1), rule(2)])
    assert engine.price(STONE) is not None
    assert engine.price(STONE) is not None


def test_default_rule_catches_everything_after_the_others() -> None:
    assert DEFAULT_RULE.priority == DEFAULT_RULE_PRIORITY == 1_000_000
    assert DEFAULT_RULE.markup_ratio == DEFAULT_MARKUP == Decimal("1.20")
    assert DEFAULT_RULE.name == "Default catch-all"
    assert validate_rule(DEFAULT_RULE) == []
    engine = PricingEngine([DEFAULT_RULE, rule(5, priority=100, shapes=frozenset({"OVAL"}))])
    oval = engine.price(stone(shape="OVAL"))
    assert oval is not None
    assert oval.pricing_rule_id == 5
    odd = stone(shape="TRILLION", lab_grown=True, feed="elsewhere", carats=Decimal("0.001"))
    priced = engine.price(replace(odd, feed_price=Decimal("0.01")))
    assert priced is not None
    assert (priced.pricing_rule_id, priced.price) == (DEFAULT_RULE.id, Decimal("0.01"))


@given(
    st.decimals(min_value=Decimal("0.001"), max_value=Decimal("9999.999"), places=3),
    st.decimals(min_value=Decimal("0.01"), max_value=Decimal("9999999999.99"), places=2),
    st.booleans(),
    st.sampled_from(["ROUND", "OVAL", "PEAR", "CUSHION MODIFIED"]),
)
def test_default_rule_prices_any_stone(carats: Decimal, price: Decimal, lab_grown: bool, shape: str) -> None:
    d = stone(carats=carats, feed_price=price, lab_grown=lab_grown, shape=shape)
    priced = PricingEngine([DEFAULT_RULE]).price(d)
    assert priced is not None
    assert priced.price == round_cents(price * DEFAULT_MARKUP)
    assert priced.price.as_tuple().exponent == -2


# --- rounding --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("15.015", "15.02"),
        ("15.025", "15.03"),  # half-even would give 15.02
        ("15.0149", "15.01"),
        ("15.0150000001", "15.02"),
        ("15", "15.00"),
        ("0.005", "0.01"),
        ("0.004", "0.00"),
    ],
)
def test_round_cents_is_half_up(value: str, expected: str) -> None:
    rounded = round_cents(Decimal(value))
    assert rounded == Decimal(expected)
    assert str(rounded) == expected


def test_price_rounds_half_up_at_exactly_half_a_cent() -> None:
    priced = PricingEngine([rule(markup="1.5")]).price(stone(feed_price=Decimal("10.01")))
    assert priced is not None
    assert priced.price == Decimal("15.02")  # 10.01 x 1.5 = 15.015


def test_price_with_a_long_markup() -> None:
    priced = PricingEngine([rule(markup="1.123456")]).price(stone(feed_price=Decimal("9999999999.99")))
    assert priced is not None
    assert priced.price == Decimal("11234559999.99")  # 11234559999.98876544 rounded


# --- validate_rule ---------------------------------------------------------------------------------------


def test_a_sound_rule_has_no_problems() -> None:
    r = rule(
        shapes=frozenset({"ROUND", "CUSHION MODIFIED"}),
        carat_min=Decimal("0"),
        carat_max=Decimal("1"),
        feed_price_min=Decimal("0"),
        feed_price_max=Decimal("500"),
        priority=0,
    )
    assert validate_rule(r) == []


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"markup_ratio": Decimal("0")}, "markup_ratio"),
        ({"markup_ratio": Decimal("-1.2")}, "markup_ratio"),
        ({"markup_ratio": Decimal("NaN")}, "markup_ratio"),
        ({"carat_min": Decimal("1"), "carat_max": Decimal("1")}, "carat_min must be less than carat_max"),
        ({"carat_min": Decimal("2"), "carat_max": Decimal("1")}, "carat_min must be less than carat_max"),
        ({"feed_price_min": Decimal("5"), "feed_price_max": Decimal("5")}, "feed_price_min must be less"),
        ({"carat_min": Decimal("-0.1")}, "carat_min must not be negative"),
        ({"carat_max": Decimal("-1")}, "carat_max must not be negative"),
        ({"feed_price_min": Decimal("-1")}, "feed_price_min must not be negative"),
        ({"feed_price_max": Decimal("-1")}, "feed_price_max must not be negative"),
        ({"feed_price_max": Decimal("Infinity")}, "feed_price_max must be a finite number"),
        ({"shapes": frozenset()}, "shapes must not be empty"),
        ({"shapes": frozenset({"round"})}, "shapes must be written as stored"),
        ({"shapes": frozenset({""})}, "shapes must be written as stored"),
        ({"priority": -1}, "priority must be zero or more"),
    ],
)
def test_validate_rule_names_each_problem(changes: dict[str, Any], problem: str) -> None:
    problems = validate_rule(replace(rule(), **changes))
    assert len(problems) == 1, problems
    assert problem in problems[0]


def test_validate_rule_reports_every_problem() -> None:
    r = rule(priority=-5, markup="0", carat_min=Decimal("3"), carat_max=Decimal("1"), shapes=frozenset())
    assert len(validate_rule(r)) == 4
