"""Page store throughput: `store_page` of 50-item pages of real sandbox items, in pages/s.

    .venv/bin/python -m bench.page_store [--items 20000] [--threads 1,4]

For each thread count, in a fresh scratch database:
1. a full run storing every page for the first time (50 inserts per page),
2. a second full run over the same, unchanged payloads (hashes match, so nothing is rewritten, but every
   stone is marked seen and pending again: `mark_seen`),
3. an incremental run over the same unchanged payloads (nothing written at all).
The items are fetched before timing; only `store_page` (one transaction per page) is timed. With N threads,
each thread stores its own partition's pages, as N page workers do.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import (
    DEFAULT_SERVER,
    PAGE_SIZE,
    base_parser,
    load_now,
    log,
    report,
    sandbox_items,
    scratch_database,
    stats_delta,
    table_stats,
    wait_for_stats_flush,
)
from opus.db.pool import Database
from opus.pipeline.raw_store import RawPage, store_page

FEED = "nivoda"


def new_run(db: Database, run_type: str, partitions: int) -> str:
    run_id = str(uuid.uuid4())
    with db.transaction() as conn:
        conn.execute("UPDATE run_metadata SET status = 'completed', finished_at = now() WHERE status = 'running'")
        conn.execute(
            "INSERT INTO run_metadata (run_id, feed, run_type, status, updated_to, deadline_at, partitions_total)"
            " VALUES (%s, %s, %s, 'running', now(), now() + interval '6 hours', %s)",
            (run_id, FEED, run_type, partitions),
        )
        for p in range(partitions):
            conn.execute(
                "INSERT INTO partition_progress (run_id, partition, ppc_from, ppc_to) VALUES (%s, %s, %s, %s)",
                (run_id, p, p * 1000, (p + 1) * 1000),
            )
    return run_id


def store_all(db: Database, pages: list[list[dict[str, Any]]], run_type: str, threads: int) -> dict[str, Any]:
    run_id = new_run(db, run_type, threads)
    # Thread t stores pages t, t + threads, ... as its partition t, at consecutive offsets.
    shares = [pages[t::threads] for t in range(threads)]

    def work(partition: int) -> int:
        stored = 0
        for i, page in enumerate(shares[partition]):
            raw = RawPage(run_id, FEED, partition, i * PAGE_SIZE, page, full_run=run_type == "full")
            stored += store_page(db, raw) is not None
        return stored

    load = load_now()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        stored = sum(pool.map(work, range(threads)))
    seconds = time.perf_counter() - started
    if stored != len(pages):
        raise RuntimeError(f"{stored} of {len(pages)} pages stored")
    return {"pages": stored, "seconds": round(seconds, 2), "pages_per_s": round(stored / seconds, 1),
            "rows_per_s": round(stored * PAGE_SIZE / seconds), "ms_per_page": round(1000 * seconds / stored, 2),
            "load_at_start": load}


def bench_threads(server: str, pages: list[list[dict[str, Any]]], threads: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with scratch_database(server, f"pages_{threads}") as url:
        for name, run_type in (("first full run (inserts)", "full"), ("second full run (unchanged)", "full"),
                               ("incremental run (unchanged)", "incremental")):
            log(f"{threads} thread(s): {name}")
            before = table_stats(url, "raw_diamonds_nivoda")
            with Database(url, max_size=max(4, threads)) as db:
                out[name] = store_all(db, pages, run_type, threads)
            wait_for_stats_flush()
            out[name]["raw_tuples"] = stats_delta(before, table_stats(url, "raw_diamonds_nivoda"))
    return out


def measure(server: str, count: int, thread_counts: list[int]) -> dict[str, Any]:
    log(f"fetching {count} items from a sandbox through the Nivoda client")
    with sandbox_items(count) as fetched:
        items = fetched.items
    pages = [items[i:i + PAGE_SIZE] for i in range(0, len(items), PAGE_SIZE)]
    figures: dict[str, Any] = {"items": len(items), "page_size": PAGE_SIZE, "threads": {}}
    for threads in thread_counts:
        figures["threads"][str(threads)] = bench_threads(server, pages, threads)
    return figures


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--threads", default="1,4")
    args = parser.parse_args()
    report("page_store", measure(args.server, args.items, [int(t) for t in args.threads.split(",")]),
           args.json_out)


# The interface of bench/run_all.py (bench/README.md): one thread, then `threads` threads.
SMOKE_SCALE: dict[str, int] = {"items": 200, "threads": 1}
FULL_SCALE: dict[str, int] = {"items": 20_000, "threads": 4}
FIRST = "first full run (inserts)"


def run(scale: dict[str, int], server: str = DEFAULT_SERVER) -> dict[str, Any]:
    figures = measure(server, scale["items"], sorted({1, scale["threads"]}))
    rows: list[dict[str, Any]] = []
    for threads, cases in figures["threads"].items():
        first = cases[FIRST]["pages_per_s"]
        for name, case in cases.items():
            rows.append({
                "name": f"{name}, {threads} thread(s)", "value": case["pages_per_s"], "unit": "pages/s",
                "higher_is_better": True,
                **({"baseline": first, "baseline_name": "first full run"} if name != FIRST else {}),
                "limit": "one transaction per page: the upsert of 50 rows and its commit (a WAL flush)"})
    return {"key": "page_store", "title": "Page store", "command": ".venv/bin/python -m bench.page_store",
            "scale": dict(scale), "figures": rows, "details": figures}


if __name__ == "__main__":
    main()
