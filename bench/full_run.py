"""A whole run against the Nivoda sandbox: wall time and rows/s, full and then incremental.

    .venv/bin/python -m bench.full_run [--diamonds 20000] [--workers 4,10] [--sandbox-process]

For each worker count, in a fresh scratch database, with the same sandbox (by default `run_sandbox`: uvicorn
in a thread of this process, as in the end-to-end tests; `--sandbox-process` serves it from a separate
`opus sandbox` process instead, so that it does not share this process's interpreter lock):
1. a full run into the empty database (`run_once`, as `opus run --full --workers N` does);
2. an incremental run with nothing changed in the sandbox;
3. a second full run with nothing changed (every stone is fetched and reconsolidated, none rewritten).
Before them, the feed's ceiling: every page fetched through the client by N threads, nothing stored.
Settings are the defaults (MAX_WORKERS 10 partitions, PG_POOL_MAX, one consolidation consumer with
CONSOLIDATOR_CONCURRENCY 2) except the client's rate limit, lifted to measure Opus rather than the limiter
(`--rate-limit 25` restores the production default of 25 requests/s).
`seconds` is `run_once` from planning to return, which includes stopping the consumer threads (up to 1 s:
their receive wait); `completed_after_s` is when the run was seen completed (polled every 50 ms).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from bench.common import (
    DEFAULT_SERVER,
    base_parser,
    bench_settings,
    fetch_from_sandbox,
    load_now,
    log,
    report,
    scratch_database,
)
from opus.domain.models import RunType
from opus.local.run_once import Progress, run_once
from opus.local.runtime import LocalRuntime
from opus.pipeline.runs import ACTIVE
from opus.sandbox.runner import RunningSandbox, run_sandbox
from opus.sandbox.server import DEFAULT_PASSWORD, DEFAULT_USERNAME, GRAPHQL_PATH

SEED = 23


class PhaseClock:
    """When the run left the fetching phase (all partitions done) and when it was seen completed."""

    def __init__(self) -> None:
        self.fetch_done_s: float | None = None
        self.completed_s: float | None = None

    def __call__(self, p: Progress) -> None:
        if self.fetch_done_s is None and p.status != "running":
            self.fetch_done_s = p.elapsed_s
        if self.completed_s is None and p.status not in ACTIVE:
            self.completed_s = p.elapsed_s


def one_run(settings: Any, run_type: RunType, workers: int) -> dict[str, Any]:
    clock = PhaseClock()
    load = load_now()
    with LocalRuntime(settings) as runtime:
        started = time.perf_counter()
        result = run_once(runtime, run_type, workers=workers, on_progress=clock, poll_s=0.05)
        seconds = time.perf_counter() - started
    if result["status"] != "completed":
        raise RuntimeError(f"the run did not complete: {result}")
    fetch, done = clock.fetch_done_s, clock.completed_s
    return {
        "seconds": round(seconds, 2), "completed_after_s": round(done, 2) if done is not None else None,
        "raw_rows": result["raw_rows"], "pages": result["pages"], "partitions": result["partitions"],
        "consolidated": result["consolidated"],
        "rows_per_s": round(result["raw_rows"] / seconds) if result["raw_rows"] else 0,
        "fetch_phase_s": round(fetch, 2) if fetch is not None else None,
        "consolidation_phase_s": round(done - fetch, 2) if fetch is not None and done is not None else None,
        "load_at_start": load,
    }


def bench_workers(server: str, sb: RunningSandbox, workers: int, overrides: dict[str, Any],
                  diamonds: int) -> dict[str, Any]:
    # The feed's ceiling: the same pages fetched by as many threads through the client, nothing stored.
    load = load_now()
    fetched = fetch_from_sandbox(sb, diamonds, threads=workers)
    out: dict[str, Any] = {"fetch only (client + sandbox, nothing stored)": {
        "seconds": round(fetched.seconds, 2), "pages": fetched.pages,
        "pages_per_s": round(fetched.pages / fetched.seconds, 1), "rows_per_s": round(diamonds / fetched.seconds),
        "load_at_start": load}}
    with scratch_database(server, f"run_{workers}") as url:
        settings = bench_settings(url, sb, **overrides)
        for name, run_type in (("full run (empty database)", RunType.FULL),
                               ("incremental run (nothing changed)", RunType.INCREMENTAL),
                               ("second full run (nothing changed)", RunType.FULL)):
            log(f"{workers} workers: {name}")
            out[name] = one_run(settings, run_type, workers)
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def sandbox_process(diamonds: int) -> Iterator[RunningSandbox]:
    """`opus sandbox` in a child process (the CLI's own command), stopped when the block ends."""
    port = _free_port()
    command = [sys.executable, "-m", "opus", "sandbox", "--port", str(port), "--diamonds", str(diamonds),
               "--seed", str(SEED)]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(base, timeout=1)
                break
            except httpx.TransportError:
                if child.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the sandbox process did not start") from None
                time.sleep(0.2)
        # The inventory lives in the child: nothing here reads it.
        yield RunningSandbox(f"{base}{GRAPHQL_PATH}", base, None, DEFAULT_USERNAME, DEFAULT_PASSWORD)  # type: ignore[arg-type]
    finally:
        child.terminate()
        child.wait(timeout=15)


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--diamonds", type=int, default=20_000)
    parser.add_argument("--workers", default="4,10")
    parser.add_argument("--rate-limit", type=float, default=10_000.0, help="NIVODA_RATE_LIMIT_PER_S")
    parser.add_argument("--pool", type=int, default=None, help="PG_POOL_MAX (default: the setting's default)")
    parser.add_argument("--sandbox-process", action="store_true", help="serve the sandbox from another process")
    args = parser.parse_args()
    overrides: dict[str, Any] = {"nivoda_rate_limit_per_s": args.rate_limit}
    if args.pool:
        overrides["pg_pool_max"] = args.pool
    figures: dict[str, Any] = {"diamonds": args.diamonds, "settings": overrides,
                               "sandbox": "separate process" if args.sandbox_process else "in-process thread",
                               "workers": {}}
    log(f"starting a sandbox of {args.diamonds} diamonds")
    serving = sandbox_process(args.diamonds) if args.sandbox_process else run_sandbox(diamonds=args.diamonds,
                                                                                     seed=SEED)
    with serving as sb:
        for workers in (int(w) for w in args.workers.split(",")):
            figures["workers"][str(workers)] = bench_workers(args.server, sb, workers, overrides, args.diamonds)
    report("full_run", figures, args.json_out)


# The interface of bench/run_all.py (bench/README.md): the sandbox in its own process, the rate limit lifted.
SMOKE_SCALE: dict[str, int] = {"diamonds": 500, "workers": 2}
FULL_SCALE: dict[str, int] = {"diamonds": 20_000, "workers": 10}
CEILING = "fetch only (client + sandbox, nothing stored)"


def run(scale: dict[str, int], server: str = DEFAULT_SERVER) -> dict[str, Any]:
    diamonds, workers = scale["diamonds"], scale["workers"]
    log(f"starting a sandbox process of {diamonds} diamonds")
    with sandbox_process(diamonds) as sb:
        cases = bench_workers(server, sb, workers, {"nivoda_rate_limit_per_s": 10_000.0}, diamonds)
    ceiling = cases[CEILING]["rows_per_s"]
    first = cases["full run (empty database)"]
    figures: list[dict[str, Any]] = [
        {"name": f"{name}, {workers} workers", "value": case["rows_per_s"], "unit": "rows/s",
         "higher_is_better": True, "baseline": ceiling, "baseline_name": "fetch only, nothing stored",
         "limit": "two cores shared by the sandbox, the page workers, the consolidator and PostgreSQL"}
        for name, case in cases.items() if name != CEILING and "full" in name
    ]
    figures.append({"name": f"incremental run (nothing changed), {workers} workers",
                    "value": cases["incremental run (nothing changed)"]["seconds"], "unit": "s",
                    "higher_is_better": False, "baseline": first["seconds"], "baseline_name": "the first full run",
                    "limit": "planning: the density scan counts every price band"})
    return {"key": "full_run", "title": "A whole run against the sandbox",
            "command": ".venv/bin/python -m bench.full_run", "scale": dict(scale), "figures": figures, "details": cases}


if __name__ == "__main__":
    main()
