"""A whole run against an in-process Nivoda sandbox: wall time and rows/s, full and then incremental.

    .venv/bin/python -m bench.full_run [--diamonds 20000] [--workers 4,10]

For each worker count, in a fresh scratch database, with the same sandbox (`run_sandbox`, served by uvicorn in
a thread of this process, as in the end-to-end tests):
1. a full run into the empty database (`run_once`, as `opus run --full --workers N` does);
2. an incremental run with nothing changed in the sandbox;
3. a second full run with nothing changed (every stone is fetched and reconsolidated, none rewritten).
Settings are the defaults (MAX_WORKERS 10 partitions, PG_POOL_MAX 4, one consolidation consumer with
CONSOLIDATOR_CONCURRENCY 2) except the client's rate limit, lifted to measure Opus rather than the limiter
(`--rate-limit 25` restores the production default of 25 requests/s).
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import base_parser, bench_settings, load_now, log, report, scratch_database
from opus.domain.models import RunType
from opus.local.run_once import Progress, run_once
from opus.local.runtime import LocalRuntime
from opus.sandbox.runner import RunningSandbox, run_sandbox


class PhaseClock:
    """Remembers when the run left the fetching phase (all partitions done, consolidation started)."""

    def __init__(self) -> None:
        self.fetch_done_s: float | None = None

    def __call__(self, p: Progress) -> None:
        if self.fetch_done_s is None and p.status != "running":
            self.fetch_done_s = p.elapsed_s


def one_run(settings: Any, run_type: RunType, workers: int) -> dict[str, Any]:
    clock = PhaseClock()
    load = load_now()
    with LocalRuntime(settings) as runtime:
        started = time.perf_counter()
        result = run_once(runtime, run_type, workers=workers, on_progress=clock, poll_s=0.05)
        seconds = time.perf_counter() - started
    if result["status"] != "completed":
        raise RuntimeError(f"the run did not complete: {result}")
    fetch = clock.fetch_done_s
    return {
        "seconds": round(seconds, 2), "raw_rows": result["raw_rows"], "pages": result["pages"],
        "partitions": result["partitions"], "consolidated": result["consolidated"],
        "rows_per_s": round(result["raw_rows"] / seconds) if result["raw_rows"] else 0,
        "fetch_phase_s": round(fetch, 2) if fetch is not None else None,
        "consolidation_phase_s": round(seconds - fetch, 2) if fetch is not None else None,
        "load_at_start": load,
    }


def bench_workers(server: str, sb: RunningSandbox, workers: int, overrides: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with scratch_database(server, f"run_{workers}") as url:
        settings = bench_settings(url, sb, **overrides)
        for name, run_type in (("full run (empty database)", RunType.FULL),
                               ("incremental run (nothing changed)", RunType.INCREMENTAL),
                               ("second full run (nothing changed)", RunType.FULL)):
            log(f"{workers} workers: {name}")
            out[name] = one_run(settings, run_type, workers)
    return out


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--diamonds", type=int, default=20_000)
    parser.add_argument("--workers", default="4,10")
    parser.add_argument("--rate-limit", type=float, default=10_000.0, help="NIVODA_RATE_LIMIT_PER_S")
    parser.add_argument("--pool", type=int, default=None, help="PG_POOL_MAX (default: the setting's, 4)")
    args = parser.parse_args()
    overrides: dict[str, Any] = {"nivoda_rate_limit_per_s": args.rate_limit}
    if args.pool:
        overrides["pg_pool_max"] = args.pool
    figures: dict[str, Any] = {"diamonds": args.diamonds, "settings": overrides, "workers": {}}
    log(f"starting a sandbox of {args.diamonds} diamonds")
    with run_sandbox(diamonds=args.diamonds, seed=23) as sb:
        for workers in (int(w) for w in args.workers.split(",")):
            figures["workers"][str(workers)] = bench_workers(args.server, sb, workers, overrides)
    report("full_run", figures, args.json_out)


if __name__ == "__main__":
    main()
