"""Analytics routes over rows written directly: summary, runs with partitions, suppliers, errors, alerts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from api_conftest import Auth, insert_diamonds
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from opus.db.pool import Database

BASE = datetime(2030, 3, 1, 2, 0, tzinfo=UTC)


def _run(db: Database, *, status: str, started: datetime, partitions: int = 0) -> str:
    run_id = str(uuid.uuid4())
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO run_metadata (run_id, feed, run_type, status, trigger, updated_to, partitions_total,"
            " deadline_at, started_at) VALUES (%s, 'nivoda', 'full', %s, 'api', %s, %s, %s, %s)",
            (run_id, status, started, partitions, started + timedelta(hours=6), started),
        )
        for p in range(partitions):
            conn.execute(
                "INSERT INTO partition_progress (run_id, partition, ppc_from, ppc_to, estimated, status)"
                " VALUES (%s, %s, %s, %s, 100, %s)",
                (run_id, p, p * 1000, (p + 1) * 1000, "succeeded" if p else "failed"),
            )
    return run_id


def _get(client: TestClient, auth: Auth, path: str, **params: Any) -> Any:
    response = client.get(f"/api/v2/analytics/{path}", params=params, headers=auth("read"))
    assert response.status_code == 200, response.text
    return response.json()


def test_summary(client: TestClient, db: Database, auth: Auth) -> None:
    empty = _get(client, auth, "summary")
    assert empty["by_status"] == {}
    assert empty["prices"]["priced"] == 0
    assert empty["last_run"] is None
    insert_diamonds(db, [
        {"feed_price": Decimal("100.00")}, {"feed_price": Decimal("200.00"), "lab_grown": True},
        {"feed_price": Decimal("300.00"), "availability": "ON_HOLD"}, {"status": "deleted"}, {"price": None},
    ])
    _run(db, status="completed", started=BASE)
    latest = _run(db, status="running", started=BASE + timedelta(days=1))
    summary = _get(client, auth, "summary")
    assert summary["by_status"] == {"active": 4, "deleted": 1}
    assert summary["by_availability"] == {"AVAILABLE": 3, "ON_HOLD": 1}
    assert summary["by_lab_grown"] == {"false": 3, "true": 1}
    prices = summary["prices"]
    assert (prices["priced"], prices["unpriced"]) == (3, 1)
    assert (prices["min"], prices["max"], prices["median"], prices["total_value"]) == (
        "120.00", "360.00", "240.00", "720.00")
    assert summary["last_run"]["run_id"] == latest


def test_runs_are_paged_newest_first_and_filtered(client: TestClient, db: Database, auth: Auth) -> None:
    runs = [_run(db, status="completed" if i % 2 else "failed", started=BASE + timedelta(days=i)) for i in range(5)]
    page = _get(client, auth, "runs", limit=2)
    assert [r["run_id"] for r in page["items"]] == [runs[4], runs[3]]
    assert page["next_offset"] == 2
    page = _get(client, auth, "runs", limit=2, offset=4)
    assert [r["run_id"] for r in page["items"]] == [runs[0]]
    assert page["next_offset"] is None
    failed = _get(client, auth, "runs", status="failed")
    assert [r["run_id"] for r in failed["items"]] == [runs[4], runs[2], runs[0]]


def test_one_run_with_its_partitions(client: TestClient, db: Database, auth: Auth) -> None:
    run_id = _run(db, status="failed", started=BASE, partitions=3)
    detail = _get(client, auth, f"runs/{run_id}")
    assert detail["run_id"] == run_id
    assert [(p["partition"], p["status"]) for p in detail["partitions"]] == [
        (0, "failed"), (1, "succeeded"), (2, "succeeded")]
    missing = client.get(f"/api/v2/analytics/runs/{uuid.uuid4()}", headers=auth("read"))
    assert missing.status_code == 404
    assert client.get("/api/v2/analytics/runs/not-a-uuid", headers=auth("read")).status_code == 422


def test_suppliers(client: TestClient, db: Database, auth: Auth) -> None:
    insert_diamonds(db, [
        {"supplier_name": "A", "feed_price": Decimal("100.00")}, {"supplier_name": "A", "feed_price": Decimal("50")},
        {"supplier_name": "B", "feed_price": Decimal("1000.00")}, {"supplier_name": None},
        {"supplier_name": "B", "status": "deleted"},
    ])
    suppliers = _get(client, auth, "suppliers")
    assert [(s["supplier_name"], s["stones"], s["total_value"]) for s in suppliers] == [
        ("", 1, "1200.00"), ("B", 1, "1200.00"), ("A", 2, "180.00")]  # ties by name
    assert len(_get(client, auth, "suppliers", limit=1)) == 1


def test_errors_filtered_by_run_and_paged(client: TestClient, db: Database, auth: Auth) -> None:
    first, second = _run(db, status="completed", started=BASE), _run(db, status="completed", started=BASE)
    with db.transaction() as conn:
        for i in range(5):
            conn.execute(
                "INSERT INTO error_logs (run_id, feed, source, supplier_stone_id, field, message, payload)"
                " VALUES (%s, 'nivoda', 'mapping', %s, 'price', 'price is missing', %s)",
                (first if i < 3 else second, f"S{i}", Jsonb({"i": i})),
            )
    everything = _get(client, auth, "errors")
    assert [e["supplier_stone_id"] for e in everything] == ["S4", "S3", "S2", "S1", "S0"]
    assert "payload" not in everything[0]
    of_first = _get(client, auth, "errors", run_id=first)
    assert [e["supplier_stone_id"] for e in of_first] == ["S2", "S1", "S0"]
    older = _get(client, auth, "errors", before_id=everything[1]["id"], limit=2)
    assert [e["supplier_stone_id"] for e in older] == ["S2", "S1"]


def test_alerts(client: TestClient, db: Database, auth: Auth) -> None:
    run_id = _run(db, status="failed", started=BASE)
    with db.transaction() as conn:
        conn.execute("INSERT INTO alerts (kind, severity, message, run_id, details) VALUES"
                     " ('run_failed', 'error', 'run failed', %s, %s),"
                     " ('slow', 'warning', 'slow run', NULL, NULL)", (run_id, Jsonb({"partitions": [0]})))
    alerts = _get(client, auth, "alerts")
    assert [a["kind"] for a in alerts] == ["slow", "run_failed"]
    assert alerts[1]["details"] == {"partitions": [0]}
    assert [a["kind"] for a in _get(client, auth, "alerts", severity="error")] == ["run_failed"]
    assert [a["kind"] for a in _get(client, auth, "alerts", run_id=run_id)] == ["run_failed"]
    bad = client.get("/api/v2/analytics/alerts", params={"severity": "loud"}, headers=auth("read"))
    assert bad.status_code == 422
