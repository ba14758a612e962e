"""Response bodies written with orjson straight from the database rows, for the routes where serialisation is
most of the Python work per request (a search page is 20 to 100 stones of 41 fields each).

The bytes are those pydantic would write for the route's response model (which stays on the route, so the
OpenAPI document is unchanged): Decimal as its string, UTC datetimes with `Z`, fields in the model's order.
tests/integration/test_api_diamonds.py holds the two to the same output.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from opus.api.schemas.diamonds import DIAMOND_FIELDS, SearchQuery
from opus.api.services.search import SearchResult

_OPTIONS = orjson.OPT_UTC_Z


def _default(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_bytes(content: Any) -> bytes:
    return orjson.dumps(content, default=_default, option=_OPTIONS)


def search_page(result: SearchResult, q: SearchQuery) -> bytes:
    """The `SearchPage` of `result`. Rows carry the sort column too when it is not a public field (the grade
    ranks): only then are they rebuilt without it."""
    items = result.items
    if items and len(items[0]) != len(DIAMOND_FIELDS):
        items = [{name: row[name] for name in DIAMOND_FIELDS} for row in items]
    return json_bytes({
        "items": items, "next": result.next, "limit": q.limit, "sort": q.sort.value, "order": q.order.value,
        "total_estimate": result.total_estimate, "total": result.total,
    })
