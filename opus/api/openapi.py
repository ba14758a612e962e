"""The OpenAPI document: security schemes, and each operation's credentials and required scope.

FastAPI would describe API key and HMAC headers as one combined requirement; they are alternatives, so the
requirements are written here. Each operation's scope is read from its `RequireScope` dependency, so the
document cannot drift from what the code enforces.
"""

from __future__ import annotations

from typing import Any

import fastapi.routing
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from opus.api.security import API_KEY_HEADER, CLIENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, RequireScope
from opus.domain.auth import HMAC_WINDOW_S

SECURITY_SCHEMES: dict[str, Any] = {
    "ApiKey": {
        "type": "apiKey", "in": "header", "name": API_KEY_HEADER,
        "description": "An API key `opus_<prefix>_<secret>` created with `opus keys create`. Its scope is "
        "read, trade or admin.",
    },
    "HmacClientId": {
        "type": "apiKey", "in": "header", "name": CLIENT_HEADER,
        "description": "HMAC signing, part 1 of 3: a client id configured in HMAC_SECRETS. HMAC clients have the "
        "admin scope.",
    },
    "HmacTimestamp": {
        "type": "apiKey", "in": "header", "name": TIMESTAMP_HEADER,
        "description": f"HMAC signing, part 2 of 3: Unix seconds, within {HMAC_WINDOW_S} s of the server's clock.",
    },
    "HmacSignature": {
        "type": "apiKey", "in": "header", "name": SIGNATURE_HEADER,
        "description": "HMAC signing, part 3 of 3: lowercase hex HMAC-SHA256 with the client's secret over "
        "`METHOD\\nPATH_WITH_QUERY\\nTIMESTAMP\\nHEX_SHA256(BODY)`, where PATH_WITH_QUERY is the path exactly as "
        "sent plus `?` and the raw query string when there is one. Each signature is accepted once.",
    },
}
# Shared enums defined in the domain, which has no reason to carry API wording.
ENUM_DESCRIPTIONS = {
    "Availability": "Whether a stone can be bought: AVAILABLE, ON_HOLD, SOLD, MEMO, or UNKNOWN when the feed "
    "says something else.",
}
SECURITY: list[dict[str, list[str]]] = [{"ApiKey": []}, {"HmacClientId": [], "HmacTimestamp": [], "HmacSignature": []}]


def _scope_of(dependant: Dependant) -> str | None:
    for dep in dependant.dependencies:
        if isinstance(dep.call, RequireScope):
            return dep.call.scope.value
        found = _scope_of(dep)
        if found:
            return found
    return None


def _api_routes(app: FastAPI) -> list[Any]:
    # FastAPI >= 0.16x keeps included routers unflattened and exposes the effective routes through
    # iter_route_contexts; older versions list flattened APIRoutes in app.routes.
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    if iterate is not None:
        return [r for r in iterate(app.routes) if isinstance(getattr(r, "dependant", None), Dependant)]
    return [r for r in app.routes if isinstance(r, APIRoute)]


def route_scopes(app: FastAPI) -> dict[tuple[str, str], str | None]:
    """(METHOD, path) -> the scope the route requires, None when it requires none."""
    scopes: dict[tuple[str, str], str | None] = {}
    for route in _api_routes(app):
        for method in route.methods or ():
            scopes[(method, route.path_format)] = _scope_of(route.dependant)
    return scopes


def build_openapi(app: FastAPI, is_protected: Any) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes,
        tags=app.openapi_tags,
    )
    components = schema.setdefault("components", {})
    components["securitySchemes"] = SECURITY_SCHEMES
    for name, description in ENUM_DESCRIPTIONS.items():
        if name in components.get("schemas", {}):
            components["schemas"][name].setdefault("description", description)
    scopes = route_scopes(app)
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            if not is_protected(path):
                operation["security"] = []
                continue
            operation["security"] = SECURITY
            scope = scopes.get((method.upper(), path))
            operation["x-required-scope"] = scope
            operation["description"] = f"{operation.get('description', '')}\n\nRequires scope: `{scope}`.".strip()
    app.openapi_schema = schema
    return schema
