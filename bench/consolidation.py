"""Consolidation throughput against its two yardsticks, on the same `diamonds` table in the same run.

    .venv/bin/python -m bench.consolidation [--sizes 20000,100000] [--replicate N]

For each size: a scratch database, the raw rows (real sandbox items fetched through the Nivoda client, or those
items copied under new stone ids with `--replicate`) copied into `raw_diamonds_nivoda` as pending, a consolidating
run; then, each from an empty `diamonds` table after VACUUM ANALYZE:
1. `replaced`: the replaced system's method: map and price in Python, `INSERT ... SELECT FROM unnest(...)
   ON CONFLICT` in batches of 100, a commit per batch (one connection);
2. `copy_merge_limit`: rows already mapped, priced and hashed (untimed), then COPY into staging and one
   `INSERT ... ON CONFLICT`: what the database alone needs to take the rows in;
3. `first`: `drain`, every stone an insert;
4. `unchanged`: every raw row marked pending again (what a full run's `mark_seen` does for stones it saw), then
   `drain` again: it must rewrite nothing. Rows rewritten are counted from `pg_stat_user_tables` and from `xmin`.
`peak_rss_mb` is the resident set of the process that drains (a spawned child of the benchmark, which holds the
fetched items), sampled every 10 ms during the pass;
`workers_peak_rss_mb` that of its consolidation worker processes together (`CONSOLIDATOR_PROCESSES`), which are
started before the timer, as a long-lived runtime has them.
`wal_bytes_per_row` is the server's WAL during the pass per row: a cluster-wide counter, others' writes included.
Each pass runs `drain` with the default settings unless `--concurrency` / `--batch-size` / `--processes` say
otherwise.
"""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

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
from opus.config import Settings
from opus.db.queries import Queries
from opus.domain.mapping import MAPPING_VERSION, map_nivoda_item
from opus.domain.models import Diamond
from opus.local.runtime import LocalRuntime
from opus.pipeline.consolidator import drain
from opus.pipeline.diamond_rows import (
    BUILT_FROM_COLUMNS,
    STAGING_COLUMNS,
    BuiltFrom,
    load_pricing_engine,
    rules_version,
    to_staging_row,
)
from opus.pipeline.payload_text import parse_payload
from opus.pipeline.raw_store import payload_hash, stone_id_of

FEED = "nivoda"
CONSOLIDATE = Queries("consolidate")


def load_raw_rows(url: str, items: list[dict[str, Any]], n: int, run_id: str) -> None:
    """A consolidating full run and `n` raw rows, all pending, as the page workers would have left them. Beyond
    the fetched items, copies of them under new stone ids (`<id>-c<k>`), streamed, so that no copy is held."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO run_metadata (run_id, feed, run_type, status, updated_to, deadline_at, partitions_total)"
            " VALUES (%s, %s, 'full', 'consolidating', now(), now() + interval '6 hours', 1)",
            (run_id, FEED),
        )
        with conn.cursor().copy(
            "COPY raw_diamonds_nivoda (feed, supplier_stone_id, payload, payload_hash, run_id, seen_run_id)"
            " FROM STDIN"
        ) as copy:
            for i in range(n):
                item = items[i % len(items)]
                if i >= len(items):
                    copy_no = i // len(items)
                    item = item | {"diamond": item["diamond"] | {"id": f"{item['diamond']['id']}-c{copy_no}"}}
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
    """One timed `drain`, in a process of its own as a consolidator is (this one holds the fetched items, which
    would otherwise count in its memory); the counters are read after that process has closed its connections."""
    before = {t: table_stats(url, t) for t in ("diamonds", "raw_diamonds_nivoda")}
    sizes_before = table_sizes(url)
    wal_start = wal_position(url)
    settings = bench_settings(url, **settings_overrides)
    load = load_now()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
        timed = child.submit(timed_drain, settings, run_id).result()
    wal = wal_since(url, wal_start)
    sizes_after = table_sizes(url)
    wait_for_stats_flush()
    after = {t: table_stats(url, t) for t in ("diamonds", "raw_diamonds_nivoda")}
    return {
        **timed, "load_at_start": load,
        "diamonds_tuples": stats_delta(before["diamonds"], after["diamonds"]),
        "raw_tuples": stats_delta(before["raw_diamonds_nivoda"], after["raw_diamonds_nivoda"]),
        "wal_bytes_per_row": round(wal / max(timed["consolidated"], 1)),
        "table_growth_mb": {t: round((sizes_after[t] - sizes_before[t]) / 2**20, 1) for t in sizes_after},
    }


def timed_drain(settings: Settings, run_id: str) -> dict[str, Any]:
    """`drain` with its workers started before the timer, as a long-lived runtime has them; peak memory of this
    process and of its worker processes together."""
    rss_before = rss_kb()
    with LocalRuntime(settings) as runtime:
        runtime.deps.preparer.start()
        with RssSampler() as rss:
            started = time.perf_counter()
            result = drain(runtime.deps, run_id, FEED)
            seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 2), "consolidated": result.consolidated, "unchanged": result.unchanged,
        "errors": result.errors, "rows_per_s": round(result.consolidated / seconds),
        "peak_rss_mb": round(rss.peak_kb / 1024, 1), "workers_peak_rss_mb": round(rss.workers_peak_kb / 1024, 1),
        "rss_before_mb": round(rss_before / 1024, 1),
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


def prepared_rows(url: str, run_id: str) -> list[tuple[object, ...]]:
    """Every raw row mapped, priced and hashed, as the consolidator would COPY it (untimed preparation)."""
    out: list[tuple[object, ...]] = []
    with psycopg.connect(url, row_factory=dict_row) as conn:
        engine = load_pricing_engine(conn)
        version = rules_version(conn)
        with conn.cursor(name="raw") as cur:
            cur.execute("SELECT payload::text AS payload, payload_hash FROM raw_diamonds_nivoda ORDER BY id")
            for row in cur:
                d = map_nivoda_item(parse_payload(row["payload"]), FEED)
                if isinstance(d, Diamond):
                    built = BuiltFrom(row["payload_hash"], MAPPING_VERSION, version)
                    out.append(to_staging_row(d, engine, run_id, built)[0])
    return out


def copy_merge_limit(url: str, run_id: str) -> dict[str, Any]:
    """COPY of already-prepared rows into staging, then one INSERT ... ON CONFLICT, in one transaction."""
    rows = prepared_rows(url, run_id)
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        conn.execute(CONSOLIDATE.create_staging)
        with conn.cursor().copy(CONSOLIDATE.copy_staging) as copy:
            for row in rows:
                copy.write_row(row)
        conn.execute(CONSOLIDATE.upsert_from_staging)
        conn.commit()
        seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "rows": len(rows), "rows_per_s": round(len(rows) / seconds)}


def replaced_method(url: str, run_id: str, batch: int = 100) -> dict[str, Any]:
    """The replaced system: read, map and price in Python; `INSERT ... SELECT FROM unnest(...) ON CONFLICT` of
    `batch` rows at a time, committed one by one."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        types = {r["column_name"]: r["data_type"] for r in conn.execute(
            "SELECT column_name, CASE WHEN data_type = 'ARRAY' THEN udt_name ELSE data_type END AS data_type"
            " FROM information_schema.columns WHERE table_name = 'diamonds'")}
    columns = [c for c in STAGING_COLUMNS if c not in BUILT_FROM_COLUMNS]
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    arrays = sql.SQL(", ").join(
        sql.SQL("{}::{}[]").format(sql.Placeholder(), sql.SQL(types[c])) for c in columns)
    updates = sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in columns[2:])
    statement = sql.SQL(
        "INSERT INTO diamonds ({names}) SELECT * FROM unnest({arrays}) "
        "ON CONFLICT (feed, supplier_stone_id) DO UPDATE SET {updates}, updated_at = now()"
    ).format(names=names, arrays=arrays, updates=updates)
    keep = [STAGING_COLUMNS.index(c) for c in columns]
    written = 0
    started = time.perf_counter()
    with psycopg.connect(url, row_factory=dict_row) as read, psycopg.connect(url) as write:
        engine = load_pricing_engine(read)
        with read.cursor(name="raw") as cur:
            cur.execute("SELECT payload FROM raw_diamonds_nivoda ORDER BY id")
            pending: dict[str, tuple[object, ...]] = {}
            for row in cur:
                d = map_nivoda_item(row["payload"], FEED)
                if isinstance(d, Diamond):
                    staging = to_staging_row(d, engine, run_id)[0]
                    pending[d.supplier_stone_id] = tuple(staging[i] for i in keep)
                if len(pending) == batch:
                    written += _insert_unnest(write, statement, list(pending.values()))
                    pending = {}
            if pending:
                written += _insert_unnest(write, statement, list(pending.values()))
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "rows": written, "rows_per_s": round(written / seconds),
            "batch": batch}


def _insert_unnest(conn: psycopg.Connection[Any], statement: sql.Composed, rows: list[tuple[object, ...]]) -> int:
    conn.execute(statement, [list(col) for col in zip(*rows, strict=True)])
    conn.commit()
    return len(rows)


class RssSampler:
    """The peak resident set of this process, and of its child processes together, sampled by a thread (VmRSS of
    /proc/<pid>/status)."""

    def __init__(self) -> None:
        self.peak_kb = 0
        self.workers_peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak_kb = max(self.peak_kb, rss_kb())
            workers = sum(rss_kb(p.pid) for p in multiprocessing.active_children() if p.pid is not None)
            self.workers_peak_kb = max(self.workers_peak_kb, workers)


def rss_kb(pid: int | str = "self") -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except FileNotFoundError:  # a child that just exited
        pass
    return 0


def empty_diamonds(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("TRUNCATE diamonds CASCADE")
        conn.execute("UPDATE raw_diamonds_nivoda SET pending = true, claimed_by = NULL, claimed_until = NULL")
    vacuum(url)


def bench_size(server: str, items: list[dict[str, Any]], n: int, overrides: dict[str, Any]) -> dict[str, Any]:
    with scratch_database(server, f"consolidate_{n}") as url:
        run_id = str(uuid.uuid4())
        log(f"{n} rows: loading raw rows")
        load_raw_rows(url, items, n, run_id)
        vacuum(url)
        log(f"{n} rows: the replaced method")
        replaced = replaced_method(url, run_id)
        empty_diamonds(url)
        log(f"{n} rows: the COPY-merge limit")
        limit = copy_merge_limit(url, run_id)
        empty_diamonds(url)
        log(f"{n} rows: first consolidation")
        first = consolidate_pass(url, run_id, overrides)
        mark_all_pending(url)
        vacuum(url)
        snapshot_xmin(url)
        log(f"{n} rows: second consolidation, nothing changed")
        second = consolidate_pass(url, run_id, overrides)
        second["rows_rewritten_by_xmin"] = rewritten_since_snapshot(url)
    ratios = {
        "first_vs_replaced": round(first["rows_per_s"] / replaced["rows_per_s"], 2),
        "first_vs_copy_merge_limit": round(first["rows_per_s"] / limit["rows_per_s"], 2),
        "unchanged_vs_first": round(second["rows_per_s"] / first["rows_per_s"], 2),
    }
    return {"raw_rows": n, "replaced": replaced, "copy_merge_limit": limit, "first (all inserts)": first,
            "second (nothing changed)": second, "ratios": ratios}


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--sizes", default="20000,100000", help="comma-separated raw row counts")
    parser.add_argument("--concurrency", type=int, default=None, help="CONSOLIDATOR_CONCURRENCY (default: 2)")
    parser.add_argument("--batch-size", type=int, default=None, help="CONSOLIDATOR_BATCH_SIZE (default: 2000)")
    parser.add_argument("--processes", type=int, default=None,
                        help="CONSOLIDATOR_PROCESSES (default: unset, the machine's cores)")
    parser.add_argument("--fetch", type=int, default=100_000,
                        help="items fetched from the sandbox; larger sizes reuse them under new stone ids")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    overrides: dict[str, Any] = {}
    if args.concurrency:
        overrides["consolidator_concurrency"] = args.concurrency
    if args.batch_size:
        overrides["consolidator_batch_size"] = args.batch_size
    if args.processes is not None:
        overrides["consolidator_processes"] = args.processes

    fetch = min(sizes[-1], args.fetch)
    log(f"fetching {fetch} items from a sandbox through the Nivoda client")
    with sandbox_items(fetch) as fetched:
        items = fetched.items
    log(f"fetched in {fetched.seconds:.1f} s ({fetched.ms_per_page:.1f} ms per page)")
    figures: dict[str, Any] = {"settings": overrides or "defaults", "fetched_items": fetch, "sizes": {}}
    for n in sizes:
        figures["sizes"][str(n)] = bench_size(args.server, items, n, overrides)
    report("consolidation", figures, args.json_out)


# The interface of bench/run_all.py (bench/README.md): one size, fetched once, consolidated twice.
SMOKE_SCALE: dict[str, int] = {"rows": 200}
MEMORY_TARGET_MB = 300  # issue 13: at 1,000,000 rows
FULL_SCALE: dict[str, int] = {"rows": 100_000}


def run(scale: dict[str, int], server: str = DEFAULT_SERVER) -> dict[str, Any]:
    """The figures for `scale["rows"]` raw rows (sandbox items, copied under new ids beyond 100,000)."""
    n = scale["rows"]
    with sandbox_items(min(n, 100_000)) as fetched:
        figures = bench_size(server, fetched.items, n, {})
    first, second = figures["first (all inserts)"], figures["second (nothing changed)"]
    replaced, merge_limit = figures["replaced"], figures["copy_merge_limit"]
    # Measured statement by statement (one claimant, 20,000 rows) and by CPU time (40,000 rows, two claimants, two
    # workers): parsing, mapping, pricing and hashing take ~67 us of CPU a row in the workers, the claimant ~30 us,
    # PostgreSQL ~100 us; together they keep both cores busy (96 %), so the first pass is bound by CPU per row.
    per_row = ("the database's work per row, on the cores the worker processes also use: the claim rewrites the "
               "raw row and turns its jsonb payload into text (~40 us), the release rewrites it again (~15 us), "
               "the upsert (~28 us); the COPY-merge limit does the upsert alone, with nothing to map")
    unchanged_limit = ("one claim statement per batch: per row a row lock, one probe of the diamonds key and the "
                       "release's update of the raw row (its partial index on `pending` rules out a HOT update)")
    return {
        "key": "consolidation", "title": "Consolidation", "command": ".venv/bin/python -m bench.consolidation",
        "scale": dict(scale),
        "figures": [
            {"name": "first pass vs the replaced method", "value": first["rows_per_s"], "unit": "rows/s",
             "higher_is_better": True, "baseline": replaced["rows_per_s"],
             "baseline_name": "replaced method (unnest upsert, 100 a batch)",
             "target": round(2.5 * replaced["rows_per_s"], 1), "limit": per_row},
            {"name": "first pass vs the COPY-merge limit", "value": first["rows_per_s"], "unit": "rows/s",
             "higher_is_better": True, "baseline": merge_limit["rows_per_s"],
             "baseline_name": "COPY + one INSERT ... ON CONFLICT of prepared rows",
             "target": round(0.6 * merge_limit["rows_per_s"], 1), "limit": per_row},
            {"name": "nothing changed vs the first pass", "value": second["rows_per_s"], "unit": "rows/s",
             "higher_is_better": True, "baseline": first["rows_per_s"], "baseline_name": "first pass",
             "target": round(4 * first["rows_per_s"], 1),
             "limit": unchanged_limit},
            {"name": "rows of `diamonds` rewritten when nothing changed", "value": second["rows_rewritten_by_xmin"],
             "unit": "rows", "higher_is_better": False, "target": 0,
             "limit": "the upsert's WHERE skips unchanged rows"},
            {"name": f"peak memory of the consolidating process and its workers, first pass, {n:,} rows",
             "value": round(first["peak_rss_mb"] + first["workers_peak_rss_mb"]), "unit": "MB",
             "higher_is_better": False, "target": MEMORY_TARGET_MB,
             "limit": "each process's interpreter and imports; rows stream a batch at a time"},
        ],
        "notes": [f"Memory: the draining process peaked at {first['peak_rss_mb']} MB and its worker processes at "
                  f"{first['workers_peak_rss_mb']} MB together. Batches stream (a claimant holds two batches of "
                  "CONSOLIDATOR_BATCH_SIZE rows), so memory does not grow with the feed; the target is for "
                  "1,000,000 rows, measured here at this scale."],
        "details": figures,
    }


if __name__ == "__main__":
    main()
