"""The trigger routes driving the real pipeline (local queue, sandbox over HTTP): start, retry, consolidate,
delete, with their conflicts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from api_conftest import AppFactory
from fastapi.testclient import TestClient

from opus.config import load_settings
from opus.db.pool import Database
from opus.local.run_once import follow_run
from opus.local.runtime import LocalRuntime
from opus.sandbox.runner import RunningSandbox

Auth = Callable[[str], dict[str, str]]


@pytest.fixture
def runtime(db: Database, database_url: str, sandbox: RunningSandbox) -> Iterator[LocalRuntime]:
    settings = load_settings(
        database_url=database_url, nivoda_endpoint=sandbox.endpoint, nivoda_rate_limit_per_s=10_000,
        min_records_per_worker=20, max_workers=3, page_attempts=1, nivoda_read_attempts=1,
    )
    with LocalRuntime(settings, db=db) as rt:
        yield rt


@pytest.fixture
def api(make_client: AppFactory, runtime: LocalRuntime) -> TestClient:
    return make_client(control=runtime.control)


def start(api: TestClient, auth: Auth, kind: str = "full") -> str:
    response = api.post("/api/v2/triggers/run", json={"type": kind}, headers=auth("admin"))
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert body["type"] == kind
    return str(body["run_id"])


def test_start_a_run_and_refuse_a_second_while_it_is_active(
    api: TestClient, auth: Auth, runtime: LocalRuntime, sandbox: RunningSandbox
) -> None:
    run_id = start(api, auth)
    again = api.post("/api/v2/triggers/run", json={"type": "incremental"}, headers=auth("admin"))
    assert again.status_code == 409
    assert "already active" in again.json()["error"]["message"]
    assert follow_run(runtime, run_id, workers=2, poll_s=0.1)["status"] == "completed"
    detail = api.get(f"/api/v2/analytics/runs/{run_id}", headers=auth("admin")).json()
    assert detail["status"] == "completed"
    assert len(sandbox.inventory.stones()) == sum(p["rows_fetched"] for p in detail["partitions"])


def test_a_bad_run_type_is_a_422(api: TestClient, auth: Auth) -> None:
    response = api.post("/api/v2/triggers/run", json={"type": "weekly"}, headers=auth("admin"))
    assert response.status_code == 422


def test_trade_scope_cannot_trigger(api: TestClient, auth: Auth) -> None:
    assert api.post("/api/v2/triggers/run", json={"type": "full"}, headers=auth("trade")).status_code == 403


def failed_run(api: TestClient, auth: Auth, runtime: LocalRuntime, sandbox: RunningSandbox) -> str:
    run_id = start(api, auth)
    sandbox.inventory.faults.configure(fail_next=[500] * 10)
    try:
        assert follow_run(runtime, run_id, workers=2, poll_s=0.1)["status"] == "failed"
    finally:
        sandbox.inventory.faults.configure()
    return run_id


def test_retry_partitions_then_the_run_completes(
    api: TestClient, auth: Auth, runtime: LocalRuntime, sandbox: RunningSandbox
) -> None:
    run_id = failed_run(api, auth, runtime, sandbox)
    response = api.post("/api/v2/triggers/retry-partitions", json={"run_id": run_id}, headers=auth("admin"))
    assert response.status_code == 202, response.text
    assert response.json()["partitions"] >= 1
    assert follow_run(runtime, run_id, workers=2, poll_s=0.1)["status"] == "completed"
    # A completed run can neither be retried nor deleted, and consolidating it again needs force.
    for route in ("retry-partitions", "delete-run", "consolidate"):
        refused = api.post(f"/api/v2/triggers/{route}", json={"run_id": run_id}, headers=auth("admin"))
        assert refused.status_code == 409, route
    forced = api.post("/api/v2/triggers/consolidate", json={"run_id": run_id, "force": True},
                      headers=auth("admin"))
    assert forced.status_code == 202


def test_delete_a_failed_run(api: TestClient, auth: Auth, runtime: LocalRuntime, sandbox: RunningSandbox) -> None:
    run_id = failed_run(api, auth, runtime, sandbox)
    response = api.post("/api/v2/triggers/delete-run", json={"run_id": run_id}, headers=auth("admin"))
    assert response.status_code == 200, response.text
    assert api.get(f"/api/v2/analytics/runs/{run_id}", headers=auth("admin")).status_code == 404


def test_unknown_runs_are_404(api: TestClient, auth: Auth) -> None:
    unknown = "00000000-0000-0000-0000-00000000abcd"
    for route in ("retry-partitions", "delete-run", "consolidate"):
        response = api.post(f"/api/v2/triggers/{route}", json={"run_id": unknown}, headers=auth("admin"))
        assert response.status_code == 404, route
