"""Writing one fetched page: raw rows and the partition's progress in one transaction."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass

import psycopg
from psycopg.types.json import Jsonb

from opus.db.pool import Connection, Database
from opus.db.queries import Queries
from opus.ports import JSON

logger = logging.getLogger(__name__)
RAW = Queries("raw")
RUNS = Queries("runs")
CONSOLIDATE = Queries("consolidate")


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
    return _hash(_canonical(item))


def _canonical(item: JSON) -> str:
    return json.dumps(item, sort_keys=True, separators=(",", ":"), default=str)


def _hash(canonical: str) -> str:
    return hashlib.sha256(canonical.encode()).hexdigest()


# jsonb holds neither U+0000 nor a lone UTF-16 surrogate, and one such string refuses the whole page's insert. Both
# reach a parsed record only from a \u escape in the feed's JSON, and the canonical text writes either as one: a
# text without `\u0000` or `\udXXX` is storable, and only the rare text with one (e.g. an emoji's surrogate pair) is
# walked to be sure.
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|d[89a-f])")
_UNSTORABLE_CHARS = re.compile("[\x00\ud800-\udfff]")


def _holds_unstorable(value: object) -> bool:
    if isinstance(value, str):
        return _UNSTORABLE_CHARS.search(value) is not None
    if isinstance(value, dict):
        return any(_holds_unstorable(k) or _holds_unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_unstorable(v) for v in value)
    return False


def _storable_copy(value: object) -> object:
    """`value` with every character jsonb cannot hold replaced by U+FFFD, for the error log."""
    if isinstance(value, str):
        return _UNSTORABLE_CHARS.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_storable_copy(k): _storable_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable_copy(v) for v in value]
    return value


def stone_id_of(item: object) -> str | None:
    """The supplier stone id (`diamond.id`) that keys a raw row, or None when the record lacks one."""
    if not isinstance(item, dict):
        return None
    diamond = item.get("diamond")
    stone_id = diamond.get("id") if isinstance(diamond, dict) else None
    if isinstance(stone_id, bool) or not isinstance(stone_id, str | int) or str(stone_id) == "":
        return None
    return str(stone_id)


def store_page(db: Database, page: RawPage) -> int | None:
    """Upsert the page's raw rows and advance `next_offset`, atomically; returns the rows written (new or changed).

    Returns None, writing nothing, when another delivery of the same page got there first (the offset
    guard). Records without a stone id cannot be keyed: they go to `error_logs` and the rest are stored.
    """
    with db.transaction() as conn:
        written, _stored = _upsert_items(conn, page.run_id, page.feed, page.items, full_run=page.full_run)
        advanced = conn.execute(
            RUNS.advance_partition,
            {"run_id": page.run_id, "partition": page.partition, "offset": page.offset,
             "next_offset": page.offset + len(page.items), "fetched": len(page.items), "written": written},
        ).rowcount
        if not advanced:
            raise psycopg.Rollback()  # another delivery of this page committed first: keep its result
    return written if advanced else None


def store_items(db: Database, run_id: str, feed: str, items: list[JSON], *, full_run: bool) -> int:
    """Upsert records fetched outside any partition (e.g. stones confirmed one by one); returns how many were
    stored, changed or not (the others were logged and skipped)."""
    with db.transaction() as conn:
        return _upsert_items(conn, run_id, feed, items, full_run=full_run)[1]


@dataclass(frozen=True, slots=True)
class _Skipped:
    record: object
    stone_id: str | None
    field: str | None
    message: str


def _upsert_items(conn: Connection, run_id: str, feed: str, items: list[JSON], *, full_run: bool) -> tuple[int, int]:
    """Rows written (their payload changed), and stones stored (written or unchanged)."""
    rows: dict[str, tuple[JSON, str]] = {}
    skipped: list[_Skipped] = []
    for item in items:
        stone_id = stone_id_of(item)
        if stone_id is None:
            skipped.append(_Skipped(item, None, "diamond.id", "record has no supplier stone id; skipped"))
            continue
        canonical = _canonical(item)
        if _SUSPECT_ESCAPE.search(canonical) and _holds_unstorable(item):
            skipped.append(_Skipped(item, stone_id, None, "record holds a NUL character or a lone surrogate, "
                                    "which PostgreSQL cannot store; skipped"))
            continue
        rows[stone_id] = (item, canonical)  # a stone twice in one page: the later copy wins, ON CONFLICT needs one
    stone_ids = sorted(rows)  # a fixed order: two deliveries of one page lock rows alike, no deadlock
    written = conn.execute(
        RAW.upsert_raw_page,
        {"run_id": run_id, "feed": feed, "stone_ids": stone_ids, "payloads": [Jsonb(rows[s][0]) for s in stone_ids],
         "hashes": [_hash(rows[s][1]) for s in stone_ids]},
    ).rowcount
    if full_run:
        conn.execute(RAW.mark_seen, {"run_id": run_id, "feed": feed, "stone_ids": stone_ids})
    if skipped:
        _record_skipped(conn, run_id, feed, skipped, full_run=full_run)
    return written, len(stone_ids)


def _record_skipped(conn: Connection, run_id: str, feed: str, skipped: list[_Skipped], *, full_run: bool) -> None:
    """Log what could not be stored. A known stone the feed listed with an unstorable record keeps its last good
    data, marked stale as for a mapping failure; in a full run it counts as seen, or it would be a deletion
    candidate whose lookup is skipped in turn, asked about again and again."""
    unstorable = {s.stone_id: s.message for s in skipped if s.stone_id is not None}
    if unstorable:
        stone_ids = sorted(unstorable)
        # The diamond first, then the raw row: the consolidator writes a batch in that order.
        conn.execute(CONSOLIDATE.mark_record_errors,
                     {"feed": feed, "stone_ids": stone_ids, "messages": [unstorable[s] for s in stone_ids]})
        if full_run:
            conn.execute(RAW.mark_seen_unstorable, {"run_id": run_id, "feed": feed, "stone_ids": stone_ids})
    logged = sum(conn.execute(
        RAW.log_skipped_record,
        {"run_id": run_id, "feed": feed, "supplier_stone_id": skip.stone_id, "field": skip.field,
         "message": skip.message, "payload": Jsonb(_storable_copy(skip.record))},
    ).rowcount for skip in skipped)
    if logged:
        # Counted with the mapping errors: the run's summary reports every record it could not use, once.
        conn.execute(RUNS.count_consolidated, {"run_id": run_id, "consolidated": 0, "errors": logged})
        logger.warning("records skipped", extra={"run_id": run_id, "count": logged})
