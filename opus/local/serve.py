"""`opus serve`: the API (and dashboard), the queue consumers and the nightly schedule in one process."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from opus.api.app import create_app
from opus.config import Settings
from opus.local.api_processes import api_helpers, listening_socket
from opus.local.http_protocol import BoundedHeadProtocol
from opus.local.runtime import LocalRuntime
from opus.local.schedule import NightlySchedule

logger = logging.getLogger(__name__)

DASHBOARD_DIR = Path(__file__).resolve().parents[2] / "static_dashboard"


def build_app(runtime: LocalRuntime) -> FastAPI:
    app = create_app(db=runtime.db, settings=runtime.settings, feed=runtime.deps.feed, control=runtime.control)
    if DASHBOARD_DIR.is_dir():
        app.mount("/dashboard", StaticFiles(directory=DASHBOARD_DIR, html=True), name="dashboard")
    return app


def server_config(app: FastAPI, settings: Settings, *, host: str, port: int) -> uvicorn.Config:
    """uvicorn as `opus serve` runs it. Bodies are bounded in size and arrival time by the API itself (so the
    Azure runtime has the same limits); here, idle keep-alive connections are closed after API_KEEP_ALIVE_S and
    request heads are bounded (`BoundedHeadProtocol`), so idle or half-open clients cannot pile up connections.
    httptools and uvloop (uvloop where it exists: not on Windows) do in C what h11 and asyncio do in Python."""
    return uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False, http=BoundedHeadProtocol, loop="auto",
        timeout_keep_alive=settings.api_keep_alive_s,
    )


def serve(
    settings: Settings, *, host: str, port: int, runtime: LocalRuntime | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM; in-flight messages finish, unfinished ones stay queued for next time."""
    owned = runtime is None
    rt = runtime or LocalRuntime(settings)
    try:
        app = build_app(rt)
        rt.start_consumers(workers=settings.worker_concurrency, consolidators=1)  # with housekeeping and queue pruning
        schedule = NightlySchedule(rt.deps, rt.coordinator, settings.schedule)
        schedule.start()
        server = uvicorn.Server(server_config(app, settings, host=host, port=port))
        if on_ready:
            _call_when_started(server, lambda: on_ready(f"http://{host}:{_bound_port(server, port)}"))
        try:
            with _signals_end_the_server_only():
                _run(server, settings, host, port)
        finally:
            schedule.stop()
            rt.stop_consumers()
    finally:
        if owned:
            rt.close()


def _run(server: uvicorn.Server, settings: Settings, host: str, port: int) -> None:
    """uvicorn alone, or (API_PROCESSES > 1) on a socket bound here and shared with the helper processes."""
    if settings.api_processes == 1:
        server.run()
        return
    with listening_socket(host, port) as sock, api_helpers(settings, sock, settings.api_processes - 1):
        server.run(sockets=[sock])


@contextmanager
def _signals_end_the_server_only() -> Iterator[None]:
    """uvicorn re-raises SIGINT/SIGTERM once it has shut down, which would kill the process before the
    consumers finish their messages. It re-raises into the handlers it found, so install quiet ones first."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda _s, _f: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _bound_port(server: uvicorn.Server, default: int) -> int:
    for s in server.servers:
        for sock in s.sockets:
            return int(sock.getsockname()[1])
    return default


def _call_when_started(server: uvicorn.Server, callback: Callable[[], None]) -> None:
    """uvicorn has no ready hook: wrap its startup to call back once it listens."""
    startup = server.startup

    async def started(sockets: object = None) -> None:
        await startup(sockets=sockets)  # type: ignore[arg-type]
        if server.started:
            callback()

    server.startup = started  # type: ignore[method-assign]
