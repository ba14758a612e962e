"""Operators' routes over rows written directly: the configured feeds, run history by feed, the last 24 hours
listed, consolidation per feed; and a stone's live hold as its caller sees it."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from api_conftest import AppFactory, Auth, stones_from_sandbox
from fastapi.testclient import TestClient

from opus.db.pool import Database
from opus.feeds.nivoda import NivodaClient
from opus.sandbox.runner import RunningSandbox

NOW = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)
FEEDS = """
[feeds.natural]
enabled = true
query = { labgrown = false, availability = ["AVAILABLE"] }

[feeds.labgrown]
enabled = true
query = { labgrown = true, sizes = { from = 0.3 } }

[feeds.retired]
enabled = false
query = {}
"""


def _run(db: Database, feed: str, *, status: str, started: datetime, consolidated: bool = False) -> str:
    run_id = str(uuid.uuid4())
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO run_metadata (run_id, feed, run_type, status, trigger, updated_to, partitions_total,"
            " deadline_at, started_at, consolidation_enqueued_at, failure_reason)"
            " VALUES (%s, %s, 'full', %s, 'api', %s, 0, %s, %s, %s, %s)",
            (run_id, feed, status, started, started + timedelta(hours=6), started,
             started + timedelta(minutes=5) if consolidated else None,
             "feed kept failing" if status == "failed" else None),
        )
    return run_id


def _get(client: TestClient, auth: Auth, path: str, **params: Any) -> Any:
    response = client.get(f"/api/v2{path}", params=params, headers=auth("read"))
    assert response.status_code == 200, response.text
    return response.json()


def test_the_configured_feeds_with_their_latest_run_and_watermark(
    make_client: AppFactory, db: Database, auth: Auth, tmp_path: Path
) -> None:
    feeds_file = tmp_path / "feeds.toml"
    feeds_file.write_text(FEEDS)
    client = make_client(feeds_file=feeds_file, clock=lambda: NOW)
    _run(db, "natural", status="completed", started=NOW - timedelta(days=2))
    latest = _run(db, "natural", status="running", started=NOW - timedelta(hours=1))
    _run(db, "labgrown", status="completed", started=NOW - timedelta(minutes=30))  # newer, another feed
    with db.transaction() as conn:
        conn.execute("INSERT INTO watermarks (feed, value) VALUES ('natural', %s)", (NOW - timedelta(days=2),))

    feeds = _get(client, auth, "/operations/feeds")
    assert [(f["name"], f["enabled"]) for f in feeds] == [("natural", True), ("labgrown", True), ("retired", False)]
    assert feeds[0]["query"] == {"labgrown": False, "availability": ["AVAILABLE"]}
    assert feeds[1]["query"] == {"labgrown": True, "sizes": {"from": 0.3}}
    assert feeds[0]["latest_run"]["run_id"] == latest
    assert feeds[0]["latest_run"]["status"] == "running"
    assert feeds[0]["watermark"] == (NOW - timedelta(days=2)).isoformat().replace("+00:00", "Z")
    assert feeds[1]["watermark"] is None
    assert feeds[2]["latest_run"] is None, "a feed that never ran"

    runs = _get(client, auth, "/operations/runs", feed="natural")
    assert {r["feed"] for r in runs["items"]} == {"natural"}
    assert len(runs["items"]) == 2
    assert _get(client, auth, "/operations/runs", feed="labgrown", status="running")["items"] == []
    assert client.get("/api/v2/operations/runs", params={"feed": "Bad Name"},
                      headers=auth("read")).status_code == 422

    document = client.get("/api/v2/openapi.json").json()
    route = document["paths"]["/api/v2/operations/feeds"]["get"]
    assert route["responses"]["200"]["content"]["application/json"]["schema"]["items"] == {
        "$ref": "#/components/schemas/FeedOut"}
    assert "feed" in {p["name"] for p in document["paths"]["/api/v2/operations/runs"]["get"]["parameters"]}


def test_the_overview_lists_the_failed_runs_and_alerts_of_the_last_24_hours(
    make_client: AppFactory, db: Database, auth: Auth
) -> None:
    client = make_client(clock=lambda: NOW)
    _run(db, "nivoda", status="failed", started=NOW - timedelta(hours=30))  # outside the window
    failed = _run(db, "nivoda", status="failed", started=NOW - timedelta(hours=2))
    with db.transaction() as conn:
        for message, created in (("old", NOW - timedelta(hours=25)), ("run failed", NOW - timedelta(hours=1))):
            conn.execute("INSERT INTO alerts (kind, severity, message, run_id, created_at)"
                         " VALUES ('run_failed', 'error', %s, %s, %s)", (message, failed, created))

    last_24h = _get(client, auth, "/operations/overview")["last_24h"]
    assert (last_24h["failed_runs"], last_24h["alerts"]) == (1, 1)
    assert [(r["run_id"], r["failure_reason"]) for r in last_24h["failed_run_items"]] == [
        (failed, "feed kept failing")]
    assert [(a["message"], a["run_id"]) for a in last_24h["alert_items"]] == [("run failed", failed)]


def test_consolidation_shows_each_feeds_latest(client: TestClient, db: Database, auth: Auth) -> None:
    assert _get(client, auth, "/operations/consolidation")["by_feed"] == []
    _run(db, "natural", status="completed", started=NOW - timedelta(days=1), consolidated=True)
    natural = _run(db, "natural", status="completed", started=NOW - timedelta(hours=3), consolidated=True)
    labgrown = _run(db, "labgrown", status="consolidating", started=NOW - timedelta(hours=1), consolidated=True)
    _run(db, "natural", status="running", started=NOW)  # not sent to consolidation yet

    state = _get(client, auth, "/operations/consolidation")
    assert [(r["feed"], r["run_id"]) for r in state["by_feed"]] == [("labgrown", labgrown), ("natural", natural)]
    assert state["latest"]["run_id"] == labgrown


def test_a_stone_says_whether_its_hold_is_the_callers(
    make_client: AppFactory, db: Database, auth: Auth, sandbox: RunningSandbox, nivoda: NivodaClient
) -> None:
    client = make_client(feed=nivoda)
    ((diamond_id, _),) = stones_from_sandbox(db, sandbox, 1)
    assert client.get(f"/api/v2/diamonds/{diamond_id}", headers=auth("trade")).json()["hold"] is None
    placed = client.post(f"/api/v2/diamonds/{diamond_id}/hold", headers=auth("trade"))
    assert placed.status_code == 201, placed.text

    mine = client.get(f"/api/v2/diamonds/{diamond_id}", headers=auth("trade")).json()
    assert mine["availability"] == "ON_HOLD"
    assert mine["hold"]["mine"] is True
    assert mine["hold"]["status"] == "active"
    theirs = client.get(f"/api/v2/diamonds/{diamond_id}", headers=auth("admin")).json()
    assert theirs["hold"]["mine"] is False, "another credential's hold"


def test_the_docs_page_loads_swagger_ui_from_the_app_without_a_key(client: TestClient) -> None:
    page = client.get("/api/v2/docs")
    assert page.status_code == 200
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert "cdn" not in page.text.lower(), "nothing from a CDN"
    assert {"/api/v2/docs/assets/swagger-ui-bundle.js", "/api/v2/docs/assets/swagger-ui.css"} <= set(assets)
    for url in assets:
        served = client.get(url)  # no credentials: the page must work before anyone signs in
        assert served.status_code == 200, url
        assert served.content
    assert client.get("/api/v2/docs/assets/swagger-ui-bundle.js").headers["content-type"].startswith(
        "text/javascript")
    assert client.get("/api/v2/docs/assets/redoc.standalone.js").status_code == 401, "only the named files"
