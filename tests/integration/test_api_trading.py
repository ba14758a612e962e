"""Holds and purchases through the sandbox-backed Nivoda client: races, denials, idempotency."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from api_conftest import AppFactory, Auth, insert_diamonds, stones_from_sandbox
from fastapi.testclient import TestClient

from opus.api.keys import create_key
from opus.db.pool import Database
from opus.feeds.nivoda import NivodaClient
from opus.sandbox.runner import RunningSandbox


def _rows(db: Database, query: str, *params: Any) -> list[dict[str, Any]]:
    with db.connection() as conn:
        return conn.execute(query, params).fetchall()


def _stone(db: Database, diamond_id: int) -> dict[str, Any]:
    [row] = _rows(db, "SELECT * FROM diamonds WHERE id = %s", diamond_id)
    return row


# --- holds ----------------------------------------------------------------------------------------------
def test_a_hold_is_placed_at_the_feed_and_recorded(
    make_client: AppFactory, nivoda: NivodaClient, sandbox: RunningSandbox, db: Database, auth: Auth
) -> None:
    client = make_client(feed=nivoda)
    [(diamond_id, stone)] = stones_from_sandbox(db, sandbox, 1)
    response = client.post(f"/api/v2/diamonds/{diamond_id}/hold", headers=auth("trade"))
    assert response.status_code == 201, response.text
    hold = response.json()
    assert hold["status"] == "active"
    assert hold["feed_hold_id"]
    assert hold["held_until"] is not None
    assert sandbox.inventory.get(stone.stone_id).hold_id == hold["feed_hold_id"]  # type: ignore[union-attr]
    row = _stone(db, diamond_id)
    assert (row["availability"], row["hold_id"]) == ("ON_HOLD", hold["feed_hold_id"])
    [history] = _rows(db, "SELECT * FROM availability_history WHERE diamond_id = %s", diamond_id)
    assert (history["old_value"], history["new_value"]) == ("AVAILABLE", "ON_HOLD")
    again = client.post(f"/api/v2/diamonds/{diamond_id}/hold", headers=auth("admin"))
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"


def test_twenty_concurrent_holds_leave_exactly_one_live_hold(
    make_client: AppFactory, nivoda: NivodaClient, sandbox: RunningSandbox, db: Database
) -> None:
    client = make_client(feed=nivoda)
    [(diamond_id, stone)] = stones_from_sandbox(db, sandbox, 1)
    keys = [create_key(db, f"trader {i}", "trade") for i in range(20)]
    barrier = threading.Barrier(len(keys))
    statuses: list[int] = []
    lock = threading.Lock()

    def attempt(key: str) -> None:
        barrier.wait()
        response = client.post(f"/api/v2/diamonds/{diamond_id}/hold", headers={"X-API-Key": key})
        with lock:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=attempt, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert Counter(statuses) == {201: 1, 409: 19}, Counter(statuses)
    live = _rows(db, "SELECT * FROM hold_history WHERE diamond_id = %s AND status IN ('pending', 'active')",
                 diamond_id)
    assert len(live) == 1
    assert live[0]["status"] == "active"
    assert sandbox.inventory.get(stone.stone_id).hold_id == live[0]["feed_hold_id"]  # type: ignore[union-attr]


def test_a_hold_the_feed_denies_is_409_with_its_reason(
    make_client: AppFactory, nivoda: NivodaClient, sandbox: RunningSandbox, db: Database, auth: Auth
) -> None:
    client = make_client(feed=nivoda)
    [(diamond_id, stone)] = stones_from_sandbox(db, sandbox, 1)
    sandbox.inventory.create_hold(stone.stone_id)  # someone else holds it at Nivoda
    response = client.post(f"/api/v2/diamonds/{diamond_id}/hold", headers=auth("trade"))
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "hold_denied"
    assert "denied" in error["message"]
    [row] = _rows(db, "SELECT status, reason FROM hold_history WHERE diamond_id = %s", diamond_id)
    assert row["status"] == "denied"
    assert _stone(db, diamond_id)["availability"] == "AVAILABLE"


def test_a_feed_outage_is_503_and_frees_the_stone(
    make_client: AppFactory, sandbox: RunningSandbox, db: Database, auth: Auth
) -> None:
    [(diamond_id, _)] = stones_from_sandbox(db, sandbox, 1)
    with NivodaClient(sandbox.endpoint, sandbox.username, sandbox.password, read_attempts=1) as feed:
        client = make_client(feed=feed)
        httpx.post(f"{sandbox.base_url}/admin/faults", json={"rate_500": 1.0}).raise_for_status()
        response = client.post(f"/api/v2/diamonds/{diamond_id}/hold", headers=auth("trade"))
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "unavailable"
        httpx.post(f"{sandbox.base_url}/admin/faults", json={}).raise_for_status()
        [row] = _rows(db, "SELECT status FROM hold_history WHERE diamond_id = %s", diamond_id)
        assert row["status"] == "failed"
        retry = client.post(f"/api/v2/diamonds/{diamond_id}/hold", headers=auth("trade"))
        assert retry.status_code == 201, "a failed attempt does not block the stone"


def test_holds_of_unknown_sold_or_unlisted_stones(
    make_client: AppFactory, nivoda: NivodaClient, db: Database, auth: Auth
) -> None:
    client = make_client(feed=nivoda)
    sold, gone = insert_diamonds(db, [{"availability": "SOLD"}, {"status": "deleted"}])
    assert client.post("/api/v2/diamonds/999/hold", headers=auth("trade")).status_code == 404
    assert client.post(f"/api/v2/diamonds/{sold}/hold", headers=auth("trade")).status_code == 409
    assert client.post(f"/api/v2/diamonds/{gone}/hold", headers=auth("trade")).status_code == 409


def test_without_a_feed_trading_is_503(client: TestClient, db: Database, auth: Auth) -> None:
    [stone] = insert_diamonds(db, [{}])
    for method, path in (("POST", "hold"), ("DELETE", "hold"), ("POST", "purchase")):
        response = client.request(method, f"/api/v2/diamonds/{stone}/{path}", headers={
            **auth("trade"), "Idempotency-Key": "k1"})
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "feed_unavailable"


def test_an_abandoned_pending_hold_does_not_block_the_stone_forever(
    make_client: AppFactory, nivoda: NivodaClient, sandbox: RunningSandbox, db: Database, auth: Auth
) -> None:
    client = make_client(feed=nivoda)
    [(diamond_id, _)] = stones_from_sandbox(db, sandbox, 1)
    with db.transaction() as conn:
        conn.execute("INSERT INTO hold_history (diamond_id, status, requested_by, created_at) "
                     "VALUES (%s, 'pending', 'key:crashed', %s)", (diamond_id, datetime.now(UTC) - timedelta(hours=1)))
    response = client.post(f"/api/v2/diamonds/{diamond_id}/hold", headers=auth("trade"))
    assert response.status_code == 201, response.text
    statuses = sorted(r["status"] for r in _rows(db, "SELECT status FROM hold_history WHERE diamond_id = %s",
                                                 diamond_id))
    assert statuses == ["active", "failed"]


def test_a_hold_is_released_by_its_holder_or_an_admin_only(
    make_client: AppFactory, nivoda: NivodaClient, sandbox: RunningSandbox, db: Database, auth: Auth
) -> None:
    client = make_client(feed=nivoda)
    [(first, first_stone), (second, _)] = stones_from_sandbox(db, sandbox, 2)
    other = {"X-API-Key": create_key(db, "another trader", "trade")}
    assert client.delete(f"/api/v2/diamonds/{first}/hold", headers=auth("trade")).status_code == 404
    assert client.post(f"/api/v2/diamonds/{first}/hold", headers=auth("trade")).status_code == 201
    refused = client.delete(f"/api/v2/diamonds/{first}/hold", headers=other)
    assert refused.status_code == 409
    released = client.delete(f"/api/v2/diamonds/{first}/hold", headers=auth("trade"))
    assert released.status_code == 200, released.text
    assert released.json()["status"] == "released"
    assert sandbox.inventory.get(first_stone.stone_id).availability == "AVAILABLE"  # type: ignore[union-attr]
    row = _stone(db, first)
    assert (row["availability"], row["hold_id"]) == ("AVAILABLE", None)
    assert client.post(f"/api/v2/diamonds/{second}/hold", headers=other).status_code == 201
    assert client.delete(f"/api/v2/diamonds/{second}/hold", headers=auth("admin")).status_code == 200
    assert client.delete("/api/v2/diamonds/999/hold", headers=auth("trade")).status_code == 404


# --- purchases ------------------------------------------------------------------------------------------
def test_a_purchase_needs_an_idempotency_key(make_client: AppFactory, nivoda: NivodaClient, db: Database,
                                              auth: Auth) -> None:
    client = make_client(feed=nivoda)
    [stone] = insert_diamonds(db, [{}])
    response = client.post(f"/api/v2/diamonds/{stone}/purchase", headers=auth("trade"))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "idempotency_key_required"
    too_long = {**auth("trade"), "Idempotency-Key": "x" * 201}
    response = client.post(f"/api/v2/diamonds/{stone}/purchase", headers=too_long)
    assert response.status_code == 400


def test_a_repeated_purchase_returns_the_first_answer_and_orders_once(
    make_client: AppFactory, nivoda: NivodaClient, sandbox: RunningSandbox, db: Database, auth: Auth
) -> None:
    client = make_client(feed=nivoda)
    [(diamond_id, stone)] = stones_from_sandbox(db, sandbox, 1)
    headers = {**auth("trade"), "Idempotency-Key": "order-2030-0001"}
    first = client.post(f"/api/v2/diamonds/{diamond_id}/purchase", headers=headers, json={"reference": "PO-17"})
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["status"] == "placed"
    assert body["diamond_id"] == diamond_id
    assert body["reference"] == "PO-17"
    assert sandbox.inventory.orders == {body["order_id"]: [stone.offer_id]}
    second = client.post(f"/api/v2/diamonds/{diamond_id}/purchase", headers=headers, json={"reference": "PO-17"})
    assert second.status_code == 201
    assert second.content == first.content
    assert len(sandbox.inventory.orders) == 1, "no second order reached the feed"
    assert len(_rows(db, "SELECT * FROM purchase_history")) == 1
    row = _stone(db, diamond_id)
    assert row["availability"] == "SOLD"
    assert sandbox.inventory.get(stone.stone_id).availability == "SOLD"  # type: ignore[union-attr]
    another_key = client.post(f"/api/v2/diamonds/{diamond_id}/purchase",
                              headers={**auth("trade"), "Idempotency-Key": "order-2030-0002"})
    assert another_key.status_code == 409, "a sold stone cannot be bought again"


def test_concurrent_purchases_with_one_key_place_one_order(
    make_client: AppFactory, nivoda: NivodaClient, sandbox: RunningSandbox, db: Database, auth: Auth
) -> None:
    client = make_client(feed=nivoda)
    [(diamond_id, _)] = stones_from_sandbox(db, sandbox, 1)
    headers = {**auth("trade"), "Idempotency-Key": "same-key"}
    barrier = threading.Barrier(8)
    answers: list[tuple[int, bytes]] = []
    lock = threading.Lock()

    def attempt() -> None:
        barrier.wait()
        response = client.post(f"/api/v2/diamonds/{diamond_id}/purchase", headers=headers)
        with lock:
            answers.append((response.status_code, response.content))

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(sandbox.inventory.orders) == 1
    codes = Counter(code for code, _ in answers)
    assert set(codes) <= {201, 409}
    assert codes[201] >= 1
    assert len({content for code, content in answers if code == 201}) == 1, "every success is the same answer"


def test_a_key_reused_for_another_stone_is_422(
    make_client: AppFactory, nivoda: NivodaClient, sandbox: RunningSandbox, db: Database, auth: Auth
) -> None:
    client = make_client(feed=nivoda)
    [(first, _), (second, _)] = stones_from_sandbox(db, sandbox, 2)
    headers = {**auth("trade"), "Idempotency-Key": "k-1"}
    assert client.post(f"/api/v2/diamonds/{first}/purchase", headers=headers).status_code == 201
    response = client.post(f"/api/v2/diamonds/{second}/purchase", headers=headers)
    assert response.status_code == 422
    assert "already used" in response.json()["error"]["message"]
    assert len(sandbox.inventory.orders) == 1
    other_client = {"X-API-Key": create_key(db, "other", "trade"), "Idempotency-Key": "k-1"}
    assert client.post(f"/api/v2/diamonds/{second}/purchase", headers=other_client).status_code == 201, (
        "keys are per credential"
    )


def test_a_stone_held_by_someone_else_cannot_be_bought(
    make_client: AppFactory, nivoda: NivodaClient, sandbox: RunningSandbox, db: Database, auth: Auth
) -> None:
    client = make_client(feed=nivoda)
    [(diamond_id, _)] = stones_from_sandbox(db, sandbox, 1)
    holder = {"X-API-Key": create_key(db, "holder", "trade")}
    assert client.post(f"/api/v2/diamonds/{diamond_id}/hold", headers=holder).status_code == 201
    response = client.post(f"/api/v2/diamonds/{diamond_id}/purchase",
                           headers={**auth("trade"), "Idempotency-Key": "mine"})
    assert response.status_code == 409
    assert sandbox.inventory.orders == {}
    bought = client.post(f"/api/v2/diamonds/{diamond_id}/purchase", headers={**holder, "Idempotency-Key": "h"})
    assert bought.status_code == 201, "the holder may buy"
    [hold] = _rows(db, "SELECT status, reason FROM hold_history WHERE diamond_id = %s", diamond_id)
    assert (hold["status"], hold["reason"]) == ("released", "purchased")


def test_purchases_of_unknown_or_sold_stones(
    make_client: AppFactory, nivoda: NivodaClient, db: Database, auth: Auth
) -> None:
    client = make_client(feed=nivoda)
    [sold] = insert_diamonds(db, [{"availability": "SOLD"}])
    headers = {**auth("trade"), "Idempotency-Key": "a"}
    assert client.post("/api/v2/diamonds/999/purchase", headers=headers).status_code == 404
    assert client.post(f"/api/v2/diamonds/{sold}/purchase", headers=headers).status_code == 409
    assert _rows(db, "SELECT * FROM purchase_history") == [], "refusals before the feed are not recorded"


def test_a_feed_refusal_is_recorded_and_replayed(
    make_client: AppFactory, nivoda: NivodaClient, sandbox: RunningSandbox, db: Database, auth: Auth
) -> None:
    client = make_client(feed=nivoda)
    [(diamond_id, stone)] = stones_from_sandbox(db, sandbox, 1)
    sandbox.inventory.create_order([stone.offer_id])  # sold at Nivoda, not yet in our catalogue
    headers = {**auth("trade"), "Idempotency-Key": "late"}
    first = client.post(f"/api/v2/diamonds/{diamond_id}/purchase", headers=headers)
    assert first.status_code == 502, first.text
    assert first.json()["error"]["code"] == "feed_error"
    again = client.post(f"/api/v2/diamonds/{diamond_id}/purchase", headers=headers)
    assert (again.status_code, again.content) == (first.status_code, first.content)
    [row] = _rows(db, "SELECT status, response_status FROM purchase_history")
    assert (row["status"], row["response_status"]) == ("failed", 502)


@pytest.mark.parametrize("body", [{"reference": ""}, {"comment": "x" * 501}, {"unknown": 1}])
def test_invalid_purchase_details_are_422(
    make_client: AppFactory, nivoda: NivodaClient, db: Database, auth: Auth, body: dict[str, Any]
) -> None:
    client = make_client(feed=nivoda)
    [stone] = insert_diamonds(db, [{}])
    response = client.post(f"/api/v2/diamonds/{stone}/purchase", json=body,
                           headers={**auth("trade"), "Idempotency-Key": "v"})
    assert response.status_code == 422
