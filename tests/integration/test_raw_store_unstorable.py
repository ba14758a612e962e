"""A record PostgreSQL's jsonb cannot hold (a NUL character, a lone surrogate: both valid JSON) is logged and skipped;
the rest of its page is stored, and the page's progress is recorded as for any other page. A known stone whose
record stays unstorable is still listed: seen by a full run (no deletion lookups), kept, and marked stale."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient

from opus.api.app import create_app
from opus.api.keys import create_key
from opus.config import load_settings
from opus.db.pool import Database
from opus.domain.models import RunType
from opus.local.run_once import run_once
from opus.local.runtime import LocalRuntime
from opus.pipeline.raw_store import RawPage, payload_hash, store_page
from opus.sandbox.runner import run_sandbox
from opus.testing.databases import fetch_one


def _run(db: Database) -> str:
    run_id = str(uuid.uuid4())
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO run_metadata (run_id, feed, run_type, status, updated_to, deadline_at, partitions_total)"
            " VALUES (%s, 'nivoda', 'full', 'running', now(), now() + interval '1 hour', 1)", (run_id,))
        conn.execute("INSERT INTO partition_progress (run_id, partition, ppc_from, ppc_to) VALUES (%s, 0, 0, 1000)",
                     (run_id,))
    return run_id


def _item(stone_id: str, lab: str, **extra: Any) -> dict[str, Any]:
    return {"diamond": {"id": stone_id, "certificate": {"lab": lab, **extra}}, "price": 1000}


def test_unstorable_records_are_logged_and_the_rest_of_the_page_is_stored(db: Database) -> None:
    run_id = _run(db)
    items = [
        _item("S-1", "GIA"),
        _item("S-2", "GIA\x00"),  # sent as \u0000
        _item("S-3", "IGI", comment="lone \ud800 surrogate"),
        _item("S-4", "HRD", comment="an emoji 😀 and a literal \\u0000, both storable"),
        {"diamond": {"id": "S-5", "certificate": {"na\x00me": "in a key"}}},
    ]
    assert store_page(db, RawPage(run_id, "nivoda", 0, 0, items, full_run=True)) == 2  # S-1 and S-4
    with db.connection() as conn:
        stored = {r["supplier_stone_id"]: r for r in conn.execute(
            "SELECT supplier_stone_id, payload, payload_hash FROM raw_diamonds_nivoda")}
        errors = conn.execute("SELECT supplier_stone_id, message, payload FROM error_logs ORDER BY supplier_stone_id"
                              ).fetchall()
        progress = conn.execute("SELECT next_offset FROM partition_progress WHERE run_id = %s", (run_id,)).fetchone()
        run = conn.execute("SELECT errors FROM run_metadata WHERE run_id = %s", (run_id,)).fetchone()
    assert set(stored) == {"S-1", "S-4"}
    assert stored["S-4"]["payload"] == items[3], "stored exactly"
    assert stored["S-4"]["payload_hash"] == payload_hash(items[3])
    assert [e["supplier_stone_id"] for e in errors] == ["S-2", "S-3", "S-5"]
    assert all("cannot store" in e["message"] for e in errors)
    assert errors[0]["payload"]["diamond"]["certificate"]["lab"] == "GIA\ufffd", "logged, the character replaced"
    assert progress == {"next_offset": 5}, "the page counts as read"
    assert run == {"errors": 3}
    # The same stone again in a later page (an offset shift): logged and counted once; a keyless record each time.
    assert store_page(db, RawPage(run_id, "nivoda", 0, 5, [_item("S-2", "GIA\x00"), items[4], {"diamond": {}}],
                                  full_run=True)) == 0, "read, nothing in it storable"
    with db.connection() as conn:
        logged = conn.execute("SELECT count(*) FILTER (WHERE supplier_stone_id = 'S-2') AS s2, count(*) AS n"
                              " FROM error_logs").fetchone()
        run = conn.execute("SELECT errors FROM run_metadata WHERE run_id = %s", (run_id,)).fetchone()
    assert logged == {"s2": 1, "n": 4}
    assert run == {"errors": 4}



def test_a_live_stone_whose_record_stays_unstorable_is_kept_marked_and_counted_once(
    db: Database, database_url: str
) -> None:
    with run_sandbox(diamonds=300, seed=47) as sb:
        # A low limit: before the fix each iteration asked the feed about this one stone again, up to the limit.
        settings = load_settings(database_url=database_url, nivoda_endpoint=sb.endpoint, nivoda_rate_limit_per_s=10_000,
                                 min_records_per_worker=150, max_workers=2, delete_confirm_limit=60)
        with LocalRuntime(settings, db=db) as rt:
            assert run_once(rt, RunType.FULL, workers=2, poll_s=0.05)["status"] == "completed"
            removed = sb.inventory.remove(2, seed=3)
            stone = next(s.stone_id for s in sb.inventory.stones())
            sb.inventory.faults.configure(malformed_stones={"nul_in_text": [stone]})  # on every fetch
            result = run_once(rt, RunType.FULL, workers=2, poll_s=0.05)
            assert result["status"] == "completed", result
            run = fetch_one(db, "SELECT errors, candidates_checked, deleted, unconfirmed FROM run_metadata"
                           " WHERE run_id = %s", result["run_id"])
            assert run == {"errors": 1, "candidates_checked": len(removed), "deleted": len(removed),
                           "unconfirmed": 0}, "only the delisted stones were looked up"
            assert fetch_one(db, "SELECT count(*) AS n FROM error_logs WHERE supplier_stone_id = %s", stone) == {"n": 1}
            kept = fetch_one(db, "SELECT status, record_error FROM diamonds WHERE supplier_stone_id = %s", stone)
            assert kept["status"] == "active"
            assert "cannot store" in kept["record_error"]
            app = create_app(db=db, settings=rt.settings, feed=None, control=None)
            with TestClient(app) as client:
                read = {"X-API-Key": create_key(db, "reader", "read")}
                summary = client.get("/api/v2/analytics/summary", headers=read)
                assert summary.status_code == 200, summary.text
                assert summary.json()["stale_records"] == 1
                # The next good record clears the mark.
                sb.inventory.faults.configure()
                assert run_once(rt, RunType.FULL, workers=2, poll_s=0.05)["status"] == "completed"
                assert client.get("/api/v2/analytics/summary", headers=read).json()["stale_records"] == 0
            # A listed stone that cannot even be marked seen (its raw row went with a deleted failed run) is asked
            # about once, not until the limit; it stays live, reported as unconfirmed.
            with db.transaction() as conn:
                conn.execute("DELETE FROM raw_diamonds_nivoda WHERE supplier_stone_id = %s", (stone,))
            sb.inventory.faults.configure(malformed_stones={"nul_in_text": [stone]})
            last = run_once(rt, RunType.FULL, workers=2, poll_s=0.05)
            assert last["status"] == "completed", last
            assert fetch_one(db, "SELECT errors, candidates_checked, unconfirmed FROM run_metadata WHERE run_id = %s",
                        last["run_id"]) == {"errors": 1, "candidates_checked": 1, "unconfirmed": 1}
            kept = fetch_one(db, "SELECT status FROM diamonds WHERE supplier_stone_id = %s", stone)
            assert kept == {"status": "active"}
