"""API search latency on 100,000 diamonds: first page, a deep page (the `next` cursor followed 50 times) and
filtered searches, in-process (httpx over the ASGI app) and over real HTTP (uvicorn + wrk).

    .venv/bin/python -m bench.api_search [--diamonds 100000] [--requests 300] [--wrk-seconds 10]

Data: the sandbox's stones (rendered as Nivoda items in-process, no HTTP) stored as raw rows and consolidated by
`drain`, so `diamonds` holds what a run would leave. The app is built as `opus serve` builds it (LocalRuntime's
pool of PG_POOL_MAX connections) with a read-scope API key and the per-key rate limit lifted (never a 429).
In-process: one request at a time, `--requests` timed per case after a warm-up. Over HTTP: uvicorn in a thread of
this process and `wrk` (Debian package `wrk`) for `--wrk-seconds` per case with 1 connection (latency) and
8 connections (throughput); skipped if wrk is not installed.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import uvicorn

from bench.common import DEFAULT_SERVER, base_parser, bench_settings, load_now, log, report, scratch_database, summarize
from bench.consolidation import load_raw_rows
from opus.api.app import create_app
from opus.api.keys import create_key
from opus.local.runtime import LocalRuntime
from opus.pipeline.consolidator import drain
from opus.sandbox.inventory import Inventory
from opus.sandbox.render import render_item
from opus.sandbox.server import SandboxServer

SEARCH = "/api/v2/diamonds"
DEEP_PAGES = 50
LUA = Path(__file__).with_name("latency.lua")
IN_PROCESS = "in-process (httpx ASGI transport, sequential)"
FILTER = {"shapes": "ROUND", "price_min": "1000", "price_max": "5000"}


def load_diamonds(runtime: LocalRuntime, url: str, count: int) -> float:
    """`count` sandbox stones consolidated into `diamonds`; returns the consolidation's seconds."""
    inventory = Inventory(count, seed=29)
    items = [render_item(s, inventory.supplier_of(s)) for s in inventory.stones()]
    run_id = str(uuid.uuid4())
    load_raw_rows(url, items, len(items), run_id)
    started = time.perf_counter()
    drain(runtime.deps, run_id, "nivoda")
    seconds = time.perf_counter() - started
    with runtime.db.transaction() as conn:
        conn.execute("UPDATE run_metadata SET status = 'completed', finished_at = now() WHERE run_id = %s",
                     (run_id,))
    with runtime.db.connection() as conn:
        conn.autocommit = True
        conn.execute("VACUUM (ANALYZE) diamonds")
        conn.autocommit = False
    return seconds


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


async def in_process(app: Any, headers: dict[str, str], requests: int) -> tuple[dict[str, str], dict[str, Any]]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench", headers=headers) as client:
        cases = {
            "first page": urlencode({}),
            "first page, count=exact": urlencode({"count": "exact"}),
            f"deep page (next followed {DEEP_PAGES} times)": await follow(client, {}, DEEP_PAGES),
            "filtered: shapes=ROUND, price 1000-5000": urlencode(FILTER),
            f"filtered, deep page ({DEEP_PAGES} times)": await follow(client, FILTER, DEEP_PAGES),
        }
        out: dict[str, Any] = {}
        for name, query in cases.items():
            path = f"{SEARCH}?{query}" if query else SEARCH
            first = await client.get(path)
            first.raise_for_status()
            body = first.json()
            for _ in range(20):
                await client.get(path)
            samples = []
            for _ in range(requests):
                started = time.perf_counter()
                response = await client.get(path)
                samples.append(1000 * (time.perf_counter() - started))
                response.raise_for_status()
            s = summarize(samples)
            out[name] = {"p50_ms": round(s["median"], 2), "p95_ms": round(s["p95"], 2), "min_ms": round(s["min"], 2),
                         "requests": requests, "items": len(body["items"]), "total_estimate": body["total_estimate"],
                         "total": body["total"], "load_at_start": load_now()}
    return cases, out


def serve_http(app: Any) -> tuple[SandboxServer, threading.Thread, int]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, log_level="warning", access_log=False,
                            lifespan="off")
    server = SandboxServer(config)  # a uvicorn.Server that reports the port it bound
    thread = threading.Thread(target=server.run, name="bench-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the API server did not start")
        time.sleep(0.01)
    return server, thread, server.bound_port()


def run_wrk(wrk: str, url: str, key: str, connections: int, seconds: int) -> dict[str, Any]:
    command = [wrk, "-t", str(min(2, connections)), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s",
               "-s", str(LUA), "-H", f"X-API-Key: {key}", url]
    load = load_now()
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60)  # noqa: S603
    line = next(x for x in done.stdout.splitlines() if x.startswith("WRK_JSON "))
    return {**json.loads(line.removeprefix("WRK_JSON ")), "connections": connections, "load_at_start": load}


def over_http(app: Any, key: str, cases: dict[str, str], seconds: int) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        log("wrk is not installed (apt-get install -y wrk): HTTP figures skipped")
        return {"skipped": "wrk not installed"}
    server, thread, port = serve_http(app)
    out: dict[str, Any] = {}
    try:
        for name, query in cases.items():
            if "count=exact" in name:
                continue
            url = f"http://127.0.0.1:{port}{SEARCH}" + (f"?{query}" if query else "")
            log(f"wrk: {name}")
            out[name] = {f"{c} connection(s)": run_wrk(wrk, url, key, c, seconds) for c in (1, 8)}
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    return out


def measure(server: str, diamonds: int, requests: int, wrk_seconds: int) -> dict[str, Any]:
    """The figures of `main`; `wrk_seconds` 0 leaves out the HTTP part."""
    figures: dict[str, Any] = {"diamonds": diamonds}
    with scratch_database(server, "api") as url:
        settings = bench_settings(url, rate_limit_per_minute=1_000_000_000)
        with LocalRuntime(settings) as runtime:
            log(f"loading {diamonds} diamonds")
            figures["consolidation_seconds"] = round(load_diamonds(runtime, url, diamonds), 1)
            key = create_key(runtime.db, "bench", "read")
            app = create_app(db=runtime.db, settings=settings, feed=None, control=None)
            log("in-process requests")
            cases, figures[IN_PROCESS] = asyncio.run(in_process(app, {"X-API-Key": key}, requests))
            if wrk_seconds:
                figures["over HTTP (uvicorn + wrk)"] = over_http(app, key, cases, wrk_seconds)
    return figures


# The interface of bench/run_all.py (bench/README.md). The smoke scale still needs 50 filtered pages of 20.
SMOKE_SCALE: dict[str, int] = {"diamonds": 8_000, "requests": 3, "wrk_seconds": 0}
FULL_SCALE: dict[str, int] = {"diamonds": 100_000, "requests": 300, "wrk_seconds": 10}


def run(scale: dict[str, int], server: str = DEFAULT_SERVER) -> dict[str, Any]:
    figures = measure(server, scale["diamonds"], scale["requests"], scale["wrk_seconds"])
    cost = "Python per request (FastAPI, pydantic, three SQL statements); the page query itself is ~0.1 ms"
    return {
        "key": "api_search", "title": "API search latency", "command": ".venv/bin/python -m bench.api_search",
        "scale": dict(scale),
        "figures": [{"name": f"{case}, in-process p50", "value": row["p50_ms"], "unit": "ms",
                     "higher_is_better": False, "limit": cost} for case, row in figures[IN_PROCESS].items()],
        "details": figures,
    }


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--diamonds", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--wrk-seconds", type=int, default=10)
    args = parser.parse_args()
    figures = measure(args.server, args.diamonds, args.requests, args.wrk_seconds)
    report("api_search", figures, args.json_out)


if __name__ == "__main__":
    main()
