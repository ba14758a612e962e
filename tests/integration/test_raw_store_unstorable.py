"""A record PostgreSQL's jsonb cannot hold (a NUL character, a lone surrogate: both valid JSON) is logged and skipped;
the rest of its page is stored, and the page's progress is recorded as for any other page."""

from __future__ import annotations

import uuid
from typing import Any

from opus.db.pool import Database
from opus.pipeline.raw_store import RawPage, payload_hash, store_page


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
