"""The search API beside the raw SQL it runs, on 1,000,000 diamonds, 16 clients each, in the same run.

    .venv/bin/python -m bench.api_search [--diamonds 1000000] [--pipeline 100000] [--seconds 10] [--processes 2]

Data: `--pipeline` sandbox stones consolidated by `drain`, then multiplied in SQL to `--diamonds`
(bench/search_data.py). The app is built as `opus serve` builds it (LocalRuntime's pool of PG_POOL_MAX
connections) with a read-scope API key and the per-key rate limit lifted (never a 429).

For each case (first page, a deep page reached by following `next` 50 times, a multi-filter search):
- raw SQL: the statements one search request runs (`search.page_statement`, the very query of the route; the
  estimate and the key are cached across requests, so a steady request runs the page query alone), through
  psycopg from 16 threads, each on its own connection, for `--seconds`;
- the API over HTTP: uvicorn in a thread of this process, with 1 up to `--processes` API processes as `opus serve`
  runs them (API_PROCESSES), and `wrk` (Debian package `wrk`) with 16 connections for `--seconds`; skipped with
  `--processes 0` or when wrk is not installed (the smoke scale never needs it);
- in-process (httpx over the ASGI app, its lifespan running, one request at a time): where Python time goes,
  without a network.
The multi-filter search is also explained (EXPLAIN (ANALYZE, BUFFERS)): rows read per page with the search
indexes of migration 0009 and as it was before them (the plain query, the indexes of before restored in a
rolled-back transaction, same run).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
import uvicorn

from bench import search_data
from bench.common import DEFAULT_SERVER, base_parser, bench_settings, load_now, log, report, scratch_database, summarize
from opus.api.app import create_app
from opus.api.context import ApiContext
from opus.api.keys import create_key
from opus.api.schemas.diamonds import SearchQuery
from opus.api.services.search import page_query, page_statement
from opus.config import Settings
from opus.local.api_processes import api_helpers, listening_socket
from opus.local.runtime import LocalRuntime
from opus.local.serve import server_config

SEARCH = "/api/v2/diamonds"
CLIENTS = 16
DEEP_PAGES = 50
LUA = Path(__file__).with_name("latency.lua")
FIRST, DEEP, MULTI = "first page", f"deep page (next followed {DEEP_PAGES} times)", "multi-filter"
MULTI_FILTER = {"shapes": "ROUND,OVAL,CUSHION", "carat_min": "0.9", "carat_max": "2", "colors": "D,E,F,G,H",
                "clarities": "VVS2,VS1,VS2", "lab_grown": "false"}
# The search indexes as they were before migration 0009.
BEFORE_0009 = ("DROP INDEX diamonds_active_grades_price", "DROP INDEX diamonds_active_shape_band_price")
P99_TARGET_MS = 50.0
RATIO_TARGET = 0.5
DEEP_TARGET = 0.9  # "as fast as the first page", within the run-to-run noise of a shared machine
ROWS_TARGET_PAGES = 10
WARM_UP_S = 2  # "O(page)": at most this many pages' worth of rows read for one page


async def follow(client: httpx.AsyncClient, params: dict[str, str], pages: int) -> str:
    """The query string of the page reached by following `next` `pages` times from the first page."""
    query = dict(params)
    for _ in range(pages):
        response = await client.get(SEARCH, params=query)
        response.raise_for_status()
        cursor = response.json()["next"]
        if cursor is None:
            raise RuntimeError(f"fewer than {pages} pages match {params}: load more diamonds")
        query = {**params, "next": cursor}
    return urlencode(query)


async def cases_and_latency(app: Any, headers: dict[str, str], requests: int) -> tuple[dict[str, str], dict[str, Any]]:
    """The query string of each case, and its in-process latency (sequential requests)."""
    transport = httpx.ASGITransport(app=app)
    # The app's lifespan, as a server runs it: searches read through its asyncio pool.
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers=headers) as client:
        cases = {FIRST: "", DEEP: await follow(client, {}, DEEP_PAGES), MULTI: urlencode(MULTI_FILTER)}
        out: dict[str, Any] = {}
        for name, query in cases.items():
            path = f"{SEARCH}?{query}" if query else SEARCH
            first = await client.get(path)
            first.raise_for_status()
            body = first.json()
            for _ in range(10):
                await client.get(path)
            samples = []
            for _ in range(requests):
                started = time.perf_counter()
                response = await client.get(path)
                samples.append(1000 * (time.perf_counter() - started))
                response.raise_for_status()
            s = summarize(samples)
            out[name] = {"p50_ms": round(s["median"], 2), "p95_ms": round(s["p95"], 2), "requests": requests,
                         "items": len(body["items"]), "total_estimate": body["total_estimate"]}
    return cases, out


def _search_query(query_string: str) -> SearchQuery:
    parsed = parse_qs(query_string)
    lists = {name for name, f in SearchQuery.model_fields.items() if getattr(f.annotation, "__origin__", None) is list}
    return SearchQuery.model_validate({k: v if k in lists else v[0] for k, v in parsed.items()})


def statements(ctx: ApiContext, query_string: str) -> list[search_data.Statement]:
    """What one request with `query_string` runs against the database in a steady state: its page query."""
    query, _, params = page_statement(ctx, _search_query(query_string))
    return [(query, params)]


def plain_statement(query_string: str) -> search_data.Statement:
    """The page query as it was before 0009: one WHERE over the table, whatever the filters."""
    query, _, params = page_query(_search_query(query_string), None, merge=False)
    return query, params


@contextmanager
def api_server(app: Any, settings: Settings, processes: int) -> Iterator[int]:
    """The API on a port of 127.0.0.1: uvicorn in a thread of this process, plus `processes - 1` helper processes
    on the same socket as `opus serve` starts them (API_PROCESSES); yields the port."""
    config = server_config(app, settings, host="127.0.0.1", port=0)
    sock = listening_socket("127.0.0.1", 0)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="bench-api", daemon=True)
    with api_helpers(settings, sock, processes - 1):
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.01)
        try:
            yield int(sock.getsockname()[1])
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            sock.close()


def run_wrk(wrk: str | None, url: str, key: str, seconds: int) -> dict[str, Any]:
    assert wrk is not None
    command = [wrk, "-t", "2", "-c", str(CLIENTS), "-d", f"{seconds}s", "--timeout", "10s", "-s", str(LUA),
               "-H", f"X-API-Key: {key}", url]
    load = load_now()
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60)  # noqa: S603
    line = next(x for x in done.stdout.splitlines() if x.startswith("WRK_JSON "))
    return {**json.loads(line.removeprefix("WRK_JSON ")), "connections": CLIENTS, "load_at_start": load}


def side_by_side(url: str, app: Any, settings: Settings, key: str, cases: dict[str, str], seconds: int,
                 processes: Sequence[int]) -> dict[str, Any]:
    """Raw SQL, then the API over HTTP with each number of `processes`, case by case."""
    ctx: ApiContext = app.state.opus
    wrk = shutil.which("wrk") if processes else None
    if processes and wrk is None:
        log("wrk is not installed (apt-get install -y wrk): HTTP figures skipped")
    out: dict[str, Any] = {}
    for name, query in cases.items():
        log(f"raw SQL, {CLIENTS} threads: {name}")
        out[name] = {"raw SQL": {**search_data.raw_sql(url, statements(ctx, query), CLIENTS, seconds),
                                 "load_at_start": load_now()}}
    for count in processes if wrk else ():
        with api_server(app, settings, count) as port:
            run_wrk(wrk, f"http://127.0.0.1:{port}{SEARCH}", key, WARM_UP_S)  # helpers started, pools filled
            for name, query in cases.items():
                log(f"wrk, {CLIENTS} connections, {count} API process(es): {name}")
                out[name][_api(count)] = run_wrk(wrk, f"http://127.0.0.1:{port}{SEARCH}?{query}", key, seconds)
    return out


def _api(processes: int) -> str:
    return f"API over HTTP, {processes} process{'es' if processes > 1 else ''}"


def measure(server: str, diamonds: int, pipeline: int, requests: int, seconds: int,
            processes: Sequence[int]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with scratch_database(server, "api") as url:
        settings = bench_settings(url, rate_limit_per_minute=1_000_000_000)
        with LocalRuntime(settings) as runtime:
            log(f"consolidating {pipeline} diamonds")
            figures["consolidation_seconds"] = round(search_data.consolidate(runtime, url, pipeline), 1)
            log(f"multiplying to {diamonds} diamonds in SQL")
            figures["multiply_seconds"] = round(search_data.multiply(url, diamonds), 1)
            figures["diamonds"] = search_data.count_diamonds(url)
            key = create_key(runtime.db, "bench", "read")
            app = create_app(db=runtime.db, settings=settings, feed=None, control=None)
            ctx: ApiContext = app.state.opus
            log("in-process requests")
            cases, figures["in-process"] = asyncio.run(cases_and_latency(app, {"X-API-Key": key}, requests))
            figures["multi-filter rows read"] = {
                "with the search indexes": search_data.rows_read(url, statements(ctx, cases[MULTI])[0]),
                "without them": search_data.rows_read(url, plain_statement(cases[MULTI]), schema_before=BEFORE_0009),
            }
            figures["side by side"] = side_by_side(url, app, settings, key, cases, seconds, processes)
    return figures


# The interface of bench/run_all.py (bench/README.md). `processes`: the most API processes measured over HTTP
# (each count from 1 up to it); 0 leaves out the HTTP part, so the smoke scale needs no wrk. The smoke scale still
# needs 50 pages of 20.
SMOKE_SCALE: dict[str, int] = {"diamonds": 4_000, "pipeline": 1_000, "requests": 3, "seconds": 1, "processes": 0}
FULL_SCALE: dict[str, int] = {"diamonds": 1_000_000, "pipeline": 100_000, "requests": 200, "seconds": 10,
                              "processes": 2}


def result_figures(figures: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    rows = figures["multi-filter rows read"]
    page_rows = figures["in-process"][MULTI]["items"] + 1
    out.append({"name": "multi-filter page: stones read from the table",
                "value": rows["with the search indexes"]["stones_read_from_table"], "unit": "rows",
                "higher_is_better": False, "target": ROWS_TARGET_PAGES * page_rows,
                "baseline": rows["without them"]["stones_read_from_table"],
                "baseline_name": "before 0009 (plain WHERE, price index)",
                "limit": "the page itself: every filter is checked on the index entry"})
    out.append({"name": "multi-filter page: entries read and discarded (index or table)",
                "value": rows["with the search indexes"]["rows_removed_by_filter"], "unit": "rows",
                "higher_is_better": False, "baseline": rows["without them"]["rows_removed_by_filter"],
                "baseline_name": "before 0009",
                "limit": "index entries of the end bands outside the carat range"})
    out.append({"name": "multi-filter page: execution (EXPLAIN ANALYZE)",
                "value": rows["with the search indexes"]["execution_ms"], "unit": "ms", "higher_is_better": False,
                "baseline": rows["without them"]["execution_ms"], "baseline_name": "before 0009"})
    side = figures["side by side"]
    for name, row in side.items():
        raw = row["raw SQL"]
        out.append({"name": f"{name}: raw SQL, {CLIENTS} threads", "value": raw["requests_per_s"],
                    "unit": "queries/s", "higher_is_better": True, "limit": "the database's CPU (2 cores)"})
        for api_name, api in row.items():
            if api_name == "raw SQL":
                continue
            out.append({"name": f"{name}: {api_name}, {CLIENTS} connections", "value": api["requests_per_s"],
                        "unit": "req/s", "higher_is_better": True, "baseline": raw["requests_per_s"],
                        "baseline_name": "raw SQL, same run",
                        "target": round(RATIO_TARGET * raw["requests_per_s"], 1),
                        "limit": "Python per request (FastAPI's and Starlette's layers, psycopg's row "
                        "loading), sharing 2 cores with PostgreSQL and wrk"})
            out.append({"name": f"{name}: {api_name}, p99", "value": api["p99_ms"], "unit": "ms",
                        "higher_is_better": False, "target": P99_TARGET_MS,
                        "limit": "16 requests queued on the processes' interpreters"})
    apis = [k for k in side[FIRST] if k != "raw SQL"]
    for where, key in [("raw SQL", "raw SQL"), *((k, k) for k in apis)]:
        first, deep = side[FIRST].get(key), side[DEEP].get(key)
        if first and deep:
            out.append({"name": f"deep page ÷ first page, {where} throughput",
                        "value": round(deep["requests_per_s"] / first["requests_per_s"], 2), "unit": "×",
                        "higher_is_better": True, "target": DEEP_TARGET})
    for name, row in figures["in-process"].items():
        out.append({"name": f"{name}, in-process p50", "value": row["p50_ms"], "unit": "ms",
                    "higher_is_better": False})
    return out


def run(scale: dict[str, int], server: str = DEFAULT_SERVER) -> dict[str, Any]:
    figures = measure(server, scale["diamonds"], scale["pipeline"], scale["requests"], scale["seconds"],
                      range(1, scale["processes"] + 1))
    notes = [f"{figures['diamonds']:,} diamonds: {scale['pipeline']:,} consolidated by `drain` "
             f"({figures['consolidation_seconds']} s), multiplied in SQL ({figures['multiply_seconds']} s). "
             f"Multi-filter search: `{urlencode(MULTI_FILTER)}`."]
    return {"key": "api_search", "title": "API search beside raw SQL",
            "command": ".venv/bin/python -m bench.api_search", "scale": dict(scale),
            "figures": result_figures(figures), "notes": notes, "details": figures}


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--diamonds", type=int, default=FULL_SCALE["diamonds"])
    parser.add_argument("--pipeline", type=int, default=FULL_SCALE["pipeline"])
    parser.add_argument("--requests", type=int, default=FULL_SCALE["requests"])
    parser.add_argument("--seconds", type=int, default=FULL_SCALE["seconds"])
    parser.add_argument("--processes", type=int, default=FULL_SCALE["processes"],
                        help="measure the API over HTTP with 1 to this many processes; 0: no HTTP part")
    args = parser.parse_args()
    figures = measure(args.server, args.diamonds, args.pipeline, args.requests, args.seconds,
                      range(1, args.processes + 1))
    report("api_search", {**figures, "figures": result_figures(figures)}, args.json_out)


if __name__ == "__main__":
    main()
