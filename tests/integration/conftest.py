"""Fixtures of the REST API tests: apps on the test database, keys of each scope, a sandbox-backed Nivoda
client for trading. Plain functions and constants live in api_conftest.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from api_conftest import HMAC_CLIENT, HMAC_SECRET, AppFactory
from fastapi.testclient import TestClient

from opus.api.app import create_app
from opus.api.keys import create_key
from opus.config import Settings, load_settings
from opus.db.pool import Database
from opus.feeds.nivoda import NivodaClient
from opus.ports import Feed, PipelineControl
from opus.sandbox.runner import RunningSandbox, run_sandbox


@pytest.fixture
def settings() -> Settings:
    # The database is handed to create_app directly; these settings only shape the API.
    return load_settings(hmac_secrets={HMAC_CLIENT: HMAC_SECRET}, rate_limit_per_minute=100_000)


@pytest.fixture
def make_client(db: Database, settings: Settings) -> Iterator[AppFactory]:
    """`make_client(feed=..., control=..., clock=..., **settings_overrides)` -> a TestClient on a fresh app."""
    opened: list[TestClient] = []

    def make(
        *, feed: Feed | None = None, control: PipelineControl | None = None,
        clock: Callable[[], datetime] | None = None, raise_server_exceptions: bool = True, **overrides: Any,
    ) -> TestClient:
        app_settings = settings.model_copy(update=overrides) if overrides else settings
        app = create_app(db=db, settings=app_settings, feed=feed, control=control, clock=clock)
        client = TestClient(app, raise_server_exceptions=raise_server_exceptions)
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: AppFactory) -> TestClient:
    return make_client()


@pytest.fixture
def keys(db: Database) -> dict[str, str]:
    """A key of each scope, by scope name."""
    return {scope: create_key(db, f"test {scope}", scope) for scope in ("read", "trade", "admin")}


@pytest.fixture
def auth(keys: dict[str, str]) -> Callable[[str], dict[str, str]]:
    """`auth("trade")` -> the headers of the trade key."""
    return lambda scope: {"X-API-Key": keys[scope]}


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with run_sandbox(diamonds=60, seed=7, port=0) as sb:
        yield sb


@pytest.fixture
def nivoda(sandbox: RunningSandbox) -> Iterator[NivodaClient]:
    with NivodaClient(sandbox.endpoint, sandbox.username, sandbox.password, rate_limit_per_s=1000) as client:
        yield client
