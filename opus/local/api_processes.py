"""More API processes for `opus serve` (API_PROCESSES): one interpreter serves requests on one core at most, so on a
machine with cores to spare, helper processes accept connections on the same listening socket.

Each helper is the API alone: its own LocalRuntime (pool, feed client), no queue consumers and no schedule, which
stay in the main process. Whatever must hold across processes already does, through PostgreSQL: the rate limit per
credential, API keys and their revocation, HMAC nonces, the cursor-signing key. Helpers are started with `spawn`
(a fork would copy the parent's pool and threads) and stopped with SIGTERM, on which uvicorn finishes the requests
in flight.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.process import BaseProcess

from opus.config import Settings

logger = logging.getLogger(__name__)
STOP_TIMEOUT_S = 30.0


def _serve_api(settings: Settings, sock: socket.socket, log_level: int) -> None:
    # A spawned child starts with no logging set up: without this, its records would reach only
    # `logging.lastResort` (WARNING and above, without their extras).
    from opus.logs import configure_logging

    configure_logging(log_level)
    # Imported in the child: the module-level imports of a spawned child's target stay few.
    import uvicorn

    from opus.local.runtime import LocalRuntime
    from opus.local.serve import build_app, server_config

    with LocalRuntime(settings) as runtime:
        logger.info("api helper process serving", extra={"pid": os.getpid()})
        config = server_config(build_app(runtime), settings, host="", port=0)
        uvicorn.Server(config).run(sockets=[sock])


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host`:`port` that the main process and the helpers all accept on.

    Made here rather than by uvicorn's `Config.bind_socket`, which opens it with protocol 0: asyncio turns on
    TCP_NODELAY only for connections whose socket says TCP, so every response would wait for the client's
    delayed ACK (about 40 ms) behind Nagle's algorithm.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


@contextmanager
def api_helpers(settings: Settings, sock: socket.socket, count: int) -> Iterator[list[BaseProcess]]:
    """`count` helper processes serving the API on `sock` while the block runs; stopped when it ends."""
    context = multiprocessing.get_context("spawn")
    level = logging.getLogger().getEffectiveLevel()  # the helpers log at the level the main process was given
    helpers: list[BaseProcess] = [
        context.Process(target=_serve_api, args=(settings, sock, level), name=f"opus-api-{i + 1}", daemon=True)
        for i in range(count)
    ]
    for helper in helpers:
        helper.start()
    if helpers:
        logger.info("api helper processes started", extra={"processes": len(helpers)})
    try:
        yield helpers
    finally:
        for helper in helpers:
            if helper.is_alive():
                helper.terminate()  # SIGTERM: uvicorn drains and exits
        for helper in helpers:
            helper.join(STOP_TIMEOUT_S)
            if helper.is_alive():
                helper.kill()
                helper.join()
