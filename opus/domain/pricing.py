"""Price diamonds with database-driven rules: tried in ascending (priority, id), the first match wins.

A rule's None fields match anything. Bounds are half-open, `min <= value < max`, so that adjacent rules such
as [0.5, 1.0) and [1.0, 2.0) never both match. The selling price is `round_cents(feed_price * markup_ratio)`.
"""

from __future__ import annotations

import itertools
from bisect import bisect_right
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Final

from opus.domain.models import CENT, Diamond, PricedDiamond, PricingRule

# The catch-all rule that the database seeds: it matches every stone, after every other rule.
DEFAULT_RULE_ID: Final = 0
DEFAULT_RULE_PRIORITY: Final = 1_000_000
DEFAULT_MARKUP: Final = Decimal("1.20")
DEFAULT_RULE_NAME: Final = "Default catch-all"
DEFAULT_RULE: Final = PricingRule(
    id=DEFAULT_RULE_ID,
    priority=DEFAULT_RULE_PRIORITY,
    markup_ratio=DEFAULT_MARKUP,
    name=DEFAULT_RULE_NAME,
)

# Independent of the caller's decimal context; precision far above numeric(12, 2) times any sane markup.
_CTX: Final = Context(prec=34, rounding=ROUND_HALF_UP)


def round_cents(value: Decimal) -> Decimal:
    """Round to whole cents, halves away from zero (15.015 -> 15.02).

    Half-up is the common commercial rule and what a merchant checks by hand; banker's rounding (Decimal's
    default, half-even) would turn 15.025 into 15.02 and surprise them.
    """
    # The context's own quantize (rounding half-up) is the same operation as `value.quantize(CENT,
    # rounding=ROUND_HALF_UP, context=_CTX)` at less than half the cost: no keyword arguments to parse.
    return _CTX.quantize(value, CENT)


def rule_matches(rule: PricingRule, d: Diamond) -> bool:
    """Whether `rule` applies to `d`; an inactive rule never does."""
    if not rule.active:
        return False
    if rule.feed is not None and rule.feed != d.feed:
        return False
    if rule.shapes is not None and d.shape not in rule.shapes:
        return False
    if rule.lab_grown is not None and rule.lab_grown != d.lab_grown:
        return False
    return _within(d.carats, rule.carat_min, rule.carat_max) and _within(
        d.feed_price, rule.feed_price_min, rule.feed_price_max
    )


def _within(value: Decimal, low: Decimal | None, high: Decimal | None) -> bool:
    return (low is None or low <= value) and (high is None or value < high)


class PricingEngine:
    """Prices diamonds with a fixed set of rules, ordered and indexed once at construction.

    The result is always that of trying every active rule in (priority, id) order and taking the first that
    matches (`rule_matches`); the index only spares the rules that cannot match. See `CandidateIndex`.
    """

    def __init__(self, rules: Iterable[PricingRule]) -> None:
        self._rules: tuple[PricingRule, ...] = tuple(
            sorted((r for r in rules if r.active), key=lambda r: (r.priority, r.id))
        )
        self._index = CandidateIndex(self._rules)

    @property
    def rules(self) -> tuple[PricingRule, ...]:
        """The active rules in the order they are tried."""
        return self._rules

    def rule_for(self, d: Diamond) -> PricingRule | None:
        feed_price = d.feed_price
        for low, high, rule in self._index.candidates(d):
            if (low is None or low <= feed_price) and (high is None or feed_price < high):
                return rule
        return None

    def price(self, d: Diamond) -> PricedDiamond | None:
        """`d` priced by the first matching rule, or None when no rule matches."""
        # The loop of `rule_for` and the body of `round_cents`, written out: once matching is a lookup and a
        # comparison or two, each extra call costs a tenth of the whole (bench/pricing.py).
        feed_price = d.feed_price
        for low, high, rule in self._index.candidates(d):
            if (low is None or low <= feed_price) and (high is None or feed_price < high):
                markup = rule.markup_ratio
                price = _CTX.quantize(_CTX.multiply(feed_price, markup), CENT)
                return PricedDiamond(d, price, markup, rule.id, rule.rating)
        return None


# A rule as the engine tests it once everything but the feed price is settled: (feed_price_min, feed_price_max,
# rule). A plain tuple, because unpacking one in the loop is the cheapest way to read its fields.
Candidate = tuple[Decimal | None, Decimal | None, PricingRule]
# Candidates per carat interval: entry i is for the stones with `bounds[i - 1] <= carats < bounds[i]`.
ByCarat = tuple[tuple[Candidate, ...], ...]


class CandidateIndex:
    """For each (lab_grown, feed, shape, carat interval), the rules that such a stone meets but for its price.

    A rule's None field matches every value, so a feed (or shape) that no rule names sees exactly the rules
    that leave it open: one "any other" entry per level stands for every such value. The carat bounds of all
    rules cut the carat axis into intervals on each of which every rule's carat range holds throughout or not
    at all, so `bisect` settles the carat condition of every rule at once. What is left to test per stone is
    the feed price range of a few candidates. A list ends at its first rule without a price range: it matches
    every stone that gets that far, so nothing after it is ever reached.

    Built at construction: 2 x (feeds + 1) x (shapes + 1) x (carat bounds + 1) short lists, for the values the
    rules name (tens of rules make a few thousand lists, shared where equal).
    """

    def __init__(self, ordered_rules: tuple[PricingRule, ...]) -> None:
        feeds = sorted({r.feed for r in ordered_rules if r.feed is not None})
        shapes = sorted({s for r in ordered_rules if r.shapes is not None for s in r.shapes})
        self._carat_bounds: list[Decimal] = sorted(
            {b for r in ordered_rules for b in (r.carat_min, r.carat_max) if b is not None}
        )
        build = _LevelBuilder(ordered_rules, self._carat_bounds)
        self._by_lab: dict[bool, _FeedLevel] = {
            lab_grown: _FeedLevel(
                named={feed: build.shape_level(lab_grown, feed, shapes) for feed in feeds},
                other=build.shape_level(lab_grown, None, shapes),
            )
            for lab_grown in (False, True)
        }

    def candidates(self, d: Diamond) -> tuple[Candidate, ...]:
        by_feed = self._by_lab[d.lab_grown]
        by_shape = by_feed.named.get(d.feed, by_feed.other)
        by_carat = by_shape.named.get(d.shape, by_shape.other)
        return by_carat[bisect_right(self._carat_bounds, d.carats)]


class _ShapeLevel:
    __slots__ = ("named", "other")

    def __init__(self, named: dict[str, ByCarat], other: ByCarat) -> None:
        self.named = named
        self.other = other


class _FeedLevel:
    __slots__ = ("named", "other")

    def __init__(self, named: dict[str, _ShapeLevel], other: _ShapeLevel) -> None:
        self.named = named
        self.other = other


class _LevelBuilder:
    """Builds the index's lists; `None` for a feed or a shape stands for any value that no rule names."""

    def __init__(self, rules: tuple[PricingRule, ...], carat_bounds: list[Decimal]) -> None:
        self._rules = rules
        # (lower edge, upper edge) of each carat interval; None is unbounded.
        edges: list[Decimal | None] = [None, *carat_bounds, None]
        self._intervals = list(itertools.pairwise(edges))
        self._shared: dict[tuple[Candidate, ...], tuple[Candidate, ...]] = {}

    def shape_level(self, lab_grown: bool, feed: str | None, shapes: list[str]) -> _ShapeLevel:
        return _ShapeLevel(
            named={shape: self._by_carat(lab_grown, feed, shape) for shape in shapes},
            other=self._by_carat(lab_grown, feed, None),
        )

    def _by_carat(self, lab_grown: bool, feed: str | None, shape: str | None) -> ByCarat:
        rules = [
            r for r in self._rules
            if (r.lab_grown is None or r.lab_grown == lab_grown)
            and (r.feed is None or r.feed == feed)
            and (r.shapes is None or shape in r.shapes)
        ]
        return tuple(self._candidates(rules, low, high) for low, high in self._intervals)

    def _candidates(
        self, rules: list[PricingRule], low: Decimal | None, high: Decimal | None
    ) -> tuple[Candidate, ...]:
        out: list[Candidate] = []
        for r in rules:
            if not _covers(r.carat_min, r.carat_max, low, high):
                continue
            out.append((r.feed_price_min, r.feed_price_max, r))
            if r.feed_price_min is None and r.feed_price_max is None:
                break
        key = tuple(out)
        return self._shared.setdefault(key, key)


def _covers(rule_min: Decimal | None, rule_max: Decimal | None, low: Decimal | None, high: Decimal | None) -> bool:
    """Whether `rule_min <= c < rule_max` holds for every c of the interval [low, high) (None: unbounded).

    Every rule bound is an interval edge, so the range holds on all of the interval or on none of it.
    """
    return (rule_min is None or (low is not None and rule_min <= low)) and (
        rule_max is None or (high is not None and high <= rule_max)
    )


def validate_rule(rule: PricingRule) -> list[str]:
    """Human-readable problems with `rule`; an empty list means it can be stored."""
    problems: list[str] = []
    if rule.priority < 0:
        problems.append("priority must be zero or more")
    if not rule.markup_ratio.is_finite() or rule.markup_ratio <= 0:
        problems.append("markup_ratio must be a number greater than zero")
    for name, low, high in (
        ("carat", rule.carat_min, rule.carat_max),
        ("feed_price", rule.feed_price_min, rule.feed_price_max),
    ):
        problems.extend(_bound_problems(name, low, high))
    if rule.shapes is not None:
        if not rule.shapes:
            problems.append("shapes must not be empty when given (leave it out to match every shape)")
        elif any(not s or s != " ".join(s.split()).upper() for s in rule.shapes):
            problems.append("shapes must be written as stored: upper case, trimmed (e.g. ROUND)")
    return problems


def _bound_problems(name: str, low: Decimal | None, high: Decimal | None) -> list[str]:
    problems: list[str] = []
    finite = True
    for suffix, bound in (("min", low), ("max", high)):
        if bound is None:
            continue
        if not bound.is_finite():
            problems.append(f"{name}_{suffix} must be a finite number")
            finite = False
        elif bound < 0:
            problems.append(f"{name}_{suffix} must not be negative")
    if finite and low is not None and high is not None and not low < high:
        problems.append(f"{name}_min must be less than {name}_max (the range is min <= value < max)")
    return problems
