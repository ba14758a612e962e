"""Holds through the sandbox-backed Nivoda client: races, denials, outages, release."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
from api_conftest import AppFactory, Auth, db_rows, diamond_row, insert_diamonds, stones_from_sandbox
from fastapi.testclient import TestClient

from opus.api.keys import create_key
from opus.db.pool import Database
from opus.feeds.nivoda import NivodaClient
from opus.sandbox.runner import RunningSandbox


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
    row = diamond_row(db, diamond_id)
    assert (row["availability"], row["hold_id"]) == ("ON_HOLD", hold["feed_hold_id"])
    [history] = db_rows(db, "SELECT * FROM availability_history WHERE diamond_id = %s", diamond_id)
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
    live = db_rows(db, "SELECT * FROM hold_history WHERE diamond_id = %s AND status IN ('pending', 'active')",
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
    [row] = db_rows(db, "SELECT status, reason FROM hold_history WHERE diamond_id = %s", diamond_id)
    assert row["status"] == "denied"
    assert diamond_row(db, diamond_id)["availability"] == "AVAILABLE"


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
        [row] = db_rows(db, "SELECT status FROM hold_history WHERE diamond_id = %s", diamond_id)
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
    statuses = sorted(r["status"] for r in db_rows(db, "SELECT status FROM hold_history WHERE diamond_id = %s",
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
    row = diamond_row(db, first)
    assert (row["availability"], row["hold_id"]) == ("AVAILABLE", None)
    assert client.post(f"/api/v2/diamonds/{second}/hold", headers=other).status_code == 201
    assert client.delete(f"/api/v2/diamonds/{second}/hold", headers=auth("admin")).status_code == 200
    assert client.delete("/api/v2/diamonds/999/hold", headers=auth("trade")).status_code == 404
