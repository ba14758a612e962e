"""The indexed PricingEngine gives exactly what trying every rule in (priority, id) order gives."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from opus.domain.models import CENT, Diamond, PricedDiamond, PricingRule
from opus.domain.pricing import PricingEngine

FEEDS = ["nivoda", "other", "third"]
SHAPES = ["ROUND", "OVAL", "PEAR", "CUSHION MODIFIED", "HEART"]
# Few distinct values, so that stones land on bounds and rules overlap and share bounds.
CARATS = [Decimal(x) for x in ("0.30", "0.5", "0.50", "0.7", "1", "1.00", "1.5", "2", "3.000")]
PRICES = [Decimal(x) for x in ("300", "500.00", "999.99", "1000", "2500", "10000.50")]


def reference_price(rules: list[PricingRule], d: Diamond) -> PricedDiamond | None:
    """The engine as specified: every active rule in (priority, id) order, the first match wins."""
    for r in sorted((r for r in rules if r.active), key=lambda r: (r.priority, r.id)):
        if (
            (r.feed is None or r.feed == d.feed)
            and (r.shapes is None or d.shape in r.shapes)
            and (r.lab_grown is None or r.lab_grown == d.lab_grown)
            and (r.carat_min is None or r.carat_min <= d.carats)
            and (r.carat_max is None or d.carats < r.carat_max)
            and (r.feed_price_min is None or r.feed_price_min <= d.feed_price)
            and (r.feed_price_max is None or d.feed_price < r.feed_price_max)
        ):
            price = (d.feed_price * r.markup_ratio).quantize(CENT, rounding=ROUND_HALF_UP)
            return PricedDiamond(d, price, r.markup_ratio, r.id, r.rating)
    return None


def maybe(strategy: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.one_of(st.none(), strategy)


def bound_pair(values: list[Decimal]) -> st.SearchStrategy[tuple[Decimal | None, Decimal | None]]:
    # Any of: no bound, one bound, two bounds; even min >= max (an empty range, which the API refuses but
    # the engine must still treat as the reference does).
    return st.tuples(maybe(st.sampled_from(values)), maybe(st.sampled_from(values)))  # type: ignore[return-value]


@st.composite
def rules(draw: st.DrawFn, rule_id: int) -> PricingRule:
    carat_min, carat_max = draw(bound_pair(CARATS))
    price_min, price_max = draw(bound_pair(PRICES))
    shapes = draw(maybe(st.frozensets(st.sampled_from([*SHAPES, "TRILLIANT"]), min_size=1, max_size=3)))
    return PricingRule(
        id=rule_id,
        priority=draw(st.integers(0, 5)),  # ties are common: then the lower id wins
        markup_ratio=draw(st.decimals(Decimal("0.5"), Decimal("3"), places=draw(st.integers(0, 6)))),
        feed=draw(maybe(st.sampled_from([*FEEDS, "never-seen"]))),  # type: ignore[arg-type]
        shapes=shapes,  # type: ignore[arg-type]
        carat_min=carat_min,
        carat_max=carat_max,
        lab_grown=draw(maybe(st.booleans())),  # type: ignore[arg-type]
        feed_price_min=price_min,
        feed_price_max=price_max,
        rating=draw(maybe(st.integers(1, 5))),  # type: ignore[arg-type]
        active=draw(st.booleans()) or draw(st.booleans()),
    )


@st.composite
def rule_sets(draw: st.DrawFn) -> list[PricingRule]:
    ids = draw(st.lists(st.integers(0, 1000), max_size=25, unique=True))
    return [draw(rules(rule_id)) for rule_id in ids]


stones = st.builds(
    Diamond,
    feed=st.sampled_from([*FEEDS, "unknown-feed"]),
    supplier_stone_id=st.just("S-1"),
    offer_id=st.just("O-1"),
    shape=st.sampled_from([*SHAPES, "PRINCESS"]),
    carats=st.one_of(st.sampled_from(CARATS), st.decimals(Decimal("0.001"), Decimal("20"), places=3)),
    lab_grown=st.booleans(),
    feed_price=st.one_of(st.sampled_from(PRICES), st.decimals(Decimal("0.01"), Decimal("99999999.99"), places=2)),
)


@settings(max_examples=400)
@given(rule_sets(), st.lists(stones, min_size=1, max_size=30))
def test_indexed_engine_prices_like_the_reference(rule_set: list[PricingRule], sample: list[Diamond]) -> None:
    engine = PricingEngine(rule_set)
    for d in sample:
        expected = reference_price(rule_set, d)
        assert engine.price(d) == expected
        rule = engine.rule_for(d)
        assert (rule.id if rule else None) == (expected.pricing_rule_id if expected else None)


def test_a_rule_without_ranges_hides_the_rules_after_it_only_for_its_stones() -> None:
    broad = PricingRule(id=1, priority=1, markup_ratio=Decimal("1.1"), shapes=frozenset({"ROUND"}))
    later = PricingRule(id=2, priority=2, markup_ratio=Decimal("1.2"), carat_min=Decimal("1"))
    engine = PricingEngine([later, broad])
    base = Diamond("nivoda", "S", "O", "ROUND", Decimal("1.5"), False, Decimal("100"))
    priced_round = engine.price(base)
    priced_oval = engine.price(Diamond("nivoda", "S", "O", "OVAL", Decimal("1.5"), False, Decimal("100")))
    assert priced_round is not None
    assert priced_oval is not None
    assert (priced_round.pricing_rule_id, priced_oval.pricing_rule_id) == (1, 2)


def test_carat_bounds_written_with_different_exponents_are_one_bound() -> None:
    below = PricingRule(id=1, priority=1, markup_ratio=Decimal("1.1"), carat_max=Decimal("1.0"))
    above = PricingRule(id=2, priority=2, markup_ratio=Decimal("1.2"), carat_min=Decimal("1.00"))
    engine = PricingEngine([below, above])
    at_bound = engine.rule_for(Diamond("nivoda", "S", "O", "ROUND", Decimal("1"), False, Decimal("100")))
    just_below = engine.rule_for(Diamond("nivoda", "S", "O", "ROUND", Decimal("0.999"), False, Decimal("100")))
    assert (at_bound and at_bound.id, just_below and just_below.id) == (2, 1)
