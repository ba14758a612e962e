"""Shared code of the browser tests (`from browser_stack import ...`); conftest.py exposes its fixtures.

The dashboard in a real browser: Debian's Chromium driven by Playwright, against the real app.

One module-scoped stack serves everything: the Nivoda sandbox, a database of its own with one completed full
run of the feed `nivoda` (the whole sandbox; a second, small feed `SECOND_FEED` of large lab-grown stones has
not run yet), the API and dashboard as `opus serve` builds them (with queue consumers), and a second static server on
another port that serves the same dashboard pointed at the API across origins. Media URLs of the sandbox
point at hosts that do not exist, so the browser context answers them with a placeholder image.
"""

from __future__ import annotations

import base64
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Playwright, Route, sync_playwright
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.routing import Route as StarletteRoute
from starlette.staticfiles import StaticFiles

from opus.api.keys import create_key
from opus.config import Settings, load_settings
from opus.db.pool import Database
from opus.domain.models import RunType
from opus.local.run_once import run_once
from opus.local.runtime import LocalRuntime
from opus.local.serve import DASHBOARD_DIR, build_app
from opus.sandbox.runner import RunningSandbox, run_sandbox
from opus.testing.databases import scratch_database

SANDBOX_SIZE = 1_500
# The second feed: lab-grown stones of 2 carats and more, about 180 of the sandbox's 1,500 (one partition).
SECOND_FEED = "nivoda-lab-large"
FEEDS_TOML = f"""
[feeds.nivoda]
enabled = true
query = {{}}

[feeds.{SECOND_FEED}]
enabled = true
query = {{ labgrown = true, sizes = {{ from = 2.0 }} }}
"""
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
# A 1x1 transparent PNG for every image the sandbox's fictional media hosts would serve.
PLACEHOLDER_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)


@dataclass
class Stack:
    sandbox: RunningSandbox
    db: Database
    runtime: LocalRuntime
    api_url: str  # the API, which also serves the dashboard at /dashboard/
    cross_origin_url: str  # the same dashboard from another origin, configured to call `api_url`
    admin_key: str
    read_key: str
    trade_key: str
    first_run: dict[str, Any]


def free_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class _Server:
    """A uvicorn server on an already bound socket, in a thread."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        config = uvicorn.Config(app, log_config=None, access_log=False, log_level="warning", lifespan="off",
                                timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._sock = sock
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)

    def __enter__(self) -> _Server:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            assert self._thread.is_alive(), "a test server stopped while starting"
            assert time.monotonic() < deadline, "a test server did not start in time"
            time.sleep(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


def cross_origin_dashboard(api_url: str) -> Starlette:
    """The dashboard as a Static Web App would serve it: the same files, a deployed `config.js`."""

    def config(_: Request) -> Response:
        return Response(f'window.OPUS_CONFIG = Object.freeze({{ apiBase: "{api_url}" }});\n',
                        media_type="text/javascript")

    return Starlette(routes=[
        StarletteRoute("/config.js", config),
        Mount("/", StaticFiles(directory=DASHBOARD_DIR, html=True)),
    ])


@pytest.fixture(scope="module")
def browser_database(database_url: str) -> Iterator[str]:
    """A database of this module's own, so the session's other tests and this stack do not share rows."""
    with scratch_database(database_url, "opus_browser") as url:
        yield url


REVOCATION_WINDOW_S = 1.0


def stack_settings(database_url: str, sb: RunningSandbox, cors_origin: str, feeds_file: Path) -> Settings:
    return load_settings(
        feeds_file=feeds_file, database_url=database_url, nivoda_endpoint=sb.endpoint, nivoda_username=sb.username,
        nivoda_password=sb.password, nivoda_rate_limit_per_s=10_000, min_records_per_worker=300, max_workers=4,
        consolidator_batch_size=500, queue_visibility_timeout_s=30, rate_limit_per_minute=100_000,
        # A feed failure fails its partition at once, so that the retry test need not wait out backoffs.
        nivoda_read_attempts=1, page_attempts=1,
        cors_origins=cors_origin,
        # A revoked key is refused within this; short, so that the revocation test waits little.
        api_key_cache_s=REVOCATION_WINDOW_S,
    )


@pytest.fixture(scope="module")
def stack(browser_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    feeds_file = tmp_path_factory.mktemp("feeds") / "feeds.toml"
    feeds_file.write_text(FEEDS_TOML)
    api_sock, static_sock = free_socket(), free_socket()
    api_url = f"http://127.0.0.1:{api_sock.getsockname()[1]}"
    cross_origin_url = f"http://127.0.0.1:{static_sock.getsockname()[1]}"
    with run_sandbox(diamonds=SANDBOX_SIZE, seed=23) as sb:
        settings = stack_settings(browser_database, sb, cross_origin_url, feeds_file)
        db = Database(browser_database, max_size=10)
        try:
            with LocalRuntime(settings, db=db) as runtime:
                first_run = run_once(runtime, RunType.FULL, workers=4, poll_s=0.1)
                assert first_run["status"] == "completed", first_run
                keys = {scope: create_key(db, f"browser-{scope}", scope) for scope in ("admin", "read", "trade")}
                runtime.start_consumers(workers=4, consolidators=1)
                with _Server(build_app(runtime), api_sock), _Server(cross_origin_dashboard(api_url), static_sock):
                    yield Stack(sb, db, runtime, api_url, cross_origin_url, keys["admin"], keys["read"],
                                keys["trade"], first_run)
        finally:
            db.close()


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    chromium = playwright_driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


@dataclass
class Console:
    """Every console error and uncaught page error, with what the test expected to see refused."""

    problems: list[str] = field(default_factory=list)
    expected_statuses: set[int] = field(default_factory=set)

    def expect_status(self, *statuses: int) -> None:
        """Chromium logs each refused fetch as an error; a test provoking a refusal names its status."""
        self.expected_statuses.update(statuses)

    expected_unreachable: bool = False

    def expect_unreachable(self) -> None:
        """A test that cuts the API off expects Chromium to log the failed fetches."""
        self.expected_unreachable = True

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type not in ("error", "warning"):
            return
        refused = re.search(r"status of (\d{3})", message.text)
        if refused and int(refused.group(1)) in self.expected_statuses:
            return
        if self.expected_unreachable and "net::ERR_FAILED" in message.text:
            return
        self.problems.append(f"console {message.type}: {message.text} ({message.location.get('url')})")

    def on_page_error(self, error: Exception) -> None:
        self.problems.append(f"page error: {error}")


def _placeholder_media(route: Route) -> None:
    route.fulfill(status=200, content_type="image/png", body=PLACEHOLDER_PNG)


@pytest.fixture
def console() -> Console:
    return Console()


def open_context(browser: Browser, console: Console, **options: Any) -> BrowserContext:
    context = browser.new_context(**options)
    context.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), _placeholder_media)
    context.set_default_timeout(15_000)
    context.on("page", lambda p: _watch(p, console))
    return context


def _watch(page: Page, console: Console) -> None:
    page.on("console", console.on_console)
    page.on("pageerror", console.on_page_error)


@pytest.fixture
def page(browser: Browser, console: Console, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A laptop-sized page; every console error fails the test that produced it."""
    context = open_context(browser, console, viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    yield tab
    context.close()
    assert not console.problems, "\n".join(console.problems)


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
