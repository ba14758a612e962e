"""Where the time of a page store and of a consolidation batch goes (cProfile, one thread).

    .venv/bin/python -m bench.profile_pipeline [--items 10000] [--top 15]

Loads `--items` sandbox stones (rendered as Nivoda items in-process, no HTTP) into a scratch database, then
profiles in this thread (a) `store_page` over every 50-item page of a full run, and (b) `consolidate_batch`
with one claimant until nothing is left. Prints the shares of named functions (cumulative time) and the top
functions, so that a figure of the other benchmarks can be traced to its cause. cProfile inflates functions
called millions of times, so shares are indicative; (c) then times, unprofiled, the page upsert statement
(`upsert_raw_page`) with its array parameters sent as text array literals and sent in binary, and says which
of the two `store_page` uses.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import socket
import time
import uuid
from typing import Any

from psycopg.types.json import Jsonb

from bench.common import PAGE_SIZE, base_parser, bench_settings, log, report, scratch_database
from bench.page_store import new_run
from opus.db.pool import Database
from opus.db.queries import Queries
from opus.local.runtime import LocalRuntime
from opus.pipeline.consolidator import consolidate_batch
from opus.pipeline.raw_store import RawPage, payload_hash, stone_id_of, store_page
from opus.sandbox.inventory import Inventory
from opus.sandbox.render import render_item

# (label, file suffix, function name, own): the function's cumulative time (own time if `own`) as a share of
# the whole. psycopg's `wait` runs the query generator (parameter dumping included) and then blocks in C on the
# socket: its own time is the time spent waiting for the server.
WATCHED = [
    ("psycopg: dump list parameters as array literals", "psycopg/types/array.py", "_dump_list", False),
    ("psycopg: JSON parameters (json.dumps)", "psycopg/types/json.py", "dump", False),
    ("payload_hash (json.dumps sort_keys + sha256)", "opus/pipeline/raw_store.py", "payload_hash", False),
    ("psycopg: load JSON results (json.loads)", "psycopg/types/json.py", "load", False),
    ("map_nivoda_item", "opus/domain/mapping.py", "map_nivoda_item", False),
    ("to_staging_row (pricing + content hash)", "opus/pipeline/diamond_rows.py", "to_staging_row", False),
    ("COPY write_row", "psycopg/_copy_base.py", "write_row", False),
    ("waiting on the server (psycopg wait, own time)", "psycopg/connection.py", "wait", True),
]


def shares(profile: cProfile.Profile, seconds: float, top: int) -> dict[str, Any]:
    stats = pstats.Stats(profile)
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    out: dict[str, Any] = {}
    for label, suffix, name, own in WATCHED:
        cum = sum(v[2] if own else v[3] for (file, _, func), v in table.items()
                  if file.endswith(suffix) and func == name)
        if cum:
            out[label] = {"seconds": round(cum, 2), "share": f"{100 * cum / seconds:.0f} %"}
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(top)
    log("top functions by own time:\n" + text.getvalue())
    return out


ARRAYS = ("stone_ids", "payloads", "hashes")


def upsert_variants(db: Database, pages: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """`upsert_raw_page` into an empty table with its arrays sent as text literals, and sent in binary."""
    statement = Queries("raw").upsert_raw_page
    text, binary = statement, statement
    for name in ARRAYS:
        text = text.replace(f"%({name})b", f"%({name})s")
        binary = binary.replace(f"%({name})s", f"%({name})b")
    variants = {"arrays as text literals (%(name)s)": text, "arrays as binary parameters (%(name)b)": binary}
    out: dict[str, Any] = {"store_page sends": next(k for k, v in variants.items() if v == statement)}
    for name, query in variants.items():
        with db.transaction() as conn:
            conn.execute("TRUNCATE raw_diamonds_nivoda")
        run_id = str(uuid.uuid4())
        started = time.perf_counter()
        for page in pages:
            rows = {str(stone_id_of(item)): item for item in page}  # sandbox items all have an id
            ids = sorted(rows)
            params = {"run_id": run_id, "feed": "nivoda", "stone_ids": ids, "payloads": [Jsonb(rows[s]) for s in ids],
                      "hashes": [payload_hash(rows[s]) for s in ids]}
            with db.transaction() as conn:
                conn.execute(query, params)
        seconds = time.perf_counter() - started
        out[name] = {"ms_per_page": round(1000 * seconds / len(pages), 1)}
    return out


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    inventory = Inventory(args.items, seed=31)
    items = [render_item(s, inventory.supplier_of(s)) for s in inventory.stones()]
    pages = [items[i:i + PAGE_SIZE] for i in range(0, len(items), PAGE_SIZE)]
    figures: dict[str, Any] = {"items": len(items)}
    with scratch_database(args.server, "profile") as url, LocalRuntime(bench_settings(url)) as runtime:
        db = runtime.db
        run_id = new_run(db, "full", 1)
        log(f"profiling store_page over {len(pages)} pages")
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        for i, page in enumerate(pages):
            store_page(db, RawPage(run_id, "nivoda", 0, i * PAGE_SIZE, page, full_run=True))
        profile.disable()
        seconds = time.perf_counter() - started
        figures["store_page"] = {"seconds": round(seconds, 2), "ms_per_page": round(1000 * seconds / len(pages), 1),
                                 "shares": shares(profile, seconds, args.top)}
        with db.transaction() as conn:
            conn.execute("UPDATE run_metadata SET status = 'consolidating' WHERE run_id = %s", (run_id,))
        log("profiling consolidate_batch, one claimant")
        claimant = f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        rows = 0
        while (result := consolidate_batch(runtime.deps, run_id, "nivoda", claimant)) is not None:
            rows += result.consolidated
        profile.disable()
        seconds = time.perf_counter() - started
        figures["consolidate_batch"] = {"rows": rows, "seconds": round(seconds, 2),
                                        "rows_per_s": round(rows / seconds),
                                        "shares": shares(profile, seconds, args.top)}
        log("timing upsert_raw_page: arrays as text literals, and in binary")
        figures["upsert_raw_page (unprofiled, 1 transaction per page)"] = upsert_variants(db, pages)
    report("profile_pipeline", figures, args.json_out)


if __name__ == "__main__":
    main()
