"""DiamondQuery filters and orders, turned into plain predicates and sort keys over `Stone`s.

The GraphQL layer has already validated shapes and enum names; what is left here is meaning:
inclusive ranges, whole-dollar floors and the synonyms real clients use for grades.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opus.sandbox.generator import CLARITIES, COLORS, Stone

Check = Callable[[Stone], bool]
Bounds = tuple[float | None, float | None]

GRADE_SYNONYMS = {"IDEAL": "EX", "EX": "EX", "EXCELLENT": "EX", "VG": "VG", "VERY_GOOD": "VG",
                  "G": "GD", "GD": "GD", "GOOD": "GD", "F": "F", "FR": "F", "FAIR": "F",
                  "P": "P", "PR": "P", "POOR": "P"}
FLUORESCENCE_SYNONYMS = {"NON": "NON", "NONE": "NON", "FNT": "FNT", "FAINT": "FNT", "SLT": "FNT",
                         "SLIGHT": "FNT", "VSL": "FNT", "MED": "MED", "MEDIUM": "MED", "STG": "STG",
                         "STRONG": "STG", "VST": "VST", "VERY_STRONG": "VST"}
AVAILABILITY_SYNONYMS = {"AVAILABLE": "AVAILABLE", "ON HOLD": "ON HOLD", "ON_HOLD": "ON HOLD", "HOLD": "ON HOLD",
                         "SOLD": "SOLD", "MEMO": "MEMO"}
GRADE_RANK = {"EX": 0, "VG": 1, "GD": 2, "F": 3, "P": 4, None: 5}
CLARITY_RANK = {c: i for i, c in enumerate(CLARITIES)}
COLOR_RANK = {c: i for i, c in enumerate(COLORS)}
# float-valued range filters: (filter name, stone accessor)
FLOAT_RANGES: dict[str, Callable[[Stone], float]] = {
    "table_percentage": lambda s: s.table_pct,
    "depth_percentage": lambda s: s.depth_pct,
    "ratio": lambda s: s.length / s.width if s.width else 0.0,
    "length_mm": lambda s: s.length,
    "width_mm": lambda s: s.width,
    "depth_mm": lambda s: s.depth,
}
MEDIA_FLAGS: dict[str, Callable[[Stone], bool]] = {
    "has_image": lambda s: s.has_image,
    "has_video": lambda s: s.has_video,
    "has_v360": lambda s: s.has_v360,
}


class SandboxError(Exception):
    """A request the sandbox refuses; the GraphQL layer reports it in errors[]."""

    def __init__(self, message: str, code: str = "BAD_USER_INPUT") -> None:
        super().__init__(message)
        self.code = code


@dataclass
class CompiledQuery:
    """Predicates plus the ranges an index can answer (so the store scans a slice, not everything)."""

    checks: list[Check] = field(default_factory=list)
    ids: frozenset[str] | None = None
    ppc: tuple[int | None, int | None] | None = None
    dollars: tuple[int | None, int | None] | None = None

    def matches(self, stone: Stone) -> bool:
        return all(check(stone) for check in self.checks)


def parse_instant_ms(value: Any, name: str) -> int:
    """ISO-8601 date-time (or date) to epoch milliseconds; a naive value is taken as UTC."""
    if not isinstance(value, str):
        raise SandboxError(f"{name} must be an ISO-8601 date-time string")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise SandboxError(f"{name} is not an ISO-8601 date-time: {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _bounds(value: Any) -> tuple[Any, Any]:
    if not isinstance(value, Mapping):
        return None, None
    return value.get("from"), value.get("to")


def _in_range(get: Callable[[Stone], float], lo: float | None, hi: float | None) -> Check:
    def check(stone: Stone) -> bool:
        v = get(stone)
        return (lo is None or v >= lo) and (hi is None or v <= hi)
    return check


def _in_set(get: Callable[[Stone], Any], allowed: Iterable[Any]) -> Check:
    wanted = frozenset(allowed)
    return lambda stone: get(stone) in wanted


def _any_range(get: Callable[[Stone], float], ranges: list[Bounds]) -> Check:
    def check(stone: Stone) -> bool:
        v = get(stone)
        return any((lo is None or v >= lo) and (hi is None or v <= hi) for lo, hi in ranges)
    return check


def _int_range(out: CompiledQuery, q: Mapping[str, Any], name: str, get: Callable[[Stone], int]) -> None:
    if q.get(name) is None:
        return
    lo, hi = _bounds(q[name])
    out.checks.append(_in_range(get, lo, hi))
    if name == "dollar_per_carat":
        out.ppc = (lo, hi)
    else:
        out.dollars = (lo, hi)


def _list(q: Mapping[str, Any], name: str) -> list[Any] | None:
    """A list filter, or None when absent or empty (an empty list constrains nothing)."""
    values = [v for v in q.get(name) or () if v is not None]
    return values or None


def compile_query(q: Mapping[str, Any]) -> CompiledQuery:
    out = CompiledQuery()
    checks = out.checks
    if q.get("labgrown") is not None:
        labgrown = bool(q["labgrown"])
        checks.append(lambda s: s.labgrown is labgrown)
    if (shapes := _list(q, "shapes")) is not None:
        checks.append(_in_set(lambda s: s.shape, (v.strip().upper() for v in shapes)))
    if (sizes := _list(q, "sizes")) is not None:
        checks.append(_any_range(lambda s: s.carats, [_bounds(r) for r in sizes]))
    if (colors := _list(q, "color")) is not None:
        checks.append(_in_set(lambda s: s.color.upper(), colors))
    if (clarity := _list(q, "clarity")) is not None:
        checks.append(_in_set(lambda s: s.clarity, clarity))
    if (cut := _list(q, "cut")) is not None:
        checks.append(_in_set(lambda s: s.cut, (GRADE_SYNONYMS[v] for v in cut)))
    if (polish := _list(q, "polish")) is not None:
        checks.append(_in_set(lambda s: s.polish, (GRADE_SYNONYMS[v] for v in polish)))
    if (symmetry := _list(q, "symmetry")) is not None:
        checks.append(_in_set(lambda s: s.symmetry, (GRADE_SYNONYMS[v] for v in symmetry)))
    if (flo := _list(q, "flouresence")) is not None:
        checks.append(_in_set(lambda s: s.flo, (FLUORESCENCE_SYNONYMS[v] for v in flo)))
    for name, get_flag in MEDIA_FLAGS.items():
        if q.get(name) is not None:
            checks.append(_in_set(get_flag, [bool(q[name])]))
    _int_range(out, q, "dollar_value", lambda s: s.dollar_floor)
    _int_range(out, q, "dollar_per_carat", lambda s: s.ppc_floor)
    if q.get("updated") is not None:
        lo, hi = _bounds(q["updated"])
        checks.append(_in_range(lambda s: s.updated_ms,
                                None if lo is None else parse_instant_ms(lo, "updated.from"),
                                None if hi is None else parse_instant_ms(hi, "updated.to")))
    if (availability := _list(q, "availability")) is not None:
        checks.append(_in_set(lambda s: s.availability, (AVAILABILITY_SYNONYMS[v] for v in availability)))
    if q.get("excludeFairPoorCuts"):
        checks.append(lambda s: s.cut not in ("F", "P"))
    if q.get("hide_memo"):
        checks.append(lambda s: s.availability != "MEMO")
    if (labs := _list(q, "certificate_lab")) is not None:
        checks.append(_in_set(lambda s: s.lab, labs))
    if (numbers := _list(q, "certificate_numbers")) is not None:
        checks.append(_in_set(lambda s: s.cert_number, (str(n).strip() for n in numbers)))
    for name, get_float in FLOAT_RANGES.items():
        if q.get(name) is not None:
            checks.append(_in_range(get_float, *_bounds(q[name])))
    if (ids := _list(q, "ids")) is not None:
        out.ids = frozenset(str(i) for i in ids)
        checks.append(_in_set(lambda s: s.stone_id, out.ids))
    return out  # `luster` is accepted by the schema and deliberately ignored, as the spec allows


def sort_key(order_type: str) -> Callable[[Stone], Any]:
    """Sort key for an order type; every key ends in a unique value so paging is stable."""
    keys: dict[str, Callable[[Stone], Any]] = {
        "price": lambda s: (s.price_cents, s.stone_id),
        "price_per_carat": lambda s: (s.price_cents / s.ct100, s.stone_id),
        "size": lambda s: (s.ct100, s.stone_id),
        "discount": lambda s: (s.discount, s.stone_id),
        "color": lambda s: (COLOR_RANK.get(s.color, len(COLORS)), s.stone_id),
        "clarity": lambda s: (CLARITY_RANK[s.clarity], s.stone_id),
        "cut": lambda s: (GRADE_RANK[s.cut], s.stone_id),
    }
    # createdAt, none, insert, popular: the creation order, ties broken by stone id
    return keys.get(order_type, lambda s: (s.created_ms, s.stone_id))
