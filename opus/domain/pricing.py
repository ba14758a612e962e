"""Price diamonds with database-driven rules: tried in ascending (priority, id), the first match wins.

A rule's None fields match anything. Bounds are half-open, `min <= value < max`, so that adjacent rules such
as [0.5, 1.0) and [1.0, 2.0) never both match. The selling price is `round_cents(feed_price * markup_ratio)`.
"""

from __future__ import annotations

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
    return value.quantize(CENT, rounding=ROUND_HALF_UP, context=_CTX)


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
    """Prices diamonds with a fixed set of rules, ordered once at construction."""

    def __init__(self, rules: Iterable[PricingRule]) -> None:
        self._rules: tuple[PricingRule, ...] = tuple(
            sorted((r for r in rules if r.active), key=lambda r: (r.priority, r.id))
        )

    @property
    def rules(self) -> tuple[PricingRule, ...]:
        """The active rules in the order they are tried."""
        return self._rules

    def rule_for(self, d: Diamond) -> PricingRule | None:
        for rule in self._rules:
            if rule_matches(rule, d):
                return rule
        return None

    def price(self, d: Diamond) -> PricedDiamond | None:
        """`d` priced by the first matching rule, or None when no rule matches."""
        rule = self.rule_for(d)
        if rule is None:
            return None
        return PricedDiamond(
            diamond=d,
            price=round_cents(_CTX.multiply(d.feed_price, rule.markup_ratio)),
            markup_ratio=rule.markup_ratio,
            pricing_rule_id=rule.id,
            rating=rule.rating,
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
