"""Searches by price with equality filters are answered by merging ordered ranges of the search indexes
(migration 0009): the same stones in the same order as the plain query, reading about a page of rows."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from itertools import product
from typing import Any

import pytest
from api_conftest import Auth, db_rows, insert_diamonds
from fastapi.testclient import TestClient
from psycopg import sql

from opus.api.schemas.diamonds import DiamondOut, SearchPage, SearchQuery
from opus.api.services import search
from opus.api.services.search_branches import branches, carat_bands
from opus.db.pool import Database

SEARCH = "/api/v2/diamonds"
SHAPES = ["ROUND", "OVAL", "PEAR"]
COLORS = ["D", "E", "F", "G", None]
CLARITIES = ["VVS2", "VS1", "VS2", None]


def _stones(db: Database, n: int = 400) -> None:
    rng = random.Random(11)
    insert_diamonds(db, [{
        "shape": rng.choice(SHAPES), "color": rng.choice(COLORS), "clarity": rng.choice(CLARITIES),
        "carats": Decimal(rng.choice(["0.500", "0.750", "1.000", "1.500", "2.000"])), "lab_grown": rng.random() < 0.4,
        "feed_price": Decimal(rng.choice([500, 1000, 1000, 2500])),  # ties: the id decides within a price
        "status": "active" if rng.random() < 0.9 else "deleted",
    } for _ in range(n)])


def _pages(client: TestClient, headers: dict[str, str], params: dict[str, Any]) -> list[int]:
    ids: list[int] = []
    cursor = None
    while True:
        response = client.get(SEARCH, params={**params, **({"next": cursor} if cursor else {})}, headers=headers)
        assert response.status_code == 200, response.text
        ids.extend(item["id"] for item in response.json()["items"])
        cursor = response.json()["next"]
        if cursor is None:
            return ids


def _plain(db: Database, params: dict[str, Any]) -> list[int]:
    lists = {"shapes", "colors", "clarities", "cuts", "availability"}
    q = SearchQuery.model_validate({k: [v] if k in lists else v for k, v in params.items()} | {"limit": 100})
    query, _, values = search.page_query(q, None, merge=False)
    assert branches(q) is not None, "the case should be one the merge answers"
    values["limit"] = 100_000
    return _run(db, query, values)


def _run(db: Database, query: sql.Composed, values: dict[str, Any]) -> list[int]:
    with db.connection() as conn:
        return [int(r["id"]) for r in conn.execute(query, values).fetchall()]


CASES = [
    {"shapes": "ROUND", "lab_grown": "false"},
    {"shapes": "OVAL,PEAR", "carat_min": "0.75", "carat_max": "1.5"},
    {"shapes": "ROUND", "carat_max": "1.0", "colors": "D,E"},
    {"shapes": "ROUND,PEAR", "lab_grown": "true"},
    {"shapes": "OVAL,ROUND", "colors": "D,F,G", "clarities": "VS1,VVS2"},
    {"shapes": "ROUND,OVAL,PEAR", "colors": "E,D", "clarities": "VS2", "lab_grown": "false",
     "carat_min": "0.9", "price_max": "2000"},
    {"shapes": "PEAR", "colors": "D", "clarities": "VS1,VS2", "cuts": "EXCELLENT", "availability": "AVAILABLE"},
]


@pytest.mark.parametrize("params", CASES)
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_merged_pages_list_what_the_plain_query_lists_in_its_order(
    client: TestClient, db: Database, auth: Auth, params: dict[str, Any], order: str
) -> None:
    _stones(db)
    expected = _plain(db, {**params, "order": order})
    assert expected, "the fixture should produce matches"
    assert _pages(client, auth("read"), {**params, "order": order, "limit": 6}) == expected


def test_searches_the_indexes_cannot_order_or_do_not_need_stay_plain() -> None:
    assert branches(SearchQuery(colors=["D"], clarities=["VS1"])) is None, "no shape: the price order breaks"
    assert branches(SearchQuery(shapes=["ROUND", "OVAL"], sort="carats")) is None  # type: ignore[arg-type]
    assert branches(SearchQuery(shapes=["ROUND", "OVAL"], status="all")) is None
    assert branches(SearchQuery(shapes=["ROUND"])) is None, "one shape alone: its own index is in price order"
    many = SearchQuery(shapes=[f"S{i}" for i in range(3)], colors=list("DEFGH"), clarities=["VS1", "VS2"])
    merged = branches(many)
    assert merged is not None
    assert merged.fields == {"lab_grown", "shapes"}, "2 x 3 x 5 x 2 x 10 grade ranges are too many: shape and band"
    assert len(merged.ranges) == 2 * 3 * 10
    ranged = branches(SearchQuery(shapes=["ROUND"], colors=["D"], clarities=["VS1"], carat_min=Decimal("0.9"),
                                  carat_max=Decimal("2"), lab_grown=False))
    assert ranged is not None
    assert ranged.fields == {"lab_grown", "shapes", "colors", "clarities"}
    assert [r[-1][2] for r in ranged.ranges] == [4, 5, 6, 7], "the carat bands the range overlaps"
    assert branches(SearchQuery(shapes=[f"S{i}" for i in range(30)], colors=["D"])) is None, "2 x 30 x 10: too many"


@pytest.mark.parametrize(("low", "high", "bands"), [
    (None, None, list(range(10))), (Decimal("0.9"), Decimal("2"), [4, 5, 6, 7]),
    (Decimal("0.95"), Decimal("0.99"), [4]), (Decimal("0"), Decimal("0.29"), [0]), (Decimal("5"), None, [9]),
])
def test_carat_ranges_take_the_bands_they_overlap(low: Decimal | None, high: Decimal | None,
                                                  bands: list[int]) -> None:
    assert carat_bands(low, high) == bands


def test_the_carat_bands_are_those_of_the_index(db: Database) -> None:
    weights = [Decimal(n) / 100 for n in range(1, 800)]
    with db.connection() as conn:
        rows = conn.execute("SELECT w, diamond_carat_band(w) AS band FROM unnest(%s::numeric[]) AS w",
                            (weights,)).fetchall()
    assert [r["band"] for r in rows] == [carat_bands(w, w)[0] for w in weights]


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(n for child in plan.get("Plans", []) for n in _nodes(child))]


def test_a_multi_filter_page_reads_the_index_and_only_its_own_stones_however_deep(db: Database) -> None:
    with db.transaction() as conn:
        conn.execute("SELECT setseed(0.25)")
        conn.execute("""
            INSERT INTO diamonds (feed, supplier_stone_id, offer_id, shape, carats, color, clarity, lab_grown,
                                  availability, feed_price, price, content_hash)
            SELECT 'nivoda', 'P' || g, 'Q' || g, (ARRAY['ROUND', 'OVAL', 'PEAR', 'EMERALD'])[1 + g % 4],
                   0.3 + floor(random() * 25) / 10.0, (ARRAY['D', 'E', 'F', 'G', 'H', 'I'])[1 + floor(random() * 6)],
                   (ARRAY['IF', 'VVS2', 'VS1', 'VS2', 'SI1'])[1 + floor(random() * 5)], random() < 0.3,
                   'AVAILABLE', 100 + g % 9000, 120 + g % 9000, 'h'
            FROM generate_series(1, 30000) AS g""")
    with db.autocommit() as conn:
        conn.execute("VACUUM ANALYZE diamonds")
        grades = SearchQuery(shapes=["ROUND", "OVAL"], colors=["D", "E"], clarities=["VS1", "VS2"],
                             carat_min=Decimal("0.9"), carat_max=Decimal("1.2"), lab_grown=False, limit=20)
        weights = SearchQuery(shapes=["ROUND", "OVAL"], carat_min=Decimal("0.9"), carat_max=Decimal("1.2"),
                              colors=["D"], limit=20)
        middle = conn.execute("SELECT price, id FROM diamonds ORDER BY price, id OFFSET 15000 LIMIT 1").fetchone()
        assert middle is not None
        for q, after in product((grades, weights), (None, (middle["price"], middle["id"]))):
            query, _, params = search.page_query(q, after)
            row = conn.execute(sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) {}").format(query), params).fetchone()
            assert row is not None
            nodes = _nodes(next(iter(row.values()))[0]["Plan"])
            ranges = branches(q)
            assert ranges is not None
            scans = [n for n in nodes if n.get("Index Name", "").startswith("diamonds_active_")]
            assert scans, [n["Node Type"] for n in nodes]
            assert all(n["Node Type"] == "Index Only Scan" for n in scans), "every filter checked on the index"
            entries = sum((n["Actual Rows"] + n.get("Rows Removed by Filter", 0)) * n["Actual Loops"] for n in scans)
            stones = sum(n["Actual Rows"] * n["Actual Loops"] for n in nodes
                         if n.get("Index Name") == "diamonds_pkey")
            assert stones <= 21, "only the page's own stones are read from the table"
            # At most a page per range, plus the entries of the end bands outside the carat range.
            assert entries <= 21 * len(ranges.ranges) + 2_000, (q, after, entries)


def test_the_page_body_is_what_the_response_model_writes(client: TestClient, db: Database, auth: Auth) -> None:
    insert_diamonds(db, [{"shape": "ROUND", "feed_price": Decimal("1234.50"), "carats": Decimal("1.010"),
                          "supplier_name": "Gemmes Élodie"}, {"shape": "OVAL", "color": None}])
    for params in ({}, {"sort": "color", "limit": 1}, {"shapes": "ROUND,OVAL"}):
        response = client.get(SEARCH, params=params, headers=auth("read"))
        assert response.status_code == 200
        body = response.json()
        stones = [db_rows(db, "SELECT * FROM diamonds WHERE id = %s", item["id"])[0] for item in body["items"]]
        page = SearchPage(items=[DiamondOut.model_validate(s) for s in stones], next=body["next"],
                          limit=body["limit"], sort=body["sort"], order=body["order"],
                          total_estimate=body["total_estimate"], total=body["total"])
        expected = json.dumps(page.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":"))
        assert response.content == expected.encode(), params
