"""What the routes of an app require: each route's scope, read from its `RequireScope` dependency.

The OpenAPI document and the authorisation in front of every request both read it from here, so what is
documented and what is enforced cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import fastapi.routing
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import Scope

from opus.api.query_model import QueryModel
from opus.api.security import RequireScope
from opus.domain.auth import Scope as AccessScope

T = TypeVar("T")


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


def api_routes(app: FastAPI) -> list[Any]:
    # FastAPI >= 0.16x keeps included routers unflattened and exposes the effective routes through
    # iter_route_contexts; older versions list flattened APIRoutes in app.routes.
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    if iterate is not None:
        return [r for r in iterate(app.routes) if isinstance(getattr(r, "dependant", None), Dependant)]
    return [r for r in app.routes if isinstance(r, APIRoute)]


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
