"""Stone search with keyset pagination.

Every page is `WHERE <filters> AND (sort_key, id) > (last_key, last_id) ORDER BY sort_key, id LIMIT n + 1`, which
an index on (sort_key, id) over the active stones answers by reading n + 1 entries, however deep the page.
Columns come from whitelists and are composed as identifiers; every value is a bound parameter.
The total is the planner's estimate unless an exact count is asked for: COUNT(*) reads every match. The
estimate is remembered per filter set for ESTIMATE_TTL_S (`ApiContext.estimates`): paging through one search, or
many clients asking the same one, costs one EXPLAIN, not one per page.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, LiteralString

from psycopg import sql

from opus.api.context import ApiContext
from opus.api.cursor import Cursor, decode_cursor, encode_cursor
from opus.api.errors import ApiError
from opus.api.schemas.diamonds import DIAMOND_FIELDS, SearchQuery, SortKey, SortOrder


def _decimal(text: str) -> Decimal:
    value = Decimal(text)
    if not value.is_finite():
        raise ValueError(text)
    return value


def _timestamp(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(text)
    return value


@dataclass(frozen=True, slots=True)
class _SortColumn:
    column: str
    parse: Callable[[str], Any]
    render: Callable[[Any], str]


SORT_COLUMNS: dict[SortKey, _SortColumn] = {
    SortKey.PRICE: _SortColumn("price", _decimal, str),
    SortKey.CARATS: _SortColumn("carats", _decimal, str),
    SortKey.PRICE_PER_CARAT: _SortColumn("price_per_carat", _decimal, str),
    SortKey.COLOR: _SortColumn("color_rank", int, str),
    SortKey.CLARITY: _SortColumn("clarity_rank", int, str),
    SortKey.UPDATED: _SortColumn("updated_at", _timestamp, lambda v: v.isoformat()),
}

# query field -> column, for "column = ANY(values)" filters
_LIST_FILTERS = {
    "shapes": "shape", "colors": "color", "clarities": "clarity", "cuts": "cut", "polish": "polish",
    "symmetry": "symmetry", "fluorescence": "fluorescence", "labs": "lab", "availability": "availability",
}
# query field -> (column, operator) for inclusive ranges
_RANGE_FILTERS: dict[str, tuple[str, LiteralString]] = {
    "carat_min": ("carats", ">="), "carat_max": ("carats", "<="),
    "price_min": ("price", ">="), "price_max": ("price", "<="),
    "feed_price_min": ("feed_price", ">="), "feed_price_max": ("feed_price", "<="),
}
_STATUS = {
    # Literal SQL, not a parameter: the partial keyset indexes (WHERE status = 'active') are only usable when
    # the planner can see the constant, including in the generic plans of prepared statements.
    "active": sql.SQL("status = 'active'"),
    "deleted": sql.SQL("status = 'deleted'"),
    "all": None,
}


@dataclass(frozen=True, slots=True)
class SearchResult:
    items: list[dict[str, Any]]
    next: str | None
    total_estimate: int
    total: int | None


def _conditions(q: SearchQuery) -> tuple[list[sql.Composable], dict[str, Any]]:
    # Unpriced stones (no rule matched) are not for sale; excluding them also keeps every sort key non-null,
    # which keyset comparisons need.
    conds: list[sql.Composable] = [sql.SQL("price IS NOT NULL")]
    params: dict[str, Any] = {}
    status = _STATUS[q.status]
    if status is not None:
        conds.append(status)
    for field, column in _LIST_FILTERS.items():
        values = getattr(q, field)
        if len(values) == 1:
            # Plain equality lets a (column, sort key, id) index deliver rows already in order.
            conds.append(sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(field)))
            params[field] = values[0]
        elif values:
            conds.append(sql.SQL("{} = ANY({})").format(sql.Identifier(column), sql.Placeholder(field)))
            params[field] = list(values)
    for field, (column, op) in _RANGE_FILTERS.items():
        value = getattr(q, field)
        if value is not None:
            conds.append(sql.SQL("{} {} {}").format(sql.Identifier(column), sql.SQL(op), sql.Placeholder(field)))
            params[field] = value
    if q.lab_grown is not None:
        conds.append(sql.SQL("lab_grown = {}").format(sql.Placeholder("lab_grown")))
        params["lab_grown"] = q.lab_grown
    if q.feed is not None:
        conds.append(sql.SQL("feed = {}").format(sql.Placeholder("feed")))
        params["feed"] = q.feed
    return conds, params


def _where(conds: list[sql.Composable]) -> sql.Composed:
    return sql.SQL(" AND ").join(conds)


def page_query(
    q: SearchQuery, after: tuple[Any, int] | None
) -> tuple[sql.Composed, sql.Composed, dict[str, Any]]:
    """(page query, filter condition alone, parameters) for one page that starts after `after`."""
    sort = SORT_COLUMNS[q.sort]
    column = sql.Identifier(sort.column)
    descending = q.order == SortOrder.DESC
    conds, params = _conditions(q)
    page_conds = list(conds)
    if after is not None:
        params["after_key"], params["after_id"] = after
        page_conds.append(sql.SQL("({}, id) {} ({}, {})").format(
            column, sql.SQL("<" if descending else ">"), sql.Placeholder("after_key"), sql.Placeholder("after_id")))
    direction = sql.SQL("DESC" if descending else "ASC")
    params["limit"] = q.limit + 1
    fields = [*DIAMOND_FIELDS, *([] if sort.column in DIAMOND_FIELDS else [sort.column])]
    query = sql.SQL("SELECT {fields} FROM diamonds WHERE {where} ORDER BY {col} {dir}, id {dir} LIMIT {limit}").format(
        fields=sql.SQL(", ").join(map(sql.Identifier, fields)), where=_where(page_conds), col=column,
        dir=direction, limit=sql.Placeholder("limit"),
    )
    return query, _where(conds), params


def _after(ctx: ApiContext, q: SearchQuery) -> tuple[Any, int] | None:
    if q.next is None:
        return None
    cursor = decode_cursor(ctx.cursor_key(), q.next, sort=q.sort.value, order=q.order.value)
    try:
        return SORT_COLUMNS[q.sort].parse(cursor.key), cursor.id
    except (ValueError, InvalidOperation):
        raise ApiError(400, "the `next` cursor is not valid", code="invalid_cursor") from None


def search(ctx: ApiContext, q: SearchQuery) -> SearchResult:
    sort = SORT_COLUMNS[q.sort]
    query, filters, params = page_query(q, _after(ctx, q))
    estimate_key = _estimate_key(filters, params)
    with ctx.db.connection() as conn:
        rows = conn.execute(query, params).fetchall()
        estimate = ctx.estimates.get(estimate_key, ctx.now().timestamp())
        if estimate is None:
            estimate = _estimate(conn, filters, params)
            ctx.estimates.put(estimate_key, estimate, ctx.now().timestamp())
        total = None
        if q.count == "exact":
            count = conn.execute(sql.SQL("SELECT count(*) AS n FROM diamonds WHERE {}").format(filters), params)
            total = int(count.fetchone()["n"])  # type: ignore[index]
    next_cursor = None
    if len(rows) > q.limit:
        rows = rows[: q.limit]
        last = rows[-1]
        next_cursor = encode_cursor(ctx.cursor_key(), Cursor(
            q.sort.value, q.order.value, sort.render(last[sort.column]), int(last["id"])))
    return SearchResult(rows, next_cursor, estimate, total)


_PAGE_PARAMS = ("limit", "after_key", "after_id")


def _estimate_key(filters: sql.Composed, params: dict[str, Any]) -> str:
    """One key per filter set: the filter SQL and its values, without what only moves the page."""
    used = sorted((k, repr(v)) for k, v in params.items() if k not in _PAGE_PARAMS)
    return repr(filters) + repr(used)


def _estimate(conn: Any, filters: sql.Composed, params: dict[str, Any]) -> int:
    plan_query = sql.SQL("EXPLAIN (FORMAT JSON) SELECT 1 FROM diamonds WHERE {}").format(filters)
    used = {k: v for k, v in params.items() if k not in _PAGE_PARAMS}
    row = conn.execute(plan_query, used).fetchone()
    plan = next(iter(row.values()))
    if isinstance(plan, str):
        plan = json.loads(plan)
    return max(0, int(plan[0]["Plan"]["Plan Rows"]))
