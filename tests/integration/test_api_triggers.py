"""Trigger routes: admin only, 503 without pipeline control, and wired to the real local control.

The pipeline's own behaviour behind these routes is tested with the pipeline; here only the HTTP contract.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from api_conftest import AppFactory, Auth
from fastapi.testclient import TestClient

from opus.config import Settings
from opus.db.pool import Database
from opus.feeds.nivoda import NivodaClient
from opus.local.runtime import LocalRuntime

TRIGGERS = {
    "run": {"type": "full"},
    "consolidate": {"run_id": "00000000-0000-0000-0000-000000000001", "force": True},
    "retry-partitions": {"run_id": "00000000-0000-0000-0000-000000000001"},
    "delete-run": {"run_id": "00000000-0000-0000-0000-000000000001"},
}


@pytest.mark.parametrize("name", sorted(TRIGGERS))
def test_triggers_need_the_admin_scope(client: TestClient, auth: Auth, name: str) -> None:
    path = f"/api/v2/triggers/{name}"
    assert client.post(path, json=TRIGGERS[name]).status_code == 401
    for scope in ("read", "trade"):
        response = client.post(path, json=TRIGGERS[name], headers=auth(scope))
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("name", sorted(TRIGGERS))
def test_without_pipeline_control_triggers_are_503(client: TestClient, auth: Auth, name: str) -> None:
    response = client.post(f"/api/v2/triggers/{name}", json=TRIGGERS[name], headers=auth("admin"))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "control_unavailable"


@pytest.mark.parametrize(
    ("name", "body"),
    [("run", {"type": "weekly"}), ("run", {}), ("consolidate", {"run_id": "x"}), ("delete-run", {"run_id": 5}),
     ("retry-partitions", {"run_id": str(uuid.UUID(int=1)), "extra": True})],
)
def test_malformed_trigger_bodies_are_422(client: TestClient, auth: Auth, name: str, body: object) -> None:
    response = client.post(f"/api/v2/triggers/{name}", json=body, headers=auth("admin"))
    assert response.status_code == 422


@pytest.fixture
def runtime(db: Database, settings: Settings, nivoda: NivodaClient) -> Iterator[LocalRuntime]:
    with LocalRuntime(settings, db=db, feed=nivoda) as rt:
        yield rt


def test_triggers_reach_the_pipeline_control(make_client: AppFactory, runtime: LocalRuntime, auth: Auth) -> None:
    client = make_client(control=runtime.control)
    started = client.post("/api/v2/triggers/run", json={"type": "full"}, headers=auth("admin"))
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    assert uuid.UUID(run_id)
    again = client.post("/api/v2/triggers/run", json={"type": "incremental"}, headers=auth("admin"))
    assert again.status_code == 409, "one active run per feed"
    assert again.json()["error"]["code"] == "conflict"
    deleting = client.post("/api/v2/triggers/delete-run", json={"run_id": run_id}, headers=auth("admin"))
    assert deleting.status_code == 409, "a running run cannot be deleted"
    unknown = client.post("/api/v2/triggers/consolidate", json={"run_id": str(uuid.uuid4())}, headers=auth("admin"))
    assert unknown.status_code == 404
    run = client.get(f"/api/v2/analytics/runs/{run_id}", headers=auth("read")).json()
    assert run["trigger"] == "api"
    assert run["partitions"], "the plan's partitions are visible"
