"""HTTP face of the sandbox: GraphQL at POST /api/diamonds, admin JSON endpoints under /admin/.

Throttling, request faults and latency are applied before the GraphQL layer, as a gateway in front of
the real API would produce them; malformed records and truncated bodies after it, as a broken upstream
sends them. All of it only on /api/diamonds, so that a test can always reach /admin/ to reset it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from opus.sandbox.admin import admin_routes
from opus.sandbox.auth import TokenStore
from opus.sandbox.config import SandboxConfig
from opus.sandbox.inventory import Inventory
from opus.sandbox.malform import malform, malform_stones
from opus.sandbox.resolvers import GraphQLExecutor, RequestContext
from opus.sandbox.traffic import LatencySampler, Traffic, retry_after_header

log = logging.getLogger(__name__)
GRAPHQL_PATH = "/api/diamonds"
DEFAULT_USERNAME = "sandbox"
DEFAULT_PASSWORD = "sandbox"  # noqa: S105 - the documented demo credential of a local stand-in
DEFAULT_TOKEN_TTL_S = 6 * 3600.0


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _graphql_error(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"errors": [{"message": message}]}, status_code=status, headers=headers)


class DroppedConnection(Response):
    """Close the connection without an answer, as a load balancer that gives up on a request does."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # uvicorn's receive is a bound method of the request cycle, which holds the connection's transport
        cycle = getattr(receive, "__self__", None)
        transport = getattr(cycle, "transport", None)
        if transport is None:  # another server: the nearest thing, headers promising a body never sent
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"64")]})
            return
        transport.close()
        for _ in range(100):  # let the server see the disconnect, so it does not answer 500 on a closed socket
            if getattr(cycle, "disconnected", True):
                return
            await asyncio.sleep(0)


def _json_bytes(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


class GraphQLEndpoint:
    """POST /api/diamonds: throttle, faults and latency in front of GraphQL execution, record faults after."""

    def __init__(self, inventory: Inventory, tokens: TokenStore, traffic: Traffic) -> None:
        self.inventory = inventory
        self.tokens = tokens
        self.traffic = traffic
        self.executor = GraphQLExecutor()
        self.latency = LatencySampler(inventory.seed)

    async def handle(self, request: Request) -> Response:
        behaviour = self.inventory.behaviour.current
        wait_s = self.traffic.admit(behaviour.throttle_rps)
        if wait_s is not None:
            return _graphql_error("Too Many Requests: rate limit exceeded", 429,
                                  {"Retry-After": retry_after_header(wait_s)})
        try:
            raw = await request.body()  # read before any delay, as a server reads a request it then sits on
        except ClientDisconnect:
            return Response(status_code=499)  # nobody is listening any more
        faults = self.inventory.faults
        fault = faults.decide()
        delay = faults.latency_s() + (faults.slow_s() if fault.slow else 0.0)
        if behaviour.latency is not None:
            delay += self.latency.sample_s(behaviour.latency)
        if delay:
            await asyncio.sleep(delay)  # waiting costs no thread and no CPU: a thousand may wait at once
        if fault.drop:
            return DroppedConnection()
        if fault.status is not None:
            headers = {"Retry-After": str(faults.retry_after_s())} if fault.status == 429 else None
            return _graphql_error(HTTPStatus(fault.status).phrase, fault.status, headers)
        if fault.graphql_error:
            return JSONResponse({"data": None, "errors": [
                {"message": "Internal server error", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]})
        try:
            body = json.loads(raw)
        except ValueError:
            return _graphql_error("request body must be JSON", 400)
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return _graphql_error("request body must be a JSON object with a string 'query'", 400)
        variables, operation = body.get("variables"), body.get("operationName")
        if variables is not None and not isinstance(variables, dict):
            return _graphql_error("'variables' must be a JSON object", 400)
        context = RequestContext(self.inventory, self.tokens, _bearer(request))
        payload = await run_in_threadpool(self._answer, body["query"], variables,
                                          operation if isinstance(operation, str) else None, context,
                                          behaviour.staging)
        if fault.truncate:
            payload = payload[:len(payload) // 2]  # a body cut off mid-JSON, with a consistent length
        return Response(payload, media_type="application/json")

    def _answer(self, source: str, variables: dict[str, Any] | None, operation: str | None,
                context: RequestContext, staging: bool) -> bytes:
        result = self.executor.execute(source, variables, operation, context, staging=staging)
        faults = self.inventory.faults
        rng = faults.malform_rng()
        if rng is not None:
            malform(result, faults.settings.malformed, rng)
        if faults.settings.malformed_stones:
            malform_stones(result, faults.settings.malformed_stones)
        return _json_bytes(result)


def create_app(
    inventory: Inventory,
    *,
    username: str = DEFAULT_USERNAME,
    password: str = DEFAULT_PASSWORD,
    token_ttl_s: float = DEFAULT_TOKEN_TTL_S,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    faults = inventory.faults
    tokens = TokenStore(username, password, token_ttl_s, clock,
                        limits=lambda: (faults.settings.token_max_requests, faults.settings.token_max_age_s))
    traffic = Traffic(clock)

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok", "diamonds": len(inventory)})

    routes = [
        Route(GRAPHQL_PATH, GraphQLEndpoint(inventory, tokens, traffic).handle, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        *admin_routes(inventory, traffic),
    ]
    app = Starlette(routes=routes)
    app.state.inventory = inventory
    app.state.tokens = tokens
    app.state.traffic = traffic
    return app


def prepare_inventory(diamonds: int, seed: int, config: SandboxConfig | None = None,
                      inventory: Inventory | None = None) -> Inventory:
    """The inventory `config` describes (or `inventory`, with the config's behaviour and faults applied)."""
    if inventory is None:
        config = config or SandboxConfig()
        inventory = Inventory(diamonds, seed, realistic=config.realistic, behaviour=config.behaviour)
    elif config is not None:
        inventory.behaviour.update(config.behaviour.as_json())
    if config is not None and config.faults:
        inventory.faults.configure_from(config.faults)
    return inventory

class SandboxServer(uvicorn.Server):
    """uvicorn.Server that reports the port it actually bound (port 0 means "any free port")."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[int], None] | None = None) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started and self._on_ready is not None:
            self._on_ready(self.bound_port())

    def bound_port(self) -> int:
        for server in self.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        raise RuntimeError("the sandbox server is not listening")


def serve(host: str = "127.0.0.1", port: int = 4000, diamonds: int = 100_000, seed: int = 7,
          token_ttl_s: float = DEFAULT_TOKEN_TTL_S, config: SandboxConfig | None = None) -> None:
    """Generate the inventory and serve it until interrupted (blocking)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    inventory = prepare_inventory(diamonds, seed, config)
    seconds = round(time.perf_counter() - started, 2)
    log.info("sandbox inventory generated: %d diamonds in %.2f s", diamonds, seconds,
             extra={"diamonds": diamonds, "seed": seed, "seconds": seconds, "realistic": inventory.realistic})
    app = create_app(inventory, token_ttl_s=token_ttl_s)

    def ready(bound: int) -> None:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 - display only
        log.info("Nivoda sandbox ready at http://%s:%d%s (username %r, password %r, %d diamonds, seed %d)",
                 shown, bound, GRAPHQL_PATH, DEFAULT_USERNAME, DEFAULT_PASSWORD, diamonds, seed,
                 extra={"behaviour": inventory.behaviour.current.as_json(), "faults": inventory.faults.snapshot()})

    SandboxServer(uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False), on_ready=ready).run()
