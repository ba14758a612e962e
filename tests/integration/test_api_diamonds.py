"""Search (filters, grade sorts, keyset pages, totals), one stone, and manual availability changes."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from api_conftest import Auth, insert_diamonds
from fastapi.testclient import TestClient
from psycopg import sql

from opus.api.schemas.diamonds import SearchQuery, SortKey, SortOrder
from opus.api.services import search
from opus.db.pool import Database

SEARCH = "/api/v2/diamonds"
COLORS = ["D", "E", "F", "G", "H", "I", "J", "K", "FANCY", None]
CLARITIES = ["FL", "IF", "VVS1", "VVS2", "VS1", "VS2", "SI1", "SI2", "I1", None]
SHAPES = ["ROUND", "OVAL", "PEAR", "EMERALD"]
UPDATED_BASE = datetime(2030, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC)


def _catalogue(db: Database, n: int = 300, seed: int = 3) -> list[dict[str, Any]]:
    """`n` stones with many ties on every sort key (few distinct prices, carats, grades)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        rows.append({
            "shape": rng.choice(SHAPES),
            "carats": Decimal(rng.choice(["0.500", "0.750", "1.000", "1.010", "1.500", "2.000"])),
            "color": rng.choice(COLORS),
            "clarity": rng.choice(CLARITIES),
            "lab_grown": rng.random() < 0.3,
            "feed_price": Decimal(rng.choice([500, 1000, 1000, 2500, 4000])) + Decimal("0.25"),
            "availability": rng.choice(["AVAILABLE", "AVAILABLE", "ON_HOLD", "MEMO"]),
            "status": "active" if rng.random() < 0.9 else "deleted",
            "updated_at": UPDATED_BASE + timedelta(seconds=rng.choice([0, 1, 1, 90, 3600])),
        })
    ids = insert_diamonds(db, rows)
    return [{**r, "id": i} for r, i in zip(rows, ids, strict=True)]


def _all_pages(client: TestClient, headers: dict[str, str], params: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        page_params = {**params, **({"next": cursor} if cursor else {})}
        response = client.get(SEARCH, params=page_params, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= params.get("limit", 20)
        items.extend(page["items"])
        cursor = page["next"]
        if cursor is None:
            return items
    raise AssertionError("paging did not end")


COLOR_RANK = {c: i for i, c in enumerate("DEFGHIJKLMNOPQRSTUVWXYZ", start=1)} | {"FANCY": 50}
CLARITY_RANK = {c: i for i, c in enumerate(["FL", "IF", "VVS1", "VVS2", "VS1", "VS2", "SI1", "SI2", "SI3", "I1"], 1)}


def _sort_value(sort: str, item: dict[str, Any]) -> Any:
    if sort == "color":
        return COLOR_RANK.get(item["color"], 99)
    if sort == "clarity":
        return CLARITY_RANK.get(item["clarity"], 99)
    if sort == "updated":
        return datetime.fromisoformat(item["updated_at"])
    return Decimal(item[sort])


@pytest.mark.parametrize("sort", ["price", "carats", "price_per_carat", "color", "clarity", "updated"])
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_keyset_pages_return_every_match_once_in_order(
    client: TestClient, db: Database, auth: Auth, sort: str, order: str
) -> None:
    stones = _catalogue(db)
    expected = {s["id"] for s in stones if s["status"] == "active"}
    items = _all_pages(client, auth("read"), {"sort": sort, "order": order, "limit": 7})
    ids = [i["id"] for i in items]
    assert len(ids) == len(set(ids)), "no stone appears twice"
    assert set(ids) == expected, "every active stone appears"
    keys = [(_sort_value(sort, i), i["id"]) for i in items]
    assert keys == sorted(keys, reverse=order == "desc"), "ordered by the sort key, then id"


def test_filtered_paging_matches_a_direct_filter(client: TestClient, db: Database, auth: Auth) -> None:
    stones = _catalogue(db)
    params = {"shapes": "round,Oval", "colors": ["D", "E,F"], "carat_min": "0.75", "carat_max": "1.5",
              "lab_grown": "false", "availability": "available", "limit": 5, "sort": "clarity"}
    items = _all_pages(client, auth("read"), params)
    expected = {
        s["id"] for s in stones
        if s["status"] == "active" and s["shape"] in ("ROUND", "OVAL") and s["color"] in ("D", "E", "F")
        and Decimal("0.75") <= s["carats"] <= Decimal("1.5") and not s["lab_grown"]
        and s["availability"] == "AVAILABLE"
    }
    assert expected, "the fixture should produce matches"
    assert {i["id"] for i in items} == expected


def test_price_and_feed_price_ranges_and_status(client: TestClient, db: Database, auth: Auth) -> None:
    cheap, mid, dear = insert_diamonds(db, [
        {"feed_price": Decimal("100.00")}, {"feed_price": Decimal("1000.00")}, {"feed_price": Decimal("5000.00")},
    ])
    [gone] = insert_diamonds(db, [{"status": "deleted", "feed_price": Decimal("1000.00")}])

    def ids(**params: Any) -> list[int]:
        response = client.get(SEARCH, params=params, headers=auth("read"))
        assert response.status_code == 200, response.text
        return [i["id"] for i in response.json()["items"]]

    assert ids(price_min="1200", price_max="1200.00") == [mid], "price bounds are inclusive, on our price"
    assert ids(feed_price_min="100", feed_price_max="1000") == [cheap, mid]
    assert ids(status="deleted") == [gone]
    assert sorted(ids(status="all")) == sorted([cheap, mid, dear, gone])
    assert ids(feed="other") == []


def test_totals_estimate_and_exact(client: TestClient, db: Database, auth: Auth) -> None:
    stones = _catalogue(db, n=120)
    with db.connection() as conn:
        conn.execute("ANALYZE diamonds")
    active = sum(1 for s in stones if s["status"] == "active")
    page = client.get(SEARCH, params={"limit": 3}, headers=auth("read")).json()
    assert page["total"] is None
    assert page["total_estimate"] > 0
    assert abs(page["total_estimate"] - active) <= active, "an estimate, of the right order"
    page = client.get(SEARCH, params={"limit": 3, "count": "exact"}, headers=auth("read")).json()
    assert page["total"] == active
    rounds = sum(1 for s in stones if s["status"] == "active" and s["shape"] == "ROUND")
    page = client.get(SEARCH, params={"shapes": "ROUND", "count": "exact"}, headers=auth("read")).json()
    assert page["total"] == rounds


def test_a_tampered_or_foreign_cursor_is_400(client: TestClient, db: Database, auth: Auth) -> None:
    _catalogue(db, n=30)
    page = client.get(SEARCH, params={"limit": 5}, headers=auth("read")).json()
    cursor = page["next"]
    assert cursor
    body, _, mac = cursor.partition(".")
    tampered = ("B" if body[0] != "B" else "C") + body[1:] + "." + mac
    for bad in (tampered, cursor[:-2], "nonsense", cursor + "A"):
        response = client.get(SEARCH, params={"limit": 5, "next": bad}, headers=auth("read"))
        assert response.status_code == 400, bad
        assert response.json()["error"]["code"] == "invalid_cursor"
    response = client.get(SEARCH, params={"limit": 5, "next": cursor, "sort": "carats"}, headers=auth("read"))
    assert response.status_code == 400
    response = client.get(SEARCH, params={"limit": 5, "next": cursor}, headers=auth("read"))
    assert response.status_code == 200


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 101}, {"sort": "name"}, {"order": "up"}, {"availability": "GONE"},
     {"carat_min": "abc"}, {"shapes": "ROUND;DROP TABLE"}, {"unknown": "1"}, {"status": "sold"},
     {"price_min": "NaN"}],
)
def test_invalid_search_parameters_are_422(client: TestClient, auth: Auth, params: dict[str, Any]) -> None:
    response = client.get(SEARCH, params=params, headers=auth("read"))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_failed"


def test_unpriced_stones_are_not_listed(client: TestClient, db: Database, auth: Auth) -> None:
    [priced, _unpriced] = insert_diamonds(db, [{}, {"price": None}])
    items = client.get(SEARCH, headers=auth("read")).json()["items"]
    assert [i["id"] for i in items] == [priced]


def test_get_one_stone_and_404(client: TestClient, db: Database, auth: Auth) -> None:
    [stone] = insert_diamonds(db, [{"shape": "PEAR", "feed_price": Decimal("1234.50")}])
    response = client.get(f"{SEARCH}/{stone}", headers=auth("read"))
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == stone
    assert body["shape"] == "PEAR"
    assert body["feed_price"] == "1234.50"
    assert body["price"] == "1481.40"
    assert "content_hash" not in body
    response = client.get(f"{SEARCH}/{stone + 1000}", headers=auth("read"))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert client.get(f"{SEARCH}/0", headers=auth("read")).status_code == 422
    assert client.get(f"{SEARCH}/abc", headers=auth("read")).status_code == 422


def test_setting_availability_is_recorded(client: TestClient, db: Database, auth: Auth) -> None:
    [stone] = insert_diamonds(db, [{}])
    response = client.post(f"{SEARCH}/{stone}/availability", headers=auth("admin"),
                           json={"availability": "MEMO", "reason": "sent to a client on memo"})
    assert response.status_code == 200, response.text
    assert response.json()["availability"] == "MEMO"
    with db.connection() as conn:
        history = conn.execute("SELECT * FROM availability_history WHERE diamond_id = %s", (stone,)).fetchall()
    assert len(history) == 1
    assert (history[0]["old_value"], history[0]["new_value"]) == ("AVAILABLE", "MEMO")
    assert history[0]["reason"] == "sent to a client on memo"
    assert history[0]["changed_by"].startswith("key:")


@pytest.mark.parametrize(
    "body",
    [{"availability": "GONE", "reason": "x"}, {"availability": "SOLD"}, {"availability": "SOLD", "reason": ""},
     {"availability": "SOLD", "reason": "x", "extra": 1}],
)
def test_invalid_availability_changes_are_422(
    client: TestClient, db: Database, auth: Auth, body: dict[str, Any]
) -> None:
    [stone] = insert_diamonds(db, [{}])
    response = client.post(f"{SEARCH}/{stone}/availability", headers=auth("admin"), json=body)
    assert response.status_code == 422


def test_availability_of_an_unknown_stone_is_404(client: TestClient, auth: Auth) -> None:
    response = client.post(f"{SEARCH}/999/availability", headers=auth("admin"),
                           json={"availability": "SOLD", "reason": "x"})
    assert response.status_code == 404


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(n for child in plan.get("Plans", []) for n in _plan_nodes(child))]


@pytest.mark.parametrize("sort", ["price", "carats", "price_per_carat", "color", "clarity", "updated"])
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_a_deep_page_reads_its_keyset_index_without_sorting(db: Database, sort: str, order: str) -> None:
    with db.transaction() as conn:
        conn.execute("""
            INSERT INTO diamonds (feed, supplier_stone_id, offer_id, shape, carats, color, clarity, lab_grown,
                                  availability, feed_price, price, content_hash, updated_at)
            SELECT 'nivoda', 'P' || g, 'Q' || g, 'ROUND', 0.3 + (g % 300) / 100.0,
                   (ARRAY['D', 'E', 'F', 'G', 'H'])[1 + g % 5], (ARRAY['IF', 'VS1', 'SI2'])[1 + g % 3], false,
                   'AVAILABLE', 100 + g % 5000, 120 + g % 5000, 'h', now() - g * interval '1 second'
            FROM generate_series(1, 20000) AS g""")
    with db.connection() as conn:
        conn.execute("ANALYZE diamonds")
        column = sql.Identifier(search.SORT_COLUMNS[SortKey(sort)].column)
        # A cursor from the middle of the sort order: half the stones lie on either side of it.
        middle = conn.execute(
            sql.SQL("SELECT {} AS k, id FROM diamonds ORDER BY {}, id LIMIT 1 OFFSET 10000").format(column, column)
        ).fetchone()
        assert middle is not None
        query, _, params = search.page_query(
            SearchQuery(sort=SortKey(sort), order=SortOrder(order), limit=50), (middle["k"], middle["id"])
        )
        explained = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) {}").format(query), params).fetchone()
    assert explained is not None
    nodes = _plan_nodes(next(iter(explained.values()))[0]["Plan"])
    types = [n["Node Type"] for n in nodes]
    assert "Sort" not in types, f"{sort} {order}: {types}"
    assert any(n.get("Index Name", "").startswith("diamonds_active_") for n in nodes), types
