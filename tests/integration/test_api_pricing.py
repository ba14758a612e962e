"""Pricing-rule changes through the API reprice exactly the stones the domain's PricingEngine says they should."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import pytest
from api_conftest import Auth, insert_diamonds
from fastapi.testclient import TestClient

from opus.db.pool import Database
from opus.domain.models import Diamond, PricingRule
from opus.domain.pricing import PricingEngine

RULES = "/api/v2/pricing-rules"


def _engine(db: Database) -> PricingEngine:
    with db.connection() as conn:
        rows = conn.execute("SELECT * FROM pricing_rules").fetchall()
    return PricingEngine(
        PricingRule(
            id=r["id"], priority=r["priority"], markup_ratio=r["markup_ratio"], name=r["name"], feed=r["feed"],
            shapes=frozenset(r["shapes"]) if r["shapes"] is not None else None, carat_min=r["carat_min"],
            carat_max=r["carat_max"], lab_grown=r["lab_grown"], feed_price_min=r["feed_price_min"],
            feed_price_max=r["feed_price_max"], rating=r["rating"], active=r["active"],
        )
        for r in rows
    )


def _assert_prices_match_the_engine(db: Database) -> int:
    engine = _engine(db)
    with db.connection() as conn:
        stones = conn.execute("SELECT * FROM diamonds WHERE status = 'active' ORDER BY id").fetchall()
    for s in stones:
        diamond = Diamond(feed=s["feed"], supplier_stone_id=s["supplier_stone_id"], offer_id=s["offer_id"],
                          shape=s["shape"], carats=s["carats"], lab_grown=s["lab_grown"], feed_price=s["feed_price"])
        priced = engine.price(diamond)
        expected = (
            (None, None, None, None) if priced is None
            else (priced.price, priced.pricing_rule_id, priced.markup_ratio, priced.rating)
        )
        actual = (s["price"], s["pricing_rule_id"], s["markup_ratio"], s["rating"])
        assert actual == expected, f"stone {s['id']} ({s['shape']} {s['carats']} ct ${s['feed_price']})"
    return len(stones)


def _stones(db: Database, n: int = 250, seed: int = 11) -> list[int]:
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    # Bounds of the rules below, and values a cent or a thousandth either side, so edges are exercised.
    carats = ["0.499", "0.500", "0.501", "0.999", "1.000", "1.001", "1.999", "2.000", "3.210"]
    prices = ["999.99", "1000.00", "1000.01", "4999.99", "5000.00", "12.35", "10.05", "333.33"]
    for _ in range(n):
        rows.append({
            "shape": rng.choice(["ROUND", "OVAL", "PEAR"]), "carats": Decimal(rng.choice(carats)),
            "lab_grown": rng.random() < 0.4, "feed_price": Decimal(rng.choice(prices)),
            "feed": rng.choice(["nivoda", "nivoda", "other"]),
            "status": "active" if rng.random() < 0.95 else "deleted",
        })
    return insert_diamonds(db, rows)


def _post(client: TestClient, auth: Auth, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(RULES, json=body, headers=auth("admin"))
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_every_change_reprices_exactly_as_the_engine(client: TestClient, db: Database, auth: Auth) -> None:
    _stones(db)
    # The inserted prices are feed price x 1.20 with no rule id: the first change rewrites every active stone.
    first = _post(client, auth, {"name": "rounds 0.5-1", "priority": 10, "shapes": ["round"],
                                 "carat_min": "0.5", "carat_max": "1.0", "markup_ratio": "1.4567"})
    active = _assert_prices_match_the_engine(db)
    assert first["repriced"] == active
    assert first["rule"]["shapes"] == ["ROUND"]

    second = _post(client, auth, {"name": "lab-grown cheap", "priority": 5, "lab_grown": True,
                                  "feed_price_min": "1000.00", "feed_price_max": "5000.00", "markup_ratio": "1.105",
                                  "rating": 3})
    _assert_prices_match_the_engine(db)
    assert second["repriced"] > 0

    third = _post(client, auth, {"name": "other feed", "priority": 7, "feed": "other", "markup_ratio": "2.5"})
    _assert_prices_match_the_engine(db)

    # Replacing a rule with itself changes nothing, so nothing is rewritten.
    rule = third["rule"]
    same = {k: rule[k] for k in ("name", "priority", "feed", "markup_ratio")}
    response = client.put(f"{RULES}/{rule['id']}", json=same, headers=auth("admin"))
    assert response.status_code == 200, response.text
    assert response.json()["repriced"] == 0

    # Deactivating and deleting hand the stones back to the rules after them.
    body = {k: v for k, v in second["rule"].items() if k not in ("id", "created_at", "updated_at")}
    response = client.put(f"{RULES}/{second['rule']['id']}", json={**body, "active": False}, headers=auth("admin"))
    assert response.status_code == 200
    assert response.json()["repriced"] == second["repriced"]
    _assert_prices_match_the_engine(db)
    with db.connection() as conn:
        priced_by_first = conn.execute(
            "SELECT count(*) AS n FROM diamonds WHERE status = 'active' AND pricing_rule_id = %s",
            (first["rule"]["id"],),
        ).fetchone()
    assert priced_by_first is not None
    assert priced_by_first["n"] > 0
    response = client.delete(f"{RULES}/{first['rule']['id']}", headers=auth("admin"))
    assert response.status_code == 200
    assert response.json() == {"id": first["rule"]["id"], "repriced": priced_by_first["n"]}
    _assert_prices_match_the_engine(db)


def test_deleted_stones_are_left_alone(client: TestClient, db: Database, auth: Auth) -> None:
    [gone] = insert_diamonds(db, [{"status": "deleted", "feed_price": Decimal("100.00")}])
    _post(client, auth, {"priority": 1, "markup_ratio": "3"})
    with db.connection() as conn:
        row = conn.execute("SELECT price FROM diamonds WHERE id = %s", (gone,)).fetchone()
    assert row == {"price": Decimal("120.00")}


def test_half_cents_round_up(client: TestClient, db: Database, auth: Auth) -> None:
    [stone] = insert_diamonds(db, [{"feed_price": Decimal("10.01")}])
    _post(client, auth, {"priority": 1, "markup_ratio": "1.5"})  # 15.015 -> 15.02
    assert client.get(f"/api/v2/diamonds/{stone}", headers=auth("read")).json()["price"] == "15.02"
    _assert_prices_match_the_engine(db)


def test_crud_and_errors(client: TestClient, auth: Auth) -> None:
    rules = client.get(RULES, headers=auth("read")).json()
    assert [r["priority"] for r in rules] == [1_000_000]
    created = _post(client, auth, {"priority": 3, "markup_ratio": "1.3"})["rule"]
    assert client.get(f"{RULES}/{created['id']}", headers=auth("read")).json()["markup_ratio"] == "1.3000"
    duplicate = client.post(RULES, json={"priority": 3, "markup_ratio": "1.1"}, headers=auth("admin"))
    assert duplicate.status_code == 409
    moved = client.put(f"{RULES}/{created['id']}", json={"priority": 1_000_000, "markup_ratio": "1.1"},
                       headers=auth("admin"))
    assert moved.status_code == 409
    assert client.get(f"{RULES}/999", headers=auth("read")).status_code == 404
    missing = client.put(f"{RULES}/999", json={"priority": 4, "markup_ratio": "1"}, headers=auth("admin"))
    assert missing.status_code == 404
    assert client.delete(f"{RULES}/999", headers=auth("admin")).status_code == 404
    assert client.delete(f"{RULES}/{created['id']}", headers=auth("admin")).status_code == 200
    assert client.get(f"{RULES}/{created['id']}", headers=auth("read")).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"priority": 1, "markup_ratio": "0"},
        {"priority": 1, "markup_ratio": "-1"},
        {"priority": 1, "markup_ratio": "1.23456"},
        {"priority": -1, "markup_ratio": "1.2"},
        {"priority": 1, "markup_ratio": "1.2", "carat_min": "2", "carat_max": "1"},
        {"priority": 1, "markup_ratio": "1.2", "carat_min": "1", "carat_max": "1"},
        {"priority": 1, "markup_ratio": "1.2", "feed_price_min": "500", "feed_price_max": "100"},
        {"priority": 1, "markup_ratio": "1.2", "carat_min": "0.0001"},
        {"priority": 1, "markup_ratio": "1.2", "shapes": []},
        {"priority": 1, "markup_ratio": "Infinity"},
        {"markup_ratio": "1.2"},
        {"priority": 1, "markup_ratio": "1.2", "colour": "D"},
    ],
)
def test_invalid_rules_are_422_and_change_nothing(
    client: TestClient, db: Database, auth: Auth, body: dict[str, Any]
) -> None:
    response = client.post(RULES, json=body, headers=auth("admin"))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_failed"
    assert len(client.get(RULES, headers=auth("read")).json()) == 1


def test_a_rule_whose_prices_cannot_be_stored_is_refused(client: TestClient, db: Database, auth: Auth) -> None:
    insert_diamonds(db, [{"feed_price": Decimal("0.01")}])
    response = client.post(RULES, json={"priority": 1, "markup_ratio": "0.0001"}, headers=auth("admin"))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "unstorable_price"
    assert len(client.get(RULES, headers=auth("read")).json()) == 1, "the rule was rolled back"
