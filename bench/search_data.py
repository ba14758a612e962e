"""The pieces of the search benchmark that talk to PostgreSQL directly: a large `diamonds` table made cheaply,
the raw-SQL baseline, and what a page query reads (EXPLAIN (ANALYZE, BUFFERS)).

Consolidating a million stones through `drain` would take most of an hour on two cores, and would measure the
consolidator rather than the search. So `pipeline` stones go through the real pipeline, and the table is then
multiplied in SQL: every copy gets new feed ids (`<id>~<n>`) and its prices moved by n per mille, so that keyset
order and the price distribution stay realistic and no two copies tie on every sort key.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from bench.common import summarize
from bench.consolidation import load_raw_rows
from opus.local.runtime import LocalRuntime
from opus.pipeline.consolidator import drain
from opus.sandbox.inventory import Inventory
from opus.sandbox.render import render_item

Statement = tuple[sql.Composed, dict[str, Any]]
# The columns a copy takes with a new value; every other stored column is copied as it is.
_RENAMED = {
    "supplier_stone_id": sql.SQL("d.supplier_stone_id || '~' || n"),
    "offer_id": sql.SQL("d.offer_id || '~' || n"),
    "price": sql.SQL("round(d.price * (1 + n / 1000.0), 2)"),
    "feed_price": sql.SQL("round(d.feed_price * (1 + n / 1000.0), 2)"),
}


def consolidate(runtime: LocalRuntime, url: str, count: int) -> float:
    """`count` sandbox stones consolidated into `diamonds` by `drain`; returns the consolidation's seconds."""
    inventory = Inventory(count, seed=29)
    items = [render_item(s, inventory.supplier_of(s)) for s in inventory.stones()]
    run_id = str(uuid.uuid4())
    load_raw_rows(url, items, len(items), run_id)
    started = time.perf_counter()
    drain(runtime.deps, run_id, "nivoda")
    seconds = time.perf_counter() - started
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE run_metadata SET status = 'completed', finished_at = now() WHERE run_id = %s",
                     (run_id,))
    return seconds


def multiply(url: str, total: int) -> float:
    """Copy the stones already in `diamonds` until it holds about `total`; VACUUM ANALYZE; returns seconds."""
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        columns = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'diamonds'"
            " AND is_generated = 'NEVER' AND is_identity = 'NO' ORDER BY ordinal_position").fetchall()]
        row = conn.execute("SELECT count(*) FROM diamonds").fetchone()
        have = int(row[0]) if row else 0
        copies = max(0, -(-total // max(have, 1)) - 1)
        if copies:
            conn.execute(sql.SQL(
                "INSERT INTO diamonds ({cols}) SELECT {values} FROM diamonds d, generate_series(1, {copies}) n"
            ).format(
                cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
                values=sql.SQL(", ").join(_RENAMED.get(c, sql.SQL("d.{}").format(sql.Identifier(c))) for c in columns),
                copies=sql.Literal(copies),
            ))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) diamonds")
    return time.perf_counter() - started


def count_diamonds(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM diamonds").fetchone()
    return int(row[0]) if row else 0


def raw_sql(url: str, statements: Sequence[Statement], threads: int, seconds: float) -> dict[str, Any]:
    """`statements` run one after the other by each of `threads` threads, each on its own connection, for
    `seconds`: requests (one pass over the statements) per second and latency percentiles. Rows are fetched as
    dicts, as the API's pool fetches them."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads + 1)
    stop = threading.Event()

    def client(index: int) -> None:
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            for query, params in statements:  # warm: the plan cache and the buffers
                conn.execute(query, params).fetchall()
            start.wait()
            samples = latencies[index]
            while not stop.is_set():
                began = time.perf_counter()
                for query, params in statements:
                    conn.execute(query, params).fetchall()
                samples.append(1000 * (time.perf_counter() - began))

    workers = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - began
    every = sorted(x for samples in latencies for x in samples)
    p99 = every[min(len(every) - 1, int(0.99 * len(every)))] if every else 0.0
    s = summarize(every) if every else {"median": 0.0}
    return {"requests_per_s": round(len(every) / elapsed, 1), "p50_ms": round(s["median"], 2),
            "p99_ms": round(p99, 2), "requests": len(every), "threads": threads}


def _walk(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node.get("Plans", []) for n in _walk(child))]


def rows_read(url: str, statement: Statement, *, schema_before: Sequence[str] = ()) -> dict[str, Any]:
    """What one run of `statement` reads: rows the scans returned and rows they threw away (EXPLAIN (ANALYZE,
    BUFFERS)), shared buffers touched, and the scans used. `schema_before` (DDL) runs first, in a transaction
    that is rolled back: e.g. the indexes the table had before a migration, in the same run."""
    query, params = statement
    with psycopg.connect(url) as conn:
        for ddl in schema_before:
            conn.execute(ddl.encode())
        conn.execute(query, params).fetchall()  # warm the buffers, as a repeated search would find them
        explained = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {}").format(query)
        row = conn.execute(explained, params).fetchone()
        conn.rollback()
    assert row is not None
    plan = row[0] if not isinstance(row[0], str) else json.loads(row[0])
    top = plan[0]["Plan"]
    nodes = _walk(top)
    scans = [n for n in nodes if n["Node Type"].endswith("Scan") and n["Node Type"] != "Function Scan"]

    def read(n: dict[str, Any]) -> float:
        removed = n.get("Rows Removed by Filter", 0) + n.get("Rows Removed by Index Recheck", 0)
        return float((n["Actual Rows"] + removed) * n.get("Actual Loops", 1))

    def from_table(n: dict[str, Any]) -> float:
        # An index-only scan reads the table only for entries the visibility map cannot vouch for.
        return float(n.get("Heap Fetches", 0)) if n["Node Type"] == "Index Only Scan" else read(n)

    removed = sum((n.get("Rows Removed by Filter", 0) + n.get("Rows Removed by Index Recheck", 0))
                  * n.get("Actual Loops", 1) for n in nodes)
    return {
        "rows_returned": int(top["Actual Rows"]),
        "rows_scanned": int(sum(read(n) for n in scans) - removed),
        "rows_removed_by_filter": int(removed),
        "stones_read_from_table": int(sum(from_table(n) for n in scans)),
        "shared_buffers": int(top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)),
        "execution_ms": round(float(plan[0]["Execution Time"]), 3),
        "scans": sorted({f"{n['Node Type']} on {n.get('Index Name', n.get('Relation Name', '?'))}" for n in scans}),
    }
