"""Shared pieces of the benchmarks: scratch databases, realistic raw items, timing and reporting.

Every benchmark creates what it measures and removes it afterwards: a scratch database named
`opus_bench_<purpose>_<random>` on the server given by `--server` (default: the PostgreSQL on 127.0.0.1:5432),
dropped when the benchmark ends, and an in-process Nivoda sandbox that stops with it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from opus.config import Settings, load_settings
from opus.domain.models import FeedQuery
from opus.feeds.nivoda import NivodaClient
from opus.sandbox.runner import RunningSandbox, run_sandbox
from opus.testing import databases as testing_databases

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
PAGE_SIZE = 50
SANDBOX_SEED = 17


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--server", default=DEFAULT_SERVER,
                        help="PostgreSQL server URL; a scratch database is created on it and dropped afterwards")
    parser.add_argument("--json", dest="json_out", default=None, help="also write the figures to this JSON file")
    return parser


# --- environment ---------------------------------------------------------------------------------------------


def source_revision() -> str:
    """The commit the code was measured at, with "+changes" when opus/ or sql/ differ from it."""
    git = shutil.which("git")
    if git is None:
        return "unknown"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def run(*args: str) -> str:
        done = subprocess.run([git, "-C", root, *args], capture_output=True, text=True, check=False)  # noqa: S603
        return done.stdout.strip()

    commit = run("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+changes" if run("status", "--porcelain", "--", "opus", "sql") else "")


# Taken when the benchmark starts: the code it imports is the code it measures.
SOURCE_AT_START = source_revision()


def environment() -> dict[str, Any]:
    """When and where the figures were taken; the load average says whether the machine was shared."""
    load = os.getloadavg()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": SOURCE_AT_START,
        "cores": os.cpu_count(),
        "load_1_5_15": [round(x, 2) for x in load],
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def load_now() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


# --- scratch database ----------------------------------------------------------------------------------------


def scratch_database(server: str, purpose: str) -> AbstractContextManager[str]:
    """A new, migrated database on `server` for one benchmark; dropped (connections and all) when the block ends."""
    return testing_databases.scratch_database(server, f"opus_bench_{purpose}")


# The settings that matter for the figures, as last built by `bench_settings`; `report` prints them.
SETTINGS_SHOWN = ("pg_pool_max", "consolidator_batch_size", "consolidator_concurrency", "consolidator_processes",
                  "max_workers", "min_records_per_worker", "worker_page_size", "nivoda_rate_limit_per_s")
_settings_used: dict[str, Any] = {}


def bench_settings(database_url: str, sandbox: RunningSandbox | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": database_url}
    if sandbox is not None:
        values |= {"nivoda_endpoint": sandbox.endpoint, "nivoda_username": sandbox.username,
                   "nivoda_password": sandbox.password}
    settings = load_settings(**(values | overrides))
    _settings_used.update({name: getattr(settings, name) for name in SETTINGS_SHOWN})
    return settings


def table_stats(url: str, table: str) -> dict[str, int]:
    """Cumulative row counters of `table` (read after the writers' connections closed, so they are flushed)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del, n_live_tup, n_dead_tup"
            " FROM pg_stat_user_tables WHERE relname = %s", (table,)
        ).fetchone()
    keys = ("ins", "upd", "hot_upd", "del", "live", "dead")
    return dict(zip(keys, (int(v) for v in row), strict=True)) if row else dict.fromkeys(keys, 0)


def stats_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in ("ins", "upd", "hot_upd", "del")}


def wait_for_stats_flush() -> None:
    # A backend reports its table counters when it goes idle or exits, at most once a second.
    time.sleep(1.2)


# --- realistic raw items -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchedItems:
    items: list[dict[str, Any]]
    pages: int
    seconds: float

    @property
    def ms_per_page(self) -> float:
        return 1000 * self.seconds / self.pages if self.pages else 0.0


def fetch_from_sandbox(sandbox: RunningSandbox, count: int, *, threads: int = 2) -> FetchedItems:
    """The first `count` items of the sandbox, fetched through the Nivoda client 50 at a time."""
    offsets = list(range(0, count, PAGE_SIZE))
    query = FeedQuery()
    with NivodaClient(sandbox.endpoint, sandbox.username, sandbox.password, rate_limit_per_s=100_000) as client:
        client.count(query)  # authenticates once, before the threads start
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            pages = list(pool.map(lambda off: client.page(query, off, min(PAGE_SIZE, count - off)), offsets))
        seconds = time.perf_counter() - started
    items = [item for page in pages for item in page]
    if len(items) != count:
        raise RuntimeError(f"the sandbox gave {len(items)} items, not {count}")
    return FetchedItems(items, len(offsets), seconds)


@contextmanager
def sandbox_items(count: int, *, seed: int = SANDBOX_SEED) -> Iterator[FetchedItems]:
    """`count` raw items as the client receives them from a sandbox of exactly that size."""
    with run_sandbox(diamonds=count, seed=seed) as sb:
        fetched = fetch_from_sandbox(sb, count)
    yield fetched


# --- timing --------------------------------------------------------------------------------------------------


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """Median, p95, min and max of a list of durations or rates."""
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return {"median": statistics.median(ordered), "p95": p95, "min": ordered[0], "max": ordered[-1],
            "n": len(ordered)}


def time_repeated(fn: Callable[[], Any], repeats: int) -> list[float]:
    """Wall seconds of each of `repeats` calls of `fn`."""
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def report(title: str, figures: dict[str, Any], json_out: str | None) -> None:
    """Print the figures (one JSON document on stdout) and optionally write them to a file."""
    document: dict[str, Any] = {"benchmark": title, "environment": environment()}
    if _settings_used:
        document["settings"] = dict(_settings_used)
    document["figures"] = figures
    text = json.dumps(document, indent=2, default=str)
    print(text)
    if json_out:
        with open(json_out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
