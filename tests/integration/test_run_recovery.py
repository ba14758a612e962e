"""What an operator sees and can do after faults (issue 7, recovery findings): errors counted in full, stale stones
marked, finished messages pruned by every runtime, an active run explained and cancelled."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from opus.api.app import create_app
from opus.api.keys import create_key
from opus.config import load_settings
from opus.db.pool import Database
from opus.db.queries import Queries
from opus.domain.models import RunType
from opus.errors import ConflictError
from opus.local.run_once import run_once
from opus.local.runtime import LocalRuntime
from opus.ports import WORK_QUEUE
from opus.sandbox.runner import RunningSandbox, run_sandbox
from opus.testing.databases import fetch_one

pytestmark = pytest.mark.e2e


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with run_sandbox(diamonds=1_500, seed=43) as sb:
        yield sb


@pytest.fixture
def runtime(db: Database, database_url: str, sandbox: RunningSandbox) -> Iterator[LocalRuntime]:
    settings = load_settings(database_url=database_url, nivoda_endpoint=sandbox.endpoint,
                             nivoda_rate_limit_per_s=10_000, min_records_per_worker=300, max_workers=4)
    with LocalRuntime(settings, db=db) as rt:
        yield rt



def test_the_run_summary_counts_records_without_a_stone_id(
    runtime: LocalRuntime, db: Database, sandbox: RunningSandbox
) -> None:
    sandbox.inventory.faults.configure(malformed={"null_id": 0.03, "price_not_number": 0.03}, seed=2)
    try:
        result = run_once(runtime, RunType.FULL, workers=4, poll_s=0.1)
    finally:
        sandbox.inventory.faults.configure()
    assert result["status"] == "completed", result
    logged = fetch_one(db, "SELECT count(*) FILTER (WHERE source = 'worker') AS unkeyed,"
                     " count(*) FILTER (WHERE source = 'mapping') AS unmappable FROM error_logs WHERE run_id = %s",
                 result["run_id"])
    assert logged["unkeyed"] > 0, "records without a stone id were served"
    assert logged["unmappable"] > 0, "records with a broken price were served"
    assert result["errors"] == logged["unkeyed"] + logged["unmappable"], "the summary counts both kinds"


def test_a_stone_that_later_arrives_malformed_keeps_its_data_and_is_marked(
    runtime: LocalRuntime, db: Database, sandbox: RunningSandbox
) -> None:
    assert run_once(runtime, RunType.FULL, workers=4, poll_s=0.1)["status"] == "completed"
    before = {r["supplier_stone_id"]: r["feed_price"] for r in _diamonds(db)}
    sandbox.inventory.faults.configure(malformed={"price_not_number": 0.05}, seed=3)
    try:
        result = run_once(runtime, RunType.FULL, workers=4, poll_s=0.1)
    finally:
        sandbox.inventory.faults.configure()
    assert result["status"] == "completed", result
    marked = [r for r in _diamonds(db) if r["record_error"] is not None]
    assert marked, "the stones whose latest record was broken are marked"
    assert all(r["status"] == "active" and r["feed_price"] == before[r["supplier_stone_id"]] for r in marked)
    assert all("price" in r["record_error"] for r in marked)
    stale = fetch_one(db, Queries("api_analytics").stale_records)
    assert stale["n"] == len(marked), "analytics shows them"
    # The next good record clears the mark.
    assert run_once(runtime, RunType.FULL, workers=4, poll_s=0.1)["status"] == "completed"
    assert fetch_one(db, Queries("api_analytics").stale_records)["n"] == 0


def _diamonds(db: Database) -> list[dict[str, Any]]:
    with db.connection() as conn:
        return conn.execute("SELECT supplier_stone_id, status, feed_price, record_error FROM diamonds").fetchall()


def test_every_runtime_prunes_finished_messages(runtime: LocalRuntime, db: Database) -> None:
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO queue_messages (queue, message_id, body, state, finished_at)"
            " SELECT %s, 'old-' || n, '{}', 'completed', now() - interval '2 hours' FROM generate_series(1, 50) n",
            (WORK_QUEUE,))
    result = run_once(runtime, RunType.FULL, workers=4, poll_s=0.1)  # `opus run`, not `opus serve`
    assert result["status"] == "completed"
    left = fetch_one(db, "SELECT count(*) AS n FROM queue_messages WHERE message_id LIKE 'old-%%'")
    assert left == {"n": 0}


def _active_planning_run(db: Database, run_type: str) -> str:
    run_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO run_metadata (run_id, feed, run_type, status, updated_to, deadline_at, planner, heartbeat_at)"
            " VALUES (%s, 'nivoda', %s, 'planning', %s, %s, 'elsewhere', %s)",
            (run_id, run_type, now, now + timedelta(hours=6), now))
    return run_id


def test_opus_run_says_what_to_do_when_another_run_type_is_active(runtime: LocalRuntime, db: Database) -> None:
    run_id = _active_planning_run(db, "full")
    with pytest.raises(ConflictError) as refused:
        run_once(runtime, RunType.INCREMENTAL, workers=1)
    assert f"opus runs cancel {run_id}" in str(refused.value)
    assert "opus run --full" in str(refused.value)


def test_an_operator_cancels_an_active_run_through_the_api(runtime: LocalRuntime, db: Database) -> None:
    run_id = _active_planning_run(db, "full")
    app = create_app(db=db, settings=runtime.settings, feed=None, control=runtime.control)
    with TestClient(app) as client:
        trade = {"X-API-Key": create_key(db, "t", "trade")}
        admin = {"X-API-Key": create_key(db, "a", "admin")}
        assert client.post("/api/v2/triggers/cancel-run", json={"run_id": run_id}, headers=trade).status_code == 403
        assert fetch_one(db, "SELECT status FROM run_metadata WHERE run_id = %s", run_id)["status"] == "planning"
        answer = client.post("/api/v2/triggers/cancel-run", json={"run_id": run_id}, headers=admin)
        assert answer.status_code == 200, answer.text
        again = client.post("/api/v2/triggers/cancel-run", json={"run_id": run_id}, headers=admin)
        assert again.status_code == 409
    run = fetch_one(db, "SELECT status, failure_reason FROM run_metadata WHERE run_id = %s", run_id)
    assert run["status"] == "failed"
    assert run["failure_reason"].startswith("cancelled by key:")
    # The feed is free again.
    assert run_once(runtime, RunType.FULL, workers=4, poll_s=0.1)["status"] == "completed"
