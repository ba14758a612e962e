"""The Functions app's composition root as production builds it: from Settings, or from the environment once per
process (`current_runtime`), over the test database, the sandbox and Azurite; Service Bus is never reached (its
client connects on first send)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from opus.azure.runtime import AzureRuntime, current_runtime, install_runtime
from opus.config import Settings, get_settings, load_settings
from opus.db.pool import Database
from opus.domain.models import FeedQuery
from opus.errors import FeedTransientError
from opus.sandbox.inventory import Inventory
from opus.sandbox.runner import RunningSandbox, run_sandbox

# A well-formed connection string to a namespace that is never contacted: nothing here sends.
SERVICE_BUS = "Endpoint=sb://opus-test.invalid/;SharedAccessKeyName=send;SharedAccessKey=c2VjcmV0"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    with run_sandbox(inventory=Inventory(50, seed=5)) as sb:
        yield sb


def environment(database_url: str, sb: RunningSandbox, azurite_blob: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url, "NIVODA_ENDPOINT": sb.endpoint, "NIVODA_USERNAME": sb.username,
        "NIVODA_PASSWORD": sb.password, "NIVODA_READ_ATTEMPTS": "1", "ServiceBusConnection": SERVICE_BUS,
        "AzureWebJobsStorage": azurite_blob,
    }


def bucket(db: Database) -> dict[str, Any]:
    """The shared Nivoda bucket's counters in PostgreSQL (none yet: zeros)."""
    with db.connection() as conn:
        row: dict[str, Any] | None = conn.execute(
            "SELECT reservations, pauses FROM rate_limit_buckets WHERE name = 'nivoda'").fetchone()
    return row or {"reservations": 0, "pauses": 0}


@pytest.fixture
def settings(
    monkeypatch: pytest.MonkeyPatch, database_url: str, sandbox: RunningSandbox, azurite_blob: str
) -> Settings:
    for name, value in environment(database_url, sandbox, azurite_blob).items():
        monkeypatch.setenv(name, value)
    return load_settings()


def test_the_feed_of_the_runtime_built_from_settings_shares_the_bucket_in_postgresql(
    settings: Settings, sandbox: RunningSandbox, db: Database
) -> None:
    runtime = AzureRuntime.from_settings(settings)
    try:
        runtime.deps.feed.count(FeedQuery())
        assert bucket(db)["reservations"] >= 1, "each request took a slot of the shared bucket"

        sandbox.inventory.faults.configure(fail_next=[429], retry_after_s=2)
        with pytest.raises(FeedTransientError):
            runtime.deps.feed.count(FeedQuery())
    finally:
        sandbox.inventory.faults.configure()
        runtime.close()
    assert bucket(db)["pauses"] == 1, "a 429 pauses every instance, not this process only"


@pytest.fixture
def from_environment(
    monkeypatch: pytest.MonkeyPatch, database_url: str, sandbox: RunningSandbox, azurite_blob: str
) -> Iterator[None]:
    """The process environment of a Functions worker; the runtime and Settings it builds are dropped afterwards."""
    for name, value in environment(database_url, sandbox, azurite_blob).items():
        monkeypatch.setenv(name, value)
    root = logging.getLogger()
    formatters = [(h, h.formatter) for h in root.handlers]  # telemetry gives the root's handlers its formatter
    get_settings.cache_clear()
    previous = install_runtime(None)
    yield
    built = install_runtime(previous)
    if built is not None:
        built.close()
    get_settings.cache_clear()
    for handler, formatter in formatters:
        handler.setFormatter(formatter)


@pytest.mark.usefixtures("from_environment")
def test_the_process_runtime_is_built_once_from_the_environment_and_reused(
    db: Database, concurrently: Callable[[Callable[[], AzureRuntime], int], list[AzureRuntime]],
) -> None:
    runtimes = concurrently(current_runtime, 4)  # the first invocations of a fresh worker, side by side
    first = runtimes[0]

    assert all(r is first for r in runtimes)
    assert current_runtime() is first
    first.deps.feed.count(FeedQuery())
    assert bucket(db)["reservations"] >= 1, "the feed of the process's runtime shares the bucket too"
