"""Which searches by price are answered from ranges of a search index, and which ranges.

A search such as "ROUND or OVAL, 0.9 to 2 carats, colours D to G, VS1 or VS2, natural, by price" has no single
index range in price order: walking the price index reads every cheaper stone and throws away all that do not
match (thousands per page, and most of all for a carat range, since small stones are the cheap ones). The search
indexes of migration 0009 start with columns a search fixes and end with (price, id), so each combination of
one value per leading column (natural, ROUND, D, VS1, 1.00-1.49 ct) is one range already in price order. The
page query takes the first page of each range and keeps the cheapest page of them (search.py): reading at most
a page per range from the index, and only the page's stones from the table, however deep the page.

An index serves a search only if the search fixes each of its leading columns, or the column has few values
that can all be listed: `lab_grown` (two) and the carat band (ten), so a search that does not filter them takes
them all. Filters an index does not lead with but INCLUDEs (the carats themselves, colour and clarity in the
shape-and-band index) are checked on the index entry, without reading the stone.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from decimal import Decimal
from itertools import product
from typing import Any

from psycopg import sql

from opus.api.schemas.diamonds import SearchQuery, SortKey

# The lower edge of each carat band after the first (migration 0009, `diamond_carat_band`).
CARAT_BAND_EDGES = tuple(Decimal(e) for e in ("0.30", "0.50", "0.70", "0.90", "1.00", "1.50", "2.00", "3.00", "5.00"))
BAND_EXPRESSION = sql.SQL("diamond_carat_band(carats)")
# Past this many ranges, descending the index once per range (a few shared buffers each) costs more than the
# rows it saves reading.
MAX_BRANCHES = 512


@dataclass(frozen=True, slots=True)
class Branches:
    """The query fields the ranges replace as filters, and one tuple of (label, SQL expression, value) per range."""

    fields: frozenset[str]
    ranges: list[tuple[tuple[str, sql.Composable, Any], ...]]


def carat_bands(low: Decimal | None, high: Decimal | None) -> list[int]:
    """The bands holding stones of `low` to `high` carats, both inclusive (None: unbounded)."""
    first = 0 if low is None else bisect.bisect_right(CARAT_BAND_EDGES, low)
    last = len(CARAT_BAND_EDGES) if high is None else bisect.bisect_right(CARAT_BAND_EDGES, high)
    return list(range(first, last + 1))


def _lab_grown(q: SearchQuery) -> list[bool]:
    return [False, True] if q.lab_grown is None else [q.lab_grown]


def _key(name: str, values: list[Any]) -> list[tuple[str, sql.Composable, Any]]:
    expression = BAND_EXPRESSION if name == "carat_band" else sql.Identifier(name)
    return [(name, expression, v) for v in values]


def _shape_band(q: SearchQuery) -> list[list[tuple[str, sql.Composable, Any]]]:
    bands = carat_bands(q.carat_min, q.carat_max)
    return [_key("lab_grown", _lab_grown(q)), _key("shape", q.shapes), _key("carat_band", bands)]


def _grades(q: SearchQuery) -> list[list[tuple[str, sql.Composable, Any]]]:
    bands = carat_bands(q.carat_min, q.carat_max)
    return [_key("lab_grown", _lab_grown(q)), _key("shape", q.shapes), _key("color", q.colors),
            _key("clarity", q.clarities), _key("carat_band", bands)]


_SHAPE_BAND = frozenset({"lab_grown", "shapes"})
_GRADES = frozenset({"lab_grown", "shapes", "colors", "clarities"})


def branches(q: SearchQuery) -> Branches | None:
    """The ranges of the search index that fixes the most of `q`'s filters in at most MAX_BRANCHES ranges;
    None when none fits, or the plain query does as well (one shape and nothing else: `diamonds_active_shape_price`
    is already in price order)."""
    if q.sort != SortKey.PRICE or q.status != "active" or not q.shapes:
        return None  # the search indexes are partial (active stones), ordered by price, and led by the shape
    ranged = q.carat_min is not None or q.carat_max is not None
    candidates = []
    if q.colors and q.clarities:
        candidates.append((_GRADES, _grades(q)))
    if ranged or len(q.shapes) > 1 or q.lab_grown is not None or q.colors or q.clarities:
        candidates.append((_SHAPE_BAND, _shape_band(q)))
    for fields, keys in candidates:
        count = 1
        for values in keys:
            count *= len(values)
        if count <= MAX_BRANCHES:
            return Branches(fields, [tuple(combination) for combination in product(*keys)])
    return None
