"""A purchase whose API process died before the feed's answer was stored: housekeeping alerts once after
PURCHASE_PENDING_ALERT_S, and an admin who checked Nivoda resolves it, so that its Idempotency-Key gets a definite
answer and the stone is sold or free again. The death is a request ended at the feed call, where a SIGKILL
would end it (with the order sent to the sandbox over HTTP, or not); the clock is stepped."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from api_conftest import Auth, db_rows, diamond_row, stones_from_sandbox
from click.testing import CliRunner
from fastapi.testclient import TestClient

from opus.adapters.postgres_state import PostgresWatermarkStore
from opus.api.app import create_app
from opus.api.context import ApiContext, ReplayWait
from opus.api.services import purchases
from opus.cli import main
from opus.config import Settings
from opus.db.pool import Database
from opus.feeds.nivoda import NivodaClient
from opus.pipeline.deps import PipelineDeps
from opus.pipeline.housekeeping import run_housekeeping
from opus.sandbox.runner import RunningSandbox
from opus.testing.fakes import InMemoryWorkQueue, RecordingAlerts, SteppableClock


class ProcessKilled(BaseException):
    """Unwinds the request as a kill would: nothing after the feed call runs (no `except Exception` sees it)."""


class DiesAtTheOrder:
    """The sandbox-backed client, except that the process dies at the order: after sending it, or before."""

    def __init__(self, feed: NivodaClient, *, order_reaches_feed: bool) -> None:
        self._feed = feed
        self._reaches = order_reaches_feed

    def order(self, offer_id: str, *, reference: str | None = None, comment: str | None = None) -> str:
        if self._reaches:
            self._feed.order(offer_id, reference=reference, comment=comment)
        raise ProcessKilled

    def __getattr__(self, name: str) -> Any:
        return getattr(self._feed, name)


@pytest.fixture
def clock() -> SteppableClock:
    return SteppableClock()


@pytest.fixture
def client(db: Database, settings: Settings, nivoda: NivodaClient, clock: SteppableClock) -> Iterator[TestClient]:
    """Repeats wait only 0.2 s for a first answer that, here, never comes."""
    app = create_app(db=db, settings=settings, feed=nivoda, control=None, clock=clock.now,
                     replay_wait=ReplayWait(timeout_s=0.2, poll_s=0.05))
    with TestClient(app) as test_client:
        yield test_client


def _principal(db: Database, scope: str) -> str:
    [row] = db_rows(db, "SELECT id FROM api_keys WHERE name = %s", f"test {scope}")
    return f"key:{row['id']}"


def _orphan(client: TestClient, db: Database, nivoda: NivodaClient, diamond_id: int, key: str, *,
            order_reaches_feed: bool) -> None:
    """Run the trade key's purchase through the real service until its process dies at the feed."""
    ctx: ApiContext = client.app.state.opus  # type: ignore[attr-defined]
    dying = dataclasses.replace(ctx, feed=DiesAtTheOrder(nivoda, order_reaches_feed=order_reaches_feed))
    with pytest.raises(ProcessKilled):
        purchases.purchase(dying, diamond_id, key, _principal(db, "trade"))


def _buy(client: TestClient, diamond_id: int, headers: dict[str, str]) -> httpx.Response:
    return client.post(f"/api/v2/diamonds/{diamond_id}/purchase", headers=headers)


def _resolve(client: TestClient, purchase_id: int, headers: dict[str, str], body: Any) -> httpx.Response:
    return client.post(f"/api/v2/purchases/{purchase_id}/resolve", headers=headers, json=body)


def _housekeeper(db: Database, settings: Settings, nivoda: NivodaClient, clock: SteppableClock,
                 alerts: RecordingAlerts) -> PipelineDeps:
    return PipelineDeps(db=db, feed=nivoda, queue=InMemoryWorkQueue(clock), watermarks=PostgresWatermarkStore(db),
                        alerts=alerts, clock=clock, settings=settings)


def test_an_orphan_whose_order_reached_the_feed_is_alerted_once_and_resolved_as_ordered(
    client: TestClient, db: Database, settings: Settings, nivoda: NivodaClient, sandbox: RunningSandbox,
    clock: SteppableClock, auth: Auth,
) -> None:
    [(diamond_id, stone)] = stones_from_sandbox(db, sandbox, 1)
    _orphan(client, db, nivoda, diamond_id, "orphan-1", order_reaches_feed=True)
    [(order_id, offers)] = sandbox.inventory.orders.items()
    assert offers == [stone.offer_id]
    key_headers = {**auth("trade"), "Idempotency-Key": "orphan-1"}
    stuck = _buy(client, diamond_id, key_headers)
    assert (stuck.status_code, stuck.json()["error"]["code"]) == (409, "purchase_in_progress")
    assert _buy(client, diamond_id, {**auth("trade"), "Idempotency-Key": "another"}).status_code == 409

    alerts = RecordingAlerts()
    housekeeper = _housekeeper(db, settings, nivoda, clock, alerts)
    clock.advance(settings.purchase_pending_alert_s - 1)
    assert run_housekeeping(housekeeper).overdue_purchases == []
    clock.advance(2)
    [purchase_id] = run_housekeeping(housekeeper).overdue_purchases
    run_housekeeping(housekeeper)
    [alert] = alerts.raised
    assert alert.kind == "purchase_pending"
    assert alert.details is not None
    assert alert.details["purchase_id"] == purchase_id
    assert (alert.details["offer_id"], alert.details["customer_order_number"]) == (stone.offer_id, "orphan-1")
    assert f"opus purchases resolve {purchase_id}" in alert.message

    [listed] = client.get("/api/v2/purchases/pending", headers=auth("admin")).json()
    assert (listed["id"], listed["status"], listed["customer_order_number"]) == (purchase_id, "pending", "orphan-1")
    ordered = {"outcome": "ordered", "order_id": order_id}
    assert _resolve(client, purchase_id, auth("trade"), ordered).status_code == 403
    assert client.get("/api/v2/purchases/pending", headers=auth("trade")).status_code == 403
    resolved = _resolve(client, purchase_id, auth("admin"), ordered)
    assert resolved.status_code == 200, resolved.text
    record = resolved.json()
    assert (record["status"], record["feed_order_id"]) == ("placed", order_id)
    assert record["resolved_by"] == _principal(db, "admin")

    assert diamond_row(db, diamond_id)["availability"] == "SOLD"
    [change] = db_rows(db, "SELECT * FROM availability_history WHERE diamond_id = %s", diamond_id)
    assert (change["new_value"], change["changed_by"]) == ("SOLD", _principal(db, "admin"))
    retry = _buy(client, diamond_id, key_headers)
    assert retry.status_code == 201, retry.text
    assert (retry.json()["status"], retry.json()["order_id"], retry.json()["purchase_id"]) == (
        "placed", order_id, purchase_id)
    again = _resolve(client, purchase_id, auth("admin"), ordered)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "conflict")
    assert client.get("/api/v2/purchases/pending", headers=auth("admin")).json() == []
    assert len(sandbox.inventory.orders) == 1, "nothing ordered the stone again"


def test_an_orphan_resolved_as_failed_frees_the_stone_and_its_key_answers_the_failure(
    client: TestClient, db: Database, nivoda: NivodaClient, sandbox: RunningSandbox, auth: Auth,
) -> None:
    [(diamond_id, _)] = stones_from_sandbox(db, sandbox, 1)
    _orphan(client, db, nivoda, diamond_id, "orphan-2", order_reaches_feed=False)
    assert sandbox.inventory.orders == {}
    [pending] = db_rows(db, "SELECT id FROM purchase_history WHERE status = 'pending'")
    purchase_id = int(pending["id"])
    for refused in ({"outcome": "ordered"}, {"outcome": "ordered", "order_id": 123},
                    {"outcome": "failed", "reason": ""}, {"outcome": "failed", "reason": True},
                    {"outcome": "lost", "reason": "x"}, {"outcome": "failed", "reason": "x", "order_id": "o"}):
        assert _resolve(client, purchase_id, auth("admin"), refused).status_code == 422, refused
    missing = _resolve(client, purchase_id + 1, auth("admin"), {"outcome": "failed", "reason": "x"})
    assert missing.status_code == 404

    failed = {"outcome": "failed", "reason": "no order for this offer in Nivoda"}
    resolved = _resolve(client, purchase_id, auth("admin"), failed)
    assert resolved.status_code == 200, resolved.text
    assert (resolved.json()["status"], resolved.json()["error"]) == ("failed", failed["reason"])
    key_headers = {**auth("trade"), "Idempotency-Key": "orphan-2"}
    retry = _buy(client, diamond_id, key_headers)
    assert (retry.status_code, retry.json()["error"]["code"]) == (502, "feed_error")
    assert failed["reason"] in retry.json()["error"]["message"]
    assert _buy(client, diamond_id, key_headers).content == retry.content, "the key keeps one answer"
    assert _resolve(client, purchase_id, auth("admin"), failed).status_code == 409

    assert diamond_row(db, diamond_id)["availability"] == "AVAILABLE"
    bought = _buy(client, diamond_id, {**auth("trade"), "Idempotency-Key": "a-new-key"})
    assert bought.status_code == 201, "the stone is free for another purchase"
    assert len(sandbox.inventory.orders) == 1


def test_the_cli_lists_and_resolves_an_orphan(
    client: TestClient, db: Database, database_url: str, nivoda: NivodaClient, sandbox: RunningSandbox,
    keys: dict[str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    [(diamond_id, _)] = stones_from_sandbox(db, sandbox, 1)
    _orphan(client, db, nivoda, diamond_id, "orphan-3", order_reaches_feed=False)
    monkeypatch.setenv("DATABASE_URL", database_url)
    runner = CliRunner()
    listed = runner.invoke(main, ["purchases", "pending"])
    assert listed.exit_code == 0, listed.output
    assert '"customer_order_number": "orphan-3"' in listed.output
    [pending] = db_rows(db, "SELECT id FROM purchase_history WHERE status = 'pending'")
    both = runner.invoke(main, ["purchases", "resolve", str(pending["id"]), "--ordered", "o", "--failed", "x"])
    assert both.exit_code == 2, "exactly one outcome"
    done = runner.invoke(main, ["purchases", "resolve", str(pending["id"]), "--failed", "not in Nivoda"])
    assert done.exit_code == 0, done.output
    [row] = db_rows(db, "SELECT status, resolved_by FROM purchase_history")
    assert row["status"] == "failed"
    assert str(row["resolved_by"]).startswith("cli:")
    assert diamond_row(db, diamond_id)["availability"] == "AVAILABLE"


class ResolvedWhileAtTheFeed:
    """The sandbox-backed client, except that an admin resolves the purchase as failed while the order is at
    the feed (the process was slow, not dead), before the feed's answer comes back."""

    def __init__(self, feed: NivodaClient, resolve: Any) -> None:
        self._feed = feed
        self._resolve = resolve

    def order(self, offer_id: str, *, reference: str | None = None, comment: str | None = None) -> str:
        order_id = self._feed.order(offer_id, reference=reference, comment=comment)
        self._resolve()
        return order_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self._feed, name)


def test_a_late_answer_from_the_feed_keeps_the_resolution(
    client: TestClient, db: Database, nivoda: NivodaClient, sandbox: RunningSandbox, auth: Auth,
) -> None:
    [(diamond_id, _)] = stones_from_sandbox(db, sandbox, 1)

    def resolve() -> None:
        [pending] = db_rows(db, "SELECT id FROM purchase_history WHERE status = 'pending'")
        response = _resolve(client, int(pending["id"]), auth("admin"), {"outcome": "failed", "reason": "not seen"})
        assert response.status_code == 200, response.text

    ctx: ApiContext = client.app.state.opus  # type: ignore[attr-defined]
    slow = dataclasses.replace(ctx, feed=ResolvedWhileAtTheFeed(nivoda, resolve))
    answer = purchases.purchase(slow, diamond_id, "late", _principal(db, "trade"))
    assert answer.status == 502, "the key keeps the one answer it was given: the resolution's"
    retry = _buy(client, diamond_id, {**auth("trade"), "Idempotency-Key": "late"})
    assert (retry.status_code, retry.content) == (502, answer.body.encode())
    [row] = db_rows(db, "SELECT status, feed_order_id FROM purchase_history")
    assert (row["status"], row["feed_order_id"]) == ("failed", None)
