"""Run the sandbox on a free loopback port in a background thread, for tests and demos."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn

from opus.sandbox.config import SandboxConfig
from opus.sandbox.inventory import Inventory
from opus.sandbox.server import (
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    GRAPHQL_PATH,
    SandboxServer,
    create_app,
    prepare_inventory,
)

_START_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class RunningSandbox:
    endpoint: str  # full URL of the GraphQL endpoint
    base_url: str  # scheme://host:port, for /admin/ calls
    inventory: Inventory  # the live inventory: changes made here are seen over HTTP at once
    username: str
    password: str


@contextmanager
def run_sandbox(
    diamonds: int = 1000,
    seed: int = 7,
    token_ttl_s: float = 21600,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    inventory: Inventory | None = None,
    username: str = DEFAULT_USERNAME,
    password: str = DEFAULT_PASSWORD,
    config: SandboxConfig | None = None,
    production_like: bool = False,
) -> Iterator[RunningSandbox]:
    """Serve a sandbox until the block exits. Pass `inventory` to serve one built (or clocked) elsewhere,
    `config` for behaviours and faults beyond the faithful default, `production_like` for the realistic set
    (`SandboxConfig.production_like()`)."""
    if production_like and config is None:
        config = SandboxConfig.production_like()
    inv = prepare_inventory(diamonds, seed, config, inventory)
    app = create_app(inv, username=username, password=password, token_ttl_s=token_ttl_s)
    # log_config=None: leave the host process's logging alone; lifespan is unused
    server_config = uvicorn.Config(app, host=host, port=port, log_config=None, log_level="warning",
                            access_log=False, lifespan="off", timeout_graceful_shutdown=2)
    server = SandboxServer(server_config)
    thread = threading.Thread(target=server.run, name="nivoda-sandbox", daemon=True)
    thread.start()
    deadline = time.monotonic() + _START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the sandbox did not start on {host}:{port}")
        time.sleep(0.01)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - a connectable address
    base_url = f"http://{shown}:{server.bound_port()}"
    try:
        yield RunningSandbox(f"{base_url}{GRAPHQL_PATH}", base_url, inv, username, password)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
