"""Fixtures of the Azure wiring tests: Azurite's blob service (once per session) and the Functions app's stack."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from opus.testing.azurite import running_azurite_blob

ROOT = Path(__file__).resolve().parents[2]
AZURITE_BLOB = ROOT / "node_modules" / ".bin" / "azurite-blob"
# function_app.py sits at the repository root, where the Functions host looks for it, outside any package.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from azure_stack import AzureStack, StackFactory, user_function  # noqa: E402
from durable_host import DurableHost  # noqa: E402

from opus.adapters.blob_watermark import BlobWatermarkStore  # noqa: E402
from opus.adapters.postgres_state import PostgresAlerts  # noqa: E402
from opus.adapters.servicebus_queue import ServiceBusWorkQueue  # noqa: E402
from opus.azure.orchestration import FAIL_ACTIVITY, ORCHESTRATOR_NAME, SETTLE_ACTIVITY  # noqa: E402
from opus.azure.runtime import AzureRuntime, install_runtime  # noqa: E402
from opus.config import Settings  # noqa: E402
from opus.db.pool import Database  # noqa: E402
from opus.feeds.nivoda import NivodaClient  # noqa: E402
from opus.ports import WORK_QUEUE  # noqa: E402
from opus.testing.fakes import SteppableClock  # noqa: E402
from opus.testing.servicebus_double import RecordingServiceBusClient  # noqa: E402


@pytest.fixture(scope="session")
def azurite_blob(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A connection string for `devstoreaccount1` on an Azurite started for this session."""
    with running_azurite_blob(AZURITE_BLOB, tmp_path_factory.mktemp("azurite")) as connection:
        yield connection


@pytest.fixture
def make_stack(db: Database, azurite_blob: str) -> Iterator[StackFactory]:
    """`make_stack(settings, clock)`: the runtime built from test parts and installed for the functions."""
    made: list[tuple[AzureStack, NivodaClient, AzureRuntime | None]] = []

    def make(settings: Settings, clock: SteppableClock) -> AzureStack:
        servicebus = RecordingServiceBusClient(clock=clock)
        watermarks = BlobWatermarkStore(
            BlobServiceClient.from_connection_string(azurite_blob), clock=clock,
            container=f"wm-{uuid.uuid4().hex[:12]}",
        )
        feed = NivodaClient.from_settings(settings, db=db)  # as production wires it: the shared bucket
        runtime = AzureRuntime(
            settings, db=db, feed=feed, queue=ServiceBusWorkQueue(servicebus, clock=clock), watermarks=watermarks,
            alerts=PostgresAlerts(db), clock=clock,
        )
        activities: dict[str, Any] = {name: user_function(name) for name in (SETTLE_ACTIVITY, FAIL_ACTIVITY)}
        durable = DurableHost(
            user_function(ORCHESTRATOR_NAME), activities, now=clock.now,
            witness=lambda: len(servicebus.sent(WORK_QUEUE)),
        )
        stack = AzureStack(runtime, clock, servicebus, durable, watermarks)
        made.append((stack, feed, install_runtime(runtime)))
        return stack

    yield make
    for stack, feed, previous in reversed(made):
        install_runtime(previous)
        feed.close()
        stack.watermarks.close()
