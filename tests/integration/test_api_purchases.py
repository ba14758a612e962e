"""Purchases through the sandbox-backed Nivoda client: idempotency, races, refusals."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest
from api_conftest import AppFactory, Auth, db_rows, diamond_row, insert_diamonds, stones_from_sandbox

from opus.api.keys import create_key
from opus.db.pool import Database
from opus.feeds.nivoda import NivodaClient
from opus.sandbox.runner import RunningSandbox


# --- purchases ------------------------------------------------------------------------------------------
def test_a_purchase_needs_an_idempotency_key(make_client: AppFactory, nivoda: NivodaClient, db: Database,
                                              auth: Auth) -> None:
    client = make_client(feed=nivoda)
    [stone] = insert_diamonds(db, [{}])
    response = client.post(f"/api/v2/diamonds/{stone}/purchase", headers=auth("trade"))
    assert response.status_code == 422, "the header is required, as the OpenAPI document says"
    assert response.json()["error"]["code"] == "validation_failed"
    assert "Idempotency-Key" in response.json()["error"]["message"]
    for bad in ("x" * 201, " padded ", "tab\there"):
        response = client.post(f"/api/v2/diamonds/{stone}/purchase", headers={**auth("trade"), "Idempotency-Key": bad})
        assert response.status_code == 422, bad


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
    assert len(db_rows(db, "SELECT * FROM purchase_history")) == 1
    row = diamond_row(db, diamond_id)
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
    [hold] = db_rows(db, "SELECT status, reason FROM hold_history WHERE diamond_id = %s", diamond_id)
    assert (hold["status"], hold["reason"]) == ("released", "purchased")


def test_purchases_of_unknown_or_sold_stones(
    make_client: AppFactory, nivoda: NivodaClient, db: Database, auth: Auth
) -> None:
    client = make_client(feed=nivoda)
    sold, unpriced = insert_diamonds(db, [{"availability": "SOLD"}, {"price": None}])
    headers = {**auth("trade"), "Idempotency-Key": "a"}
    assert client.post("/api/v2/diamonds/999/purchase", headers=headers).status_code == 404
    assert client.post(f"/api/v2/diamonds/{sold}/purchase", headers=headers).status_code == 409
    response = client.post(f"/api/v2/diamonds/{unpriced}/purchase", headers=headers)
    assert response.status_code == 409
    assert "no price" in response.json()["error"]["message"]
    assert db_rows(db, "SELECT * FROM purchase_history") == [], "refusals before the feed are not recorded"


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
    [row] = db_rows(db, "SELECT status, response_status FROM purchase_history")
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
