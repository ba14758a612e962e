"""HTTP face of the sandbox: GraphQL at POST /api/diamonds, admin JSON endpoints under /admin/.

Faults are applied before the GraphQL layer, as a proxy or gateway in front of the real API would
produce them, and only on /api/diamonds so that a test can always reach /admin/ to reset them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from opus.sandbox.auth import TokenStore
from opus.sandbox.inventory import Inventory
from opus.sandbox.resolvers import GraphQLExecutor, RequestContext

log = logging.getLogger(__name__)
GRAPHQL_PATH = "/api/diamonds"
DEFAULT_USERNAME = "sandbox"
DEFAULT_PASSWORD = "sandbox"  # noqa: S105 - the documented demo credential of a local stand-in
DEFAULT_TOKEN_TTL_S = 6 * 3600.0
Body = dict[str, Any]


class BadRequest(ValueError):
    pass


def _get(body: Body, name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    """A typed field of an admin request body; bool is refused where a number is expected."""
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        raise BadRequest(f"{name} has the wrong type")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _ids(body: Body) -> list[str] | None:
    ids = _get(body, "ids", list)
    if ids is None:
        return None
    if not all(isinstance(i, str) for i in ids):
        raise BadRequest("ids must be a list of strings")
    return [str(i) for i in ids]


def _admin_handlers(inv: Inventory) -> dict[str, Callable[[Body], Body]]:
    def reprice(b: Body) -> Body:
        fraction, factor = _get(b, "fraction", (int, float), 0.1), _get(b, "factor", (int, float), 1.05)
        ids = inv.reprice(float(fraction), float(factor), _get(b, "seed", int, 0), _ids(b))
        return {"ids": ids, "count": len(ids)}

    def availability(b: Body) -> Body:
        target = _get(b, "availability", str, "SOLD")
        ids = inv.set_availability(_get(b, "count", int, 1), target, _get(b, "seed", int, 0), _ids(b))
        return {"ids": ids, "count": len(ids), "availability": target}

    def add(b: Body) -> Body:
        stones = inv.add(_get(b, "count", int, 1))
        return {"ids": [s.stone_id for s in stones], "offer_ids": [s.offer_id for s in stones],
                "count": len(stones)}

    def remove(b: Body) -> Body:
        ids = inv.remove(_get(b, "count", int, 1), _get(b, "seed", int, 0), _ids(b))
        return {"ids": ids, "count": len(ids)}

    def faults(b: Body) -> Body:
        fail_next = _get(b, "fail_next", list, [])
        return inv.faults.configure(
            rate_429=float(_get(b, "rate_429", (int, float), 0.0)),
            rate_500=float(_get(b, "rate_500", (int, float), 0.0)),
            latency_ms=int(_get(b, "latency_ms", (int, float), 0)),
            short_page_rate=float(_get(b, "short_page_rate", (int, float), 0.0)),
            fail_next=fail_next, seed=_get(b, "seed", int))

    return {"reprice": reprice, "availability": availability, "add": add, "remove": remove, "faults": faults}


def _admin_endpoint(handler: Callable[[Body], Body]) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            body = await request.json() if await request.body() else {}
        except ValueError:
            return JSONResponse({"error": "request body must be JSON"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "request body must be a JSON object"}, status_code=400)
        try:
            return JSONResponse(await run_in_threadpool(handler, body))
        except ValueError as e:  # BadRequest and the inventory's own argument checks
            return JSONResponse({"error": str(e)}, status_code=400)
    return endpoint


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _graphql_error(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"errors": [{"message": message}]}, status_code=status, headers=headers)


def create_app(
    inventory: Inventory,
    *,
    username: str = DEFAULT_USERNAME,
    password: str = DEFAULT_PASSWORD,
    token_ttl_s: float = DEFAULT_TOKEN_TTL_S,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    tokens = TokenStore(username, password, token_ttl_s, clock)
    executor = GraphQLExecutor()
    faults = inventory.faults

    async def graphql(request: Request) -> Response:
        delay = faults.latency_s()
        if delay:
            await asyncio.sleep(delay)
        status = faults.next_failure()
        if status is not None:
            headers = {"Retry-After": "1"} if status == 429 else None
            return _graphql_error(HTTPStatus(status).phrase, status, headers)
        try:
            body = await request.json()
        except ValueError:
            return _graphql_error("request body must be JSON", 400)
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return _graphql_error("request body must be a JSON object with a string 'query'", 400)
        variables, operation = body.get("variables"), body.get("operationName")
        if variables is not None and not isinstance(variables, dict):
            return _graphql_error("'variables' must be a JSON object", 400)
        context = RequestContext(inventory, tokens, _bearer(request))
        result = await run_in_threadpool(executor.execute, body["query"], variables,
                                         operation if isinstance(operation, str) else None, context)
        return JSONResponse(result)

    async def stats(_: Request) -> Response:
        return JSONResponse(await run_in_threadpool(inventory.stats))

    async def faults_now(_: Request) -> Response:
        return JSONResponse(faults.snapshot())

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok", "diamonds": len(inventory)})

    routes = [
        Route(GRAPHQL_PATH, graphql, methods=["POST"]),
        Route("/admin/stats", stats, methods=["GET"]),
        Route("/admin/faults", faults_now, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ]
    routes += [Route(f"/admin/{name}", _admin_endpoint(handler), methods=["POST"])
               for name, handler in _admin_handlers(inventory).items()]
    app = Starlette(routes=routes)
    app.state.inventory = inventory
    app.state.tokens = tokens
    return app


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
          token_ttl_s: float = DEFAULT_TOKEN_TTL_S) -> None:
    """Generate the inventory and serve it until interrupted (blocking)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    inventory = Inventory(diamonds, seed)
    seconds = round(time.perf_counter() - started, 2)
    log.info("sandbox inventory generated: %d diamonds in %.2f s", diamonds, seconds,
             extra={"diamonds": diamonds, "seed": seed, "seconds": seconds})
    app = create_app(inventory, token_ttl_s=token_ttl_s)

    def ready(bound: int) -> None:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 - display only
        log.info("Nivoda sandbox ready at http://%s:%d%s (username %r, password %r, %d diamonds, seed %d)",
                 shown, bound, GRAPHQL_PATH, DEFAULT_USERNAME, DEFAULT_PASSWORD, diamonds, seed)

    SandboxServer(uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False), on_ready=ready).run()
