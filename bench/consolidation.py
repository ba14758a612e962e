"""Consolidation throughput: `drain` over 20,000 and 100,000 raw rows in PostgreSQL, then again unchanged.

    .venv/bin/python -m bench.consolidation [--sizes 20000,100000]

For each size: a scratch database, the raw rows (real sandbox items fetched through the Nivoda client) copied
into `raw_diamonds_nivoda` as pending, a consolidating run; then
1. the first consolidation (every stone is an insert into `diamonds`), and
2. a second one after marking every raw row pending again, as a full run does for stones it saw unchanged:
   the upsert must skip them. Rows actually rewritten are counted twice over: from `pg_stat_user_tables`
   (n_tup_ins / n_tup_upd deltas) and from `xmin` (rows whose tuple version changed).
`wal_bytes_per_row` is the server's WAL written during the pass divided by the rows consolidated: a
cluster-wide counter, so other databases' writes at the same time inflate it. Each pass runs `drain` with the
default settings (CONSOLIDATOR_BATCH_SIZE 2000, CONSOLIDATOR_CONCURRENCY 2, PG_POOL_MAX; the values used are
printed under "settings") after VACUUM ANALYZE, so that each pass starts from the same state.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import psycopg

from bench.common import (
    DEFAULT_SERVER,
    base_parser,
    bench_settings,
    load_now,
    log,
    report,
    sandbox_items,
    scratch_database,
    stats_delta,
    table_stats,
    wait_for_stats_flush,
)
from opus.local.runtime import LocalRuntime
from opus.pipeline.consolidator import drain
from opus.pipeline.raw_store import payload_hash, stone_id_of

FEED = "nivoda"


def load_raw_rows(url: str, items: list[dict[str, Any]], run_id: str) -> None:
    """A consolidating full run and its raw rows, all pending, as the page workers would have left them."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO run_metadata (run_id, feed, run_type, status, updated_to, deadline_at, partitions_total)"
            " VALUES (%s, %s, 'full', 'consolidating', now(), now() + interval '6 hours', 1)",
            (run_id, FEED),
        )
        with conn.cursor().copy(
            "COPY raw_diamonds_nivoda (feed, supplier_stone_id, payload, payload_hash, run_id, seen_run_id) FROM STDIN"
        ) as copy:
            for item in items:
                copy.write_row((FEED, stone_id_of(item), json.dumps(item), payload_hash(item), run_id, run_id))


def vacuum(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) raw_diamonds_nivoda, diamonds")


def wal_position(url: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    return str(row[0]) if row else "0/0"


def wal_since(url: str, start: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (start,)).fetchone()
    return int(row[0]) if row else 0


def table_sizes(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pg_total_relation_size('diamonds'), pg_total_relation_size('raw_diamonds_nivoda')"
        ).fetchone()
    diamonds, raw = (int(v) for v in row) if row else (0, 0)
    return {"diamonds": diamonds, "raw_diamonds_nivoda": raw}


def consolidate_pass(url: str, run_id: str, settings_overrides: dict[str, Any]) -> dict[str, Any]:
    """One timed `drain`; the runtime (and its connections) is closed before the counters are read."""
    before = {t: table_stats(url, t) for t in ("diamonds", "raw_diamonds_nivoda")}
    sizes_before = table_sizes(url)
    wal_start = wal_position(url)
    settings = bench_settings(url, **settings_overrides)
    load = load_now()
    with LocalRuntime(settings) as runtime:
        started = time.perf_counter()
        result = drain(runtime.deps, run_id, FEED)
        seconds = time.perf_counter() - started
    wal = wal_since(url, wal_start)
    sizes_after = table_sizes(url)
    wait_for_stats_flush()
    after = {t: table_stats(url, t) for t in ("diamonds", "raw_diamonds_nivoda")}
    return {
        "seconds": round(seconds, 2), "consolidated": result.consolidated, "errors": result.errors,
        "rows_per_s": round(result.consolidated / seconds), "load_at_start": load,
        "diamonds_tuples": stats_delta(before["diamonds"], after["diamonds"]),
        "raw_tuples": stats_delta(before["raw_diamonds_nivoda"], after["raw_diamonds_nivoda"]),
        "wal_bytes_per_row": round(wal / max(result.consolidated, 1)),
        "table_growth_mb": {t: round((sizes_after[t] - sizes_before[t]) / 2**20, 1) for t in sizes_after},
    }


def mark_all_pending(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE raw_diamonds_nivoda SET pending = true, claimed_by = NULL, claimed_until = NULL")


def snapshot_xmin(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE bench_xmin AS SELECT id, xmin::text AS x FROM diamonds")


def rewritten_since_snapshot(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM diamonds d JOIN bench_xmin b USING (id) WHERE d.xmin::text <> b.x"
        ).fetchone()
        conn.execute("DROP TABLE bench_xmin")
    return int(row[0]) if row else 0


def bench_size(server: str, items: list[dict[str, Any]], overrides: dict[str, Any]) -> dict[str, Any]:
    n = len(items)
    with scratch_database(server, f"consolidate_{n}") as url:
        run_id = str(uuid.uuid4())
        log(f"{n} rows: loading raw rows")
        load_raw_rows(url, items, run_id)
        vacuum(url)
        log(f"{n} rows: first consolidation")
        first = consolidate_pass(url, run_id, overrides)
        mark_all_pending(url)
        vacuum(url)
        snapshot_xmin(url)
        log(f"{n} rows: second consolidation, nothing changed")
        second = consolidate_pass(url, run_id, overrides)
        second["rows_rewritten_by_xmin"] = rewritten_since_snapshot(url)
    return {"raw_rows": n, "first (all inserts)": first, "second (nothing changed)": second}


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--sizes", default="20000,100000", help="comma-separated raw row counts")
    parser.add_argument("--concurrency", type=int, default=None, help="CONSOLIDATOR_CONCURRENCY (default: 2)")
    parser.add_argument("--batch-size", type=int, default=None, help="CONSOLIDATOR_BATCH_SIZE (default: 2000)")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    overrides: dict[str, Any] = {}
    if args.concurrency:
        overrides["consolidator_concurrency"] = args.concurrency
    if args.batch_size:
        overrides["consolidator_batch_size"] = args.batch_size

    log(f"fetching {sizes[-1]} items from a sandbox through the Nivoda client")
    with sandbox_items(sizes[-1]) as fetched:
        items = fetched.items
    log(f"fetched in {fetched.seconds:.1f} s ({fetched.ms_per_page:.1f} ms per page)")
    figures: dict[str, Any] = {"settings": overrides or "defaults", "sizes": {}}
    for n in sizes:
        figures["sizes"][str(n)] = bench_size(args.server, items[:n], overrides)
    report("consolidation", figures, args.json_out)


# The interface of bench/run_all.py (bench/README.md): one size, fetched once, consolidated twice.
SMOKE_SCALE: dict[str, int] = {"rows": 200}
FULL_SCALE: dict[str, int] = {"rows": 100_000}


def run(scale: dict[str, int], server: str = DEFAULT_SERVER) -> dict[str, Any]:
    with sandbox_items(scale["rows"]) as fetched:
        figures = bench_size(server, fetched.items, {})
    first, second = figures["first (all inserts)"], figures["second (nothing changed)"]
    per_row = "Python CPU per row (claim transfer, JSON parsing, mapping, hashing) under one interpreter lock"
    return {
        "key": "consolidation", "title": "Consolidation", "command": ".venv/bin/python -m bench.consolidation",
        "scale": dict(scale),
        "figures": [
            {"name": "`drain`, first pass (all inserts)", "value": first["rows_per_s"], "unit": "rows/s",
             "higher_is_better": True, "limit": per_row},
            {"name": "`drain`, nothing changed", "value": second["rows_per_s"], "unit": "rows/s",
             "higher_is_better": True, "limit": per_row + "; unchanged rows are skipped only at the upsert"},
            {"name": "rows of `diamonds` rewritten when nothing changed", "value": second["rows_rewritten_by_xmin"],
             "unit": "rows", "higher_is_better": False, "limit": "the upsert's WHERE skips unchanged rows"},
        ],
        "details": figures,
    }


if __name__ == "__main__":
    main()
