"""What the routes of an app require: each route's scope, read from its `RequireScope` dependency.

The OpenAPI document and the authorisation in front of every request both read it from here, so what is
documented and what is enforced cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import fastapi.routing
from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import Scope

from opus.api.errors import error_response
from opus.api.query_model import QueryModel
from opus.api.security import RequireScope
from opus.domain.auth import Scope as AccessScope

T = TypeVar("T")
# The order of the methods in `Allow`: fixed, so that a path always gives the same header.
_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _dependency(dependant: Dependant, kind: type[T]) -> T | None:
    for dep in dependant.dependencies:
        if isinstance(dep.call, kind):
            return dep.call
        found = _dependency(dep, kind)
        if found is not None:
            return found
    return None


def scope_of(dependant: Dependant) -> AccessScope | None:
    found = _dependency(dependant, RequireScope)
    return found.scope if found else None


def _every_route(app: FastAPI) -> list[Any]:
    # FastAPI >= 0.16x keeps included routers unflattened and exposes the effective routes through
    # iter_route_contexts; older versions list flattened routes in app.routes.
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    return list(iterate(app.routes)) if iterate is not None else list(app.routes)


def api_routes(app: FastAPI) -> list[Any]:
    return [r for r in _every_route(app) if isinstance(getattr(r, "dependant", None), Dependant)]


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route of `app` answers at the request's path: the `Allow` header of a 405.

    The router answers 405 from the first route whose path matched, and lists only that route's methods; a
    path served by several routes (GET and POST of a collection; GET, PUT and DELETE of one item) needs them
    all. The probe carries only what matching reads, so nothing the router added to the request's scope
    steers it.
    """
    probe: Scope = {"type": "http", "path": scope["path"], "root_path": scope.get("root_path", ""), "method": ""}
    methods: set[str] = set()
    for route in _every_route(app):
        if getattr(route, "methods", None) and route.matches(probe)[0] is not Match.NONE:
            methods.update(route.methods)
    return sorted(methods, key=lambda m: (_METHOD_ORDER.index(m) if m in _METHOD_ORDER else len(_METHOD_ORDER), m))


def method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    """The 405 answer, in the one error shape, whose `Allow` lists every method of the path."""
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if methods := allowed_methods(request.app, request.scope):  # else the router's own header stands
        headers["Allow"] = ", ".join(methods)
    return error_response(405, "this path does not take this method; see the Allow header", headers=headers)


def route_scopes(app: FastAPI) -> dict[tuple[str, str], str | None]:
    """(METHOD, path) -> the scope the route requires, None when it requires none."""
    scopes: dict[tuple[str, str], str | None] = {}
    for route in api_routes(app):
        needed = scope_of(route.dependant)
        for method in route.methods or ():
            scopes[(method, route.path_format)] = needed.value if needed else None
    return scopes


def route_query_models(app: FastAPI) -> dict[tuple[str, str], QueryModel[Any]]:
    """(METHOD, path) -> the QueryModel that reads the route's query string, for the routes that have one."""
    models: dict[tuple[str, str], QueryModel[Any]] = {}
    for route in api_routes(app):
        model = _dependency(route.dependant, QueryModel)
        if model is not None:
            models.update({(method, route.path_format): model for method in route.methods or ()})
    return models


class ScopeTable:
    """The scope the route a request will reach requires, found before the route runs (so before its body is
    parsed): a read key posting anything to an admin route is refused with 403 whatever it posts."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self._table: Sequence[tuple[Any, AccessScope | None]] | None = None

    def __call__(self, scope: Scope) -> AccessScope | None:
        if self._table is None:  # routes are complete once the app serves its first request
            self._table = [(route, scope_of(route.dependant)) for route in api_routes(self._app)]
        for route, needed in self._table:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return needed
        return None  # no such route or method: the router answers 404 or 405
