"""Admin JSON endpoints under /admin/: change the inventory, the faults and the behaviour while serving."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from opus.sandbox.inventory import Inventory
from opus.sandbox.traffic import Traffic

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


def _inventory_handlers(inv: Inventory) -> dict[str, Callable[[Body], Body]]:
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

    return {"reprice": reprice, "availability": availability, "add": add, "remove": remove}


def _control_handlers(inv: Inventory, traffic: Traffic) -> dict[str, Callable[[Body], Body]]:
    def faults(b: Body) -> Body:
        return inv.faults.configure_from(b)  # the whole configuration: `{}` turns every fault off

    def config(b: Body) -> Body:
        return inv.behaviour.update(b).as_json()  # only the settings named change

    def reset(_: Body) -> Body:
        inv.faults.reset()
        traffic.reset()
        return {"faults": inv.faults.snapshot(), "config": inv.behaviour.reset().as_json()}

    return {"faults": faults, "config": config, "reset": reset}


def _post(handler: Callable[[Body], Body]) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            body = await request.json() if await request.body() else {}
        except ValueError:
            return JSONResponse({"error": "request body must be JSON"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "request body must be a JSON object"}, status_code=400)
        try:
            return JSONResponse(await run_in_threadpool(handler, body))
        except ValueError as e:  # BadRequest and the inventory's, faults' and behaviour's own checks
            return JSONResponse({"error": str(e)}, status_code=400)
    return endpoint


def _get_json(read: Callable[[], Body]) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(_: Request) -> Response:
        return JSONResponse(await run_in_threadpool(read))
    return endpoint


def admin_routes(inv: Inventory, traffic: Traffic) -> list[Route]:
    def stats() -> Body:
        return inv.stats() | {"requests": traffic.stats()}

    handlers = _inventory_handlers(inv) | _control_handlers(inv, traffic)
    routes = [Route(f"/admin/{name}", _post(handler), methods=["POST"]) for name, handler in handlers.items()]
    routes += [
        Route("/admin/stats", _get_json(stats), methods=["GET"]),
        Route("/admin/faults", _get_json(inv.faults.snapshot), methods=["GET"]),
        Route("/admin/config", _get_json(lambda: inv.behaviour.current.as_json()), methods=["GET"]),
    ]
    return routes
