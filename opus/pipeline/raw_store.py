"""Writing one fetched page: raw rows and the partition's progress in one transaction."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

import psycopg
from psycopg.types.json import Jsonb

from opus.db.pool import Connection, Database
from opus.db.queries import Queries
from opus.ports import JSON

logger = logging.getLogger(__name__)
RAW = Queries("raw")
RUNS = Queries("runs")


@dataclass(frozen=True, slots=True)
class RawPage:
    run_id: str
    feed: str
    partition: int
    offset: int
    items: list[JSON]
    full_run: bool


def payload_hash(item: JSON) -> str:
    """Content hash of a raw record, independent of key order."""
    canonical = json.dumps(item, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def stone_id_of(item: object) -> str | None:
    """The supplier stone id (`diamond.id`) that keys a raw row, or None when the record lacks one."""
    if not isinstance(item, dict):
        return None
    diamond = item.get("diamond")
    stone_id = diamond.get("id") if isinstance(diamond, dict) else None
    if isinstance(stone_id, bool) or not isinstance(stone_id, str | int) or str(stone_id) == "":
        return None
    return str(stone_id)


def store_page(db: Database, page: RawPage) -> bool:
    """Upsert the page's raw rows and advance `next_offset`, atomically.

    Returns False, writing nothing, when another delivery of the same page got there first (the offset
    guard). Records without a stone id cannot be keyed: they go to `error_logs` and the rest are stored.
    """
    with db.transaction() as conn:
        written = _upsert_items(conn, page.run_id, page.feed, page.items, full_run=page.full_run)
        advanced = conn.execute(
            RUNS.advance_partition,
            {"run_id": page.run_id, "partition": page.partition, "offset": page.offset,
             "next_offset": page.offset + len(page.items), "fetched": len(page.items), "written": written},
        ).rowcount
        if not advanced:
            raise psycopg.Rollback()  # another delivery of this page committed first: keep its result
    return bool(advanced)


def store_items(db: Database, run_id: str, feed: str, items: list[JSON], *, full_run: bool) -> int:
    """Upsert records fetched outside any partition (e.g. stones confirmed one by one); returns rows written."""
    with db.transaction() as conn:
        return _upsert_items(conn, run_id, feed, items, full_run=full_run)


def _upsert_items(conn: Connection, run_id: str, feed: str, items: list[JSON], *, full_run: bool) -> int:
    rows: dict[str, JSON] = {}
    unkeyed: list[object] = []
    for item in items:
        stone_id = stone_id_of(item)
        if stone_id is None:
            unkeyed.append(item)
        else:
            rows[stone_id] = item  # a stone twice in one page: the later copy wins, ON CONFLICT needs one
    stone_ids = sorted(rows)  # a fixed order: two deliveries of one page lock rows alike, no deadlock
    written = conn.execute(
        RAW.upsert_raw_page,
        {"run_id": run_id, "feed": feed, "stone_ids": stone_ids, "payloads": [Jsonb(rows[s]) for s in stone_ids],
         "hashes": [payload_hash(rows[s]) for s in stone_ids]},
    ).rowcount
    if full_run:
        conn.execute(RAW.mark_seen, {"run_id": run_id, "feed": feed, "stone_ids": stone_ids})
    for record in unkeyed:
        conn.execute(
            RUNS.insert_error,
            {"run_id": run_id, "feed": feed, "source": "worker", "supplier_stone_id": None,
             "field": "diamond.id", "message": "record has no supplier stone id; skipped", "payload": Jsonb(record)},
        )
    if unkeyed:
        # Counted with the mapping errors: the run's summary reports every record it could not use.
        conn.execute(RUNS.count_consolidated, {"run_id": run_id, "consolidated": 0, "errors": len(unkeyed)})
        logger.warning("records without a stone id skipped", extra={"run_id": run_id, "count": len(unkeyed)})
    return written
