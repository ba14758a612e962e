"""Retries of one purchase: every request with the same Idempotency-Key gets the first request's answer, byte for
byte, or while that one is still at the feed, one documented in-progress answer; never another buyer's message."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from api_conftest import AppFactory, Auth, db_rows, stones_from_sandbox
from fastapi.testclient import TestClient

from opus.api.app import create_app
from opus.api.context import ReplayWait
from opus.config import Settings
from opus.db.pool import Database
from opus.feeds.nivoda import NivodaClient
from opus.sandbox.runner import RunningSandbox

RETRIES = 20
Concurrently = Callable[[Callable[[], Any], int], list[Any]]


@pytest.fixture
def impatient(db: Database, settings: Settings, nivoda: NivodaClient) -> Iterator[TestClient]:
    """An app whose repeats wait only 0.3 s for the first answer, so a slow feed outlasts the wait."""
    app = create_app(db=db, settings=settings, feed=nivoda, control=None,
                     replay_wait=ReplayWait(timeout_s=0.3, poll_s=0.05))
    with TestClient(app) as client:
        yield client


def _buy(client: TestClient, diamond_id: int, headers: dict[str, str]) -> httpx.Response:
    return client.post(f"/api/v2/diamonds/{diamond_id}/purchase", headers=headers, json={"reference": "PO-9"})


def test_twenty_concurrent_retries_of_one_key_all_get_the_first_answer(
    make_client: AppFactory, nivoda: NivodaClient, sandbox: RunningSandbox, db: Database, auth: Auth,
    concurrently: Concurrently,
) -> None:
    client = make_client(feed=nivoda)
    [(diamond_id, stone)] = stones_from_sandbox(db, sandbox, 1)
    headers = {**auth("trade"), "Idempotency-Key": "retry-me"}
    responses = concurrently(lambda: _buy(client, diamond_id, headers), RETRIES)
    assert len(sandbox.inventory.orders) == 1, "exactly one order reached the feed"
    assert [r.status_code for r in responses] == [201] * RETRIES, {r.status_code: r.text for r in responses}
    bodies = {r.content for r in responses}
    assert len(bodies) == 1, f"every retry got the identical body: {bodies}"
    [order_id] = sandbox.inventory.orders
    assert responses[0].json()["order_id"] == order_id
    assert sandbox.inventory.orders[order_id] == [stone.offer_id]
    assert len(db_rows(db, "SELECT * FROM purchase_history")) == 1


def test_retries_during_a_slow_first_request_get_its_body_or_the_in_progress_answer(
    impatient: TestClient, nivoda: NivodaClient, sandbox: RunningSandbox, db: Database, auth: Auth,
    concurrently: Concurrently,
) -> None:
    [(diamond_id, stone)] = stones_from_sandbox(db, sandbox, 1)
    headers = {**auth("trade"), "Idempotency-Key": "slow-one"}
    nivoda.get(stone.stone_id)  # authenticate now, so the first purchase makes one slow call: the order
    sandbox.inventory.faults.configure(latency_ms=2000)
    first: list[httpx.Response] = []
    first_thread = threading.Thread(target=lambda: first.append(_buy(impatient, diamond_id, headers)))
    first_thread.start()
    deadline = time.monotonic() + 10
    while not db_rows(db, "SELECT 1 FROM purchase_history WHERE status = 'pending'"):
        assert time.monotonic() < deadline, "the first purchase never started"
        time.sleep(0.02)
    retries = concurrently(lambda: _buy(impatient, diamond_id, headers), 5)
    first_thread.join(timeout=30)
    sandbox.inventory.faults.reset()

    [placed] = first
    assert placed.status_code == 201, placed.text
    in_progress = [r for r in retries if r.status_code == 409]
    assert in_progress, "the feed took longer than the wait, so some retries were told to come back"
    for response in retries:
        assert (response.status_code, response.content) in {(201, placed.content), (409, in_progress[0].content)}
    for response in in_progress:
        error = response.json()["error"]
        assert error["code"] == "purchase_in_progress"
        assert "retry" in error["message"].lower()
        assert response.headers["Retry-After"] == in_progress[0].headers["Retry-After"]
        assert int(response.headers["Retry-After"]) >= 1
    later = _buy(impatient, diamond_id, headers)
    assert (later.status_code, later.content) == (201, placed.content), "once done, a retry gets the first body"
    assert len(sandbox.inventory.orders) == 1


def test_another_key_for_a_stone_being_bought_is_told_so_and_a_reused_key_stays_422(
    make_client: AppFactory, nivoda: NivodaClient, sandbox: RunningSandbox, db: Database, auth: Auth
) -> None:
    client = make_client(feed=nivoda)
    [(first, _), (second, _)] = stones_from_sandbox(db, sandbox, 2)
    assert _buy(client, first, {**auth("trade"), "Idempotency-Key": "a"}).status_code == 201
    other_key = _buy(client, first, {**auth("trade"), "Idempotency-Key": "b"})
    assert other_key.status_code == 409
    assert other_key.json()["error"]["code"] == "conflict"
    reused = _buy(client, second, {**auth("trade"), "Idempotency-Key": "a"})
    assert reused.status_code == 422
    assert "already used" in reused.json()["error"]["message"]
