"""Manual availability changes: admin only, refused when they contradict a live hold, an open purchase or a sale
unless `override` is given, and then consistent: live holds ended, every change in the availability history."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
from api_conftest import AppFactory, Auth, db_rows, diamond_row, insert_diamonds, stones_from_sandbox
from fastapi.testclient import TestClient

from opus.api.keys import create_key
from opus.db.pool import Database
from opus.feeds.nivoda import NivodaClient
from opus.sandbox.runner import RunningSandbox


def _path(diamond_id: int) -> str:
    return f"/api/v2/diamonds/{diamond_id}/availability"


def _principal(db: Database, key_name: str) -> str:
    [row] = db_rows(db, "SELECT id FROM api_keys WHERE name = %s", key_name)
    return f"key:{row['id']}"


def _snapshot(db: Database, diamond_id: int) -> dict[str, Any]:
    """Everything an availability change may touch, to show that a refusal touched nothing."""
    stone = diamond_row(db, diamond_id)
    return {
        "stone": (stone["availability"], stone["hold_id"], stone["updated_at"]),
        "holds": db_rows(db, "SELECT * FROM hold_history WHERE diamond_id = %s ORDER BY id", diamond_id),
        "purchases": db_rows(db, "SELECT * FROM purchase_history WHERE diamond_id = %s ORDER BY id", diamond_id),
        "history": db_rows(db, "SELECT * FROM availability_history WHERE diamond_id = %s ORDER BY id", diamond_id),
    }


def _held_by_another_client(client: TestClient, db: Database, sandbox: RunningSandbox) -> tuple[int, Any, str]:
    [(diamond_id, stone)] = stones_from_sandbox(db, sandbox, 1)
    holder = create_key(db, "holder", "trade")
    response = client.post(f"/api/v2/diamonds/{diamond_id}/hold", headers={"X-API-Key": holder})
    assert response.status_code == 201, response.text
    return diamond_id, stone, response.json()["feed_hold_id"]


def _being_purchased(db: Database) -> int:
    [diamond_id] = insert_diamonds(db, [{}])
    with db.transaction() as conn:
        conn.execute("INSERT INTO purchase_history (diamond_id, idempotency_key, status, requested_by) "
                     "VALUES (%s, 'key:9|in-flight', 'pending', 'key:9')", (diamond_id,))
    return diamond_id


# --- the old exploit paths: a trade key rewriting availability ------------------------------------------
def test_a_trade_key_cannot_put_another_clients_held_stone_back_on_sale(
    make_client: AppFactory, nivoda: NivodaClient, sandbox: RunningSandbox, db: Database, auth: Auth
) -> None:
    client = make_client(feed=nivoda)
    diamond_id, stone, feed_hold = _held_by_another_client(client, db, sandbox)
    before = _snapshot(db, diamond_id)
    for override in (False, True):
        response = client.post(_path(diamond_id), headers=auth("trade"),
                               json={"availability": "AVAILABLE", "reason": "mine now", "override": override})
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "forbidden"
    assert _snapshot(db, diamond_id) == before
    assert sandbox.inventory.get(stone.stone_id).hold_id == feed_hold  # type: ignore[union-attr]


@pytest.mark.parametrize(("availability", "target"), [("SOLD", "AVAILABLE"), ("AVAILABLE", "SOLD"),
                                                     ("AVAILABLE", "MEMO")])
def test_a_trade_key_cannot_set_availability_at_all(
    client: TestClient, db: Database, auth: Auth, availability: str, target: str
) -> None:
    [diamond_id] = insert_diamonds(db, [{"availability": availability}])
    before = _snapshot(db, diamond_id)
    response = client.post(_path(diamond_id), headers=auth("trade"), json={"availability": target, "reason": "x"})
    assert response.status_code == 403
    assert _snapshot(db, diamond_id) == before


def test_a_trade_key_marking_stones_sold_does_not_block_other_clients(
    make_client: AppFactory, nivoda: NivodaClient, sandbox: RunningSandbox, db: Database, auth: Auth
) -> None:
    client = make_client(feed=nivoda)
    [(diamond_id, _)] = stones_from_sandbox(db, sandbox, 1)
    response = client.post(_path(diamond_id), headers=auth("trade"), json={"availability": "SOLD", "reason": "x"})
    assert response.status_code == 403
    other = {"X-API-Key": create_key(db, "other buyer", "trade")}
    assert client.post(f"/api/v2/diamonds/{diamond_id}/hold", headers=other).status_code == 201
    bought = client.post(f"/api/v2/diamonds/{diamond_id}/purchase", headers={**other, "Idempotency-Key": "k"})
    assert bought.status_code == 201, bought.text


# --- admin changes that contradict the stone's state ----------------------------------------------------
def test_an_admin_change_of_a_held_stone_without_override_is_409_and_changes_nothing(
    make_client: AppFactory, nivoda: NivodaClient, sandbox: RunningSandbox, db: Database, auth: Auth
) -> None:
    client = make_client(feed=nivoda)
    diamond_id, stone, feed_hold = _held_by_another_client(client, db, sandbox)
    before = _snapshot(db, diamond_id)
    for target in ("AVAILABLE", "SOLD", "MEMO"):
        response = client.post(_path(diamond_id), headers=auth("admin"), json={"availability": target, "reason": "x"})
        assert response.status_code == 409, response.text
        error = response.json()["error"]
        assert error["code"] == "availability_conflict"
        assert "override" in error["message"]
        assert [c["kind"] for c in error["details"]] == ["hold"]
    assert _snapshot(db, diamond_id) == before
    assert sandbox.inventory.get(stone.stone_id).hold_id == feed_hold  # type: ignore[union-attr]


@pytest.mark.parametrize("state", ["sold", "being_purchased", "pending_hold"])
def test_an_admin_change_of_a_sold_bought_or_claimed_stone_without_override_is_409(
    client: TestClient, db: Database, auth: Auth, state: str
) -> None:
    if state == "sold":
        [diamond_id] = insert_diamonds(db, [{"availability": "SOLD"}])
    elif state == "being_purchased":
        diamond_id = _being_purchased(db)
    else:
        [diamond_id] = insert_diamonds(db, [{}])
        with db.transaction() as conn:
            conn.execute("INSERT INTO hold_history (diamond_id, status, requested_by) VALUES (%s, 'pending', 'k')",
                         (diamond_id,))
    before = _snapshot(db, diamond_id)
    response = client.post(_path(diamond_id), headers=auth("admin"), json={"availability": "AVAILABLE", "reason": "x"})
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "availability_conflict"
    assert _snapshot(db, diamond_id) == before


def test_an_admin_change_of_an_unclaimed_stone_needs_no_override(
    client: TestClient, db: Database, auth: Auth
) -> None:
    [diamond_id] = insert_diamonds(db, [{}])
    response = client.post(_path(diamond_id), headers=auth("admin"),
                           json={"availability": "MEMO", "reason": "sent on memo"})
    assert response.status_code == 200, response.text
    assert response.json()["availability"] == "MEMO"
    [history] = db_rows(db, "SELECT * FROM availability_history WHERE diamond_id = %s", diamond_id)
    assert (history["old_value"], history["new_value"], history["reason"], history["changed_by"]) == (
        "AVAILABLE", "MEMO", "sent on memo", _principal(db, "test admin"))


# --- admin overrides ------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["AVAILABLE", "SOLD"])
def test_an_override_ends_the_hold_everywhere_and_records_who(
    make_client: AppFactory, nivoda: NivodaClient, sandbox: RunningSandbox, db: Database, auth: Auth, target: str
) -> None:
    client = make_client(feed=nivoda)
    diamond_id, stone, _ = _held_by_another_client(client, db, sandbox)
    admin = _principal(db, "test admin")
    response = client.post(_path(diamond_id), headers=auth("admin"),
                           json={"availability": target, "reason": "stone returned by the client", "override": True})
    assert response.status_code == 200, response.text
    assert (response.json()["availability"], response.json()["hold_id"]) == (target, None)
    assert db_rows(db, "SELECT * FROM hold_history WHERE diamond_id = %s AND status IN ('pending', 'active')",
                   diamond_id) == [], "no hold stays live on a stone marked available or sold"
    [hold] = db_rows(db, "SELECT * FROM hold_history WHERE diamond_id = %s", diamond_id)
    assert hold["status"] == "released"
    assert hold["released_at"] is not None
    assert admin in hold["reason"]
    assert "stone returned by the client" in hold["reason"]
    assert sandbox.inventory.get(stone.stone_id).hold_id is None, "the feed's hold was cancelled"  # type: ignore[union-attr]
    history = db_rows(db, "SELECT * FROM availability_history WHERE diamond_id = %s ORDER BY id", diamond_id)
    assert [(h["old_value"], h["new_value"]) for h in history] == [("AVAILABLE", "ON_HOLD"), ("ON_HOLD", target)]
    assert (history[-1]["changed_by"], history[-1]["reason"]) == (admin, "stone returned by the client")
    if target == "AVAILABLE":
        other = {"X-API-Key": create_key(db, "next buyer", "trade")}
        assert client.post(f"/api/v2/diamonds/{diamond_id}/hold", headers=other).status_code == 201, (
            "the stone can be held again"
        )


def test_an_override_puts_a_sold_stone_back_and_records_it(client: TestClient, db: Database, auth: Auth) -> None:
    [diamond_id] = insert_diamonds(db, [{"availability": "SOLD"}])
    response = client.post(_path(diamond_id), headers=auth("admin"),
                           json={"availability": "AVAILABLE", "reason": "sale cancelled", "override": True})
    assert response.status_code == 200, response.text
    assert diamond_row(db, diamond_id)["availability"] == "AVAILABLE"
    [history] = db_rows(db, "SELECT * FROM availability_history WHERE diamond_id = %s", diamond_id)
    assert (history["old_value"], history["new_value"], history["changed_by"]) == (
        "SOLD", "AVAILABLE", _principal(db, "test admin"))


def test_an_override_while_a_hold_is_being_placed_leaves_no_live_hold(
    make_client: AppFactory, nivoda: NivodaClient, sandbox: RunningSandbox, db: Database, auth: Auth
) -> None:
    """The hold's feed call is slow; the admin ends the pending hold meanwhile. When the feed answers, the hold
    must not come back to life: it is cancelled at the feed and its requester told 409."""
    client = make_client(feed=nivoda)
    [(diamond_id, stone)] = stones_from_sandbox(db, sandbox, 1)
    nivoda.get(stone.stone_id)  # authenticate now, so the hold request below makes one slow call
    sandbox.inventory.faults.configure(latency_ms=1500)
    answers: list[httpx.Response] = []
    holder = threading.Thread(target=lambda: answers.append(
        client.post(f"/api/v2/diamonds/{diamond_id}/hold", headers=auth("trade"))))
    holder.start()
    deadline = time.monotonic() + 10
    while not db_rows(db, "SELECT 1 FROM hold_history WHERE diamond_id = %s AND status = 'pending'", diamond_id):
        assert time.monotonic() < deadline, "the hold request never started"
        time.sleep(0.02)
    response = client.post(_path(diamond_id), headers=auth("admin"),
                           json={"availability": "SOLD", "reason": "sold in the shop", "override": True})
    assert response.status_code == 200, response.text
    holder.join(timeout=30)
    sandbox.inventory.faults.reset()
    [hold_answer] = answers
    assert hold_answer.status_code == 409, hold_answer.text
    [hold] = db_rows(db, "SELECT * FROM hold_history WHERE diamond_id = %s", diamond_id)
    assert hold["status"] == "released"
    row = diamond_row(db, diamond_id)
    assert (row["availability"], row["hold_id"]) == ("SOLD", None)
    assert sandbox.inventory.get(stone.stone_id).hold_id is None  # type: ignore[union-attr]
