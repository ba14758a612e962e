"""Stone search with keyset pagination.

Every page is `WHERE <filters> AND (sort_key, id) > (last_key, last_id) ORDER BY sort_key, id LIMIT n + 1`, which
an index on (sort_key, id) over the active stones answers by reading n + 1 entries, however deep the page.
Columns come from whitelists and are composed as identifiers; every value is a bound parameter.
The total is the planner's estimate unless an exact count is asked for: COUNT(*) reads every match. The
estimate is remembered per filter set for ESTIMATE_TTL_S (`ApiContext.estimates`): paging through one search, or
many clients asking the same one, costs one EXPLAIN, not one per page.

A search by price that fixes the shapes and more (lab-grown, carats, colours, clarities) would walk the price index
and discard every stone that does not match; it is answered instead from the ranges of a search index, one per
combination of fixed values (search_branches.py, `_keyed_from`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, LiteralString

from psycopg import sql
from psycopg.types.string import TextLoader

from opus.api.context import ApiContext
from opus.api.cursor import Cursor, decode_cursor, encode_cursor
from opus.api.errors import ApiError
from opus.api.schemas.diamonds import DIAMOND_FIELDS, SearchQuery, SortKey, SortOrder
from opus.api.services.search_branches import Branches, branches
from opus.db.pool import AsyncReads


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


def _field_list(column: str) -> sql.SQL:
    # The same for every request: quoted once here rather than composed identifier by identifier per request
    # (which was a tenth of a search's Python time). The names are the schema's own, plain lower-case words.
    names = [*DIAMOND_FIELDS, *([] if column in DIAMOND_FIELDS else [column])]
    return sql.SQL(", ".join(f'"{name}"' for name in names))


_FIELDS = {key: _field_list(sort.column) for key, sort in SORT_COLUMNS.items()}


# Parameters that only move or size the page, and those of the index ranges: the filter set (and so its
# estimate) is the same without them.
_PAGE_PARAMS = ("limit", "after_key", "after_id")
_MERGE_PREFIX = "m_"


@dataclass(frozen=True, slots=True)
class SearchResult:
    items: list[dict[str, Any]]
    next: str | None
    total_estimate: int
    total: int | None


def _conditions(q: SearchQuery, merged: frozenset[str] = frozenset()) -> tuple[list[sql.Composable], dict[str, Any]]:
    """The filters of `q` as conditions and parameters, leaving out the query fields in `merged` (which the
    ranges of a merged page query filter instead)."""
    # Unpriced stones (no rule matched) are not for sale; excluding them also keeps every sort key non-null,
    # which keyset comparisons need.
    conds: list[sql.Composable] = [sql.SQL("price IS NOT NULL")]
    params: dict[str, Any] = {}
    status = _STATUS[q.status]
    if status is not None:
        conds.append(status)
    for field, column in _LIST_FILTERS.items():
        values = getattr(q, field)
        if field in merged:
            continue
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
    if q.lab_grown is not None and "lab_grown" not in merged:
        conds.append(sql.SQL("lab_grown = {}").format(sql.Placeholder("lab_grown")))
        params["lab_grown"] = q.lab_grown
    if q.feed is not None:
        conds.append(sql.SQL("feed = {}").format(sql.Placeholder("feed")))
        params["feed"] = q.feed
    return conds, params


def _where(conds: list[sql.Composable]) -> sql.Composed:
    return sql.SQL(" AND ").join(conds)


def _keyset(column: sql.Identifier, descending: bool) -> sql.Composed:
    return sql.SQL("({}, id) {} ({}, {})").format(
        column, sql.SQL("<" if descending else ">"), sql.Placeholder("after_key"), sql.Placeholder("after_id"))


_KEY_TYPES = {"lab_grown": sql.SQL("boolean[]"), "carat_band": sql.SQL("smallint[]")}


def _keyed_from(keys: Branches, page_conds: list[sql.Composable], column: sql.Identifier,
                direction: sql.Composable, params: dict[str, Any]) -> sql.Composed:
    """`diamonds JOIN (<the page's (key, id) pairs>) AS page ...`: for each combination of fixed values (one row
    of the arrays, unnested together), the first page of that index range, by a lateral subquery; of those, the
    page. One statement text for any number of combinations, so planning costs the same for 2 as for 500 (a
    UNION of one branch per combination was planned branch by branch). The lateral subqueries select only the
    sort key and the id, columns of the search index, so where every filter is too (INCLUDE) they read the index
    alone; the stones themselves are read once, for the page."""
    labels = [label for label, _, _ in keys.ranges[0]]
    expressions = [expression for _, expression, _ in keys.ranges[0]]
    arrays = []
    for index, label in enumerate(labels):
        name = f"{_MERGE_PREFIX}{label}"
        params[name] = [combination[index][2] for combination in keys.ranges]
        arrays.append(sql.SQL("{}::{}").format(sql.Placeholder(name), _KEY_TYPES.get(label, sql.SQL("text[]"))))
    fixed = [sql.SQL("{} = k.{}").format(expression, sql.Identifier(f"k_{label}"))
             for label, expression in zip(labels, expressions, strict=True)]
    limit = sql.Placeholder("limit")
    return sql.SQL(
        "diamonds JOIN (SELECT t.{col} AS page_key, t.id AS page_id"
        " FROM unnest({arrays}) AS k({names})"
        " CROSS JOIN LATERAL (SELECT {col}, id FROM diamonds WHERE {where} ORDER BY {col} {dir}, id {dir}"
        " LIMIT {limit}) AS t"
        " ORDER BY t.{col} {dir}, t.id {dir} LIMIT {limit}) AS page ON diamonds.id = page.page_id"
    ).format(
        col=column, arrays=sql.SQL(", ").join(arrays),
        names=sql.SQL(", ").join(sql.Identifier(f"k_{label}") for label in labels),
        where=_where([*page_conds, *fixed]), dir=direction, limit=limit,
    )


def page_query(
    q: SearchQuery, after: tuple[Any, int] | None, *, merge: bool = True
) -> tuple[sql.Composed, sql.Composed, dict[str, Any]]:
    """(page query, filter condition alone, parameters) for one page that starts after `after`. `merge=False`
    gives the plain query (one WHERE over the table) even where the ranges of a search index could answer it."""
    sort = SORT_COLUMNS[q.sort]
    column = sql.Identifier(sort.column)
    descending = q.order == SortOrder.DESC
    conds, params = _conditions(q)
    ranges = branches(q) if merge else None
    page_conds = list(conds) if ranges is None else _conditions(q, ranges.fields)[0]
    if after is not None:
        params["after_key"], params["after_id"] = after
        page_conds.append(_keyset(column, descending))
    direction = sql.SQL("DESC" if descending else "ASC")
    params["limit"] = q.limit + 1
    fields = _FIELDS[q.sort]
    if ranges is None:
        query = sql.SQL(
            "SELECT {fields} FROM diamonds WHERE {where} ORDER BY {col} {dir}, id {dir} LIMIT {limit}"
        ).format(fields=fields, where=_where(page_conds), col=column, dir=direction, limit=sql.Placeholder("limit"))
    else:
        query = sql.SQL("SELECT {fields} FROM {source} ORDER BY page.page_key {dir}, page.page_id {dir}").format(
            fields=fields, source=_keyed_from(ranges, page_conds, column, direction, params), dir=direction)
    return query, _where(conds), params


def _after(ctx: ApiContext, q: SearchQuery) -> tuple[Any, int] | None:
    if q.next is None:
        return None
    cursor = decode_cursor(ctx.cursor_key(), q.next, sort=q.sort.value, order=q.order.value)
    try:
        return SORT_COLUMNS[q.sort].parse(cursor.key), cursor.id
    except (ValueError, InvalidOperation):
        raise ApiError(400, "the `next` cursor is not valid", code="invalid_cursor") from None


def page_statement(ctx: ApiContext, q: SearchQuery) -> tuple[sql.Composed, sql.Composed, dict[str, Any]]:
    """The page query of a search request (its `next` cursor checked), the filter alone, and the parameters."""
    return page_query(q, _after(ctx, q))


@dataclass(frozen=True, slots=True)
class _Statements:
    """What one search request runs: the page, and the estimate and the exact count when they are needed."""

    q: SearchQuery
    page: sql.Composed
    params: dict[str, Any]
    filter_params: dict[str, Any]
    estimate_key: str
    estimate: int | None  # remembered from an earlier request with the same filters, else planned now
    plan: sql.Composed | None  # the estimate's EXPLAIN, when it is not remembered
    count: sql.Composed | None  # with count=exact


def _statements(ctx: ApiContext, q: SearchQuery) -> _Statements:
    query, filters, params = page_statement(ctx, q)
    filter_params = _filter_params(params)
    estimate_key = _estimate_key(filters, filter_params)
    estimate = ctx.estimates.get(estimate_key, ctx.now().timestamp())
    return _Statements(
        q, query, params, filter_params, estimate_key, estimate,
        plan=_plan_query(filters) if estimate is None else None,
        count=sql.SQL("SELECT count(*) AS n FROM diamonds WHERE {}").format(filters) if q.count == "exact" else None,
    )


def _result(ctx: ApiContext, run: _Statements, rows: list[dict[str, Any]], plan: Any, count: Any) -> SearchResult:
    """The page from the rows (one more than the page when there is a next one) and the other answers."""
    q, sort, estimate = run.q, SORT_COLUMNS[run.q.sort], run.estimate
    if estimate is None:
        estimate = _planned_rows(plan)
        ctx.estimates.put(run.estimate_key, estimate, ctx.now().timestamp())
    next_cursor = None
    if len(rows) > q.limit:
        rows = rows[: q.limit]
        last = rows[-1]
        next_cursor = encode_cursor(ctx.cursor_key(), Cursor(
            q.sort.value, q.order.value, sort.render(last[sort.column]), int(last["id"])))
    return SearchResult(rows, next_cursor, estimate, None if count is None else int(count["n"]))


# Numbers stay the text PostgreSQL sends: the page is written as JSON at once, where a Decimal would only be turned
# back into the same string (every numeric column has a scale of at most 4, so str(Decimal(text)) is the text).
# Reads run outside a transaction (no COMMIT to wait for). The page, the estimate when it is not remembered and the
# exact count when asked are pipelined: one round trip together; the usual request is the page alone, for which a
# pipeline is only overhead. `search` and `search_async` are the same steps through psycopg's two APIs.


def search(ctx: ApiContext, q: SearchQuery) -> SearchResult:
    run = _statements(ctx, q)
    plan = count = None
    with ctx.db.autocommit() as conn:
        page = conn.cursor()
        page.adapters.register_loader("numeric", TextLoader)
        if run.plan is None and run.count is None:
            page.execute(run.page, run.params)
        else:
            with conn.pipeline():
                page.execute(run.page, run.params)
                planned = None if run.plan is None else conn.execute(run.plan, run.filter_params)
                counted = None if run.count is None else conn.execute(run.count, run.filter_params)
            plan = None if planned is None else planned.fetchone()
            count = None if counted is None else counted.fetchone()
        rows = page.fetchall()
    return _result(ctx, run, rows, plan, count)


async def search_async(ctx: ApiContext, reads: AsyncReads, q: SearchQuery) -> SearchResult:
    await ctx.ensure_cursor_key()  # cursors are checked and signed with it, on the loop
    run = _statements(ctx, q)
    plan = count = None
    async with reads.connection() as conn:
        page = conn.cursor()
        page.adapters.register_loader("numeric", TextLoader)
        if run.plan is None and run.count is None:
            await page.execute(run.page, run.params)
        else:
            async with conn.pipeline():
                await page.execute(run.page, run.params)
                planned = None if run.plan is None else await conn.execute(run.plan, run.filter_params)
                counted = None if run.count is None else await conn.execute(run.count, run.filter_params)
            plan = None if planned is None else await planned.fetchone()
            count = None if counted is None else await counted.fetchone()
        rows = await page.fetchall()
    return _result(ctx, run, rows, plan, count)


def _estimate_key(filters: sql.Composed, filter_params: dict[str, Any]) -> str:
    """One key per filter set: the filter SQL and its values, without what only moves the page."""
    return repr(filters) + repr(sorted((k, repr(v)) for k, v in filter_params.items()))


def _filter_params(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in _PAGE_PARAMS and not k.startswith(_MERGE_PREFIX)}


def _plan_query(filters: sql.Composed) -> sql.Composed:
    return sql.SQL("EXPLAIN (FORMAT JSON) SELECT 1 FROM diamonds WHERE {}").format(filters)


def _planned_rows(row: Any) -> int:
    plan = next(iter(row.values()))
    if isinstance(plan, str):
        plan = json.loads(plan)
    return max(0, int(plan[0]["Plan"]["Plan Rows"]))
