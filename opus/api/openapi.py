"""The OpenAPI document: security schemes, and each operation's credentials and required scope.

FastAPI would describe API key and HMAC headers as one combined requirement; they are alternatives, so the
requirements are written here. Each operation's scope is read from its `RequireScope` dependency, so the
document cannot drift from what the code enforces.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from opus.api.routes import route_query_models, route_scopes
from opus.api.schemas.common import error_responses
from opus.api.security import API_KEY_HEADER, CLIENT_HEADER, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER
from opus.domain.auth import HMAC_WINDOW_S, NONCE_MAX_LENGTH, NONCE_MIN_LENGTH

SECURITY_SCHEMES: dict[str, Any] = {
    "ApiKey": {
        "type": "apiKey", "in": "header", "name": API_KEY_HEADER,
        "description": "An API key `opus_<prefix>_<secret>` created with `opus keys create`. Its scope is "
        "read, trade or admin.",
    },
    "HmacClientId": {
        "type": "apiKey", "in": "header", "name": CLIENT_HEADER,
        "description": "HMAC signing, part 1 of 4: a client id configured in HMAC_SECRETS. An HMAC client has the "
        "read scope unless HMAC_SCOPES grants it trade or admin.",
    },
    "HmacTimestamp": {
        "type": "apiKey", "in": "header", "name": TIMESTAMP_HEADER,
        "description": f"HMAC signing, part 2 of 4: Unix seconds, within {HMAC_WINDOW_S} s of the server's clock.",
    },
    "HmacNonce": {
        "type": "apiKey", "in": "header", "name": NONCE_HEADER,
        "description": f"HMAC signing, part 3 of 4: a value never used before by this client, "
        f"{NONCE_MIN_LENGTH} to {NONCE_MAX_LENGTH} characters of A-Z, a-z, 0-9, `_` and `-` (e.g. a UUID4 in "
        "hex). Each nonce is accepted once, so two identical requests need two nonces.",
    },
    "HmacSignature": {
        "type": "apiKey", "in": "header", "name": SIGNATURE_HEADER,
        "description": "HMAC signing, part 4 of 4: the HMAC-SHA256 with the client's secret, as 64 lowercase hex "
        "digits (upper case is refused), over `METHOD\\nPATH_WITH_QUERY\\nTIMESTAMP\\nNONCE\\nHEX_SHA256(BODY)`, "
        "where PATH_WITH_QUERY is the path exactly as sent plus `?` and the raw query string when there is one, "
        "and HEX_SHA256 is lowercase hex too.",
    },
}
RATE_LIMIT_HEADERS: dict[str, Any] = {
    "RateLimit-Policy": {"description": "The credential's quota: `\"credential\";q=<requests>;w=<seconds>` "
                         "(draft-ietf-httpapi-ratelimit-headers).", "schema": {"type": "string"}},
    "RateLimit": {"description": "What is left of it: `\"credential\";r=<remaining>;t=<seconds until full>`.",
                  "schema": {"type": "string"}},
}
RETRY_AFTER = {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}}
ALLOW = {"description": "The methods the path has, e.g. `GET, POST` (RFC 9110).", "required": True,
         "schema": {"type": "string"}}
# Shared enums defined in the domain, which has no reason to carry API wording.
ENUM_DESCRIPTIONS = {
    "Availability": "Whether a stone can be bought: AVAILABLE, ON_HOLD, SOLD, MEMO, or UNKNOWN when the feed "
    "says something else.",
}
SECURITY: list[dict[str, list[str]]] = [
    {"ApiKey": []}, {"HmacClientId": [], "HmacTimestamp": [], "HmacNonce": [], "HmacSignature": []},
]


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
    scopes, query_models = route_scopes(app), route_query_models(app)
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            _declare_method_not_allowed(operation)
            if (model := query_models.get((method.upper(), path))) is not None:
                operation["parameters"] = [*operation.get("parameters", []), *model.parameters()]
            if not is_protected(path):
                operation["security"] = []
                continue
            operation["security"] = SECURITY
            _declare_limits(operation)
            scope = scopes.get((method.upper(), path))
            operation["x-required-scope"] = scope
            operation["description"] = f"{operation.get('description', '')}\n\nRequires scope: `{scope}`.".strip()
    app.openapi_schema = schema
    return schema


def _declare_limits(operation: dict[str, Any]) -> None:
    """Every answer past authentication carries the rate-limit fields; a body that is not JSON is a 400."""
    responses = operation["responses"]
    if "requestBody" in operation and "400" not in responses:
        responses["400"] = dict(responses["422"], description=error_responses(400)[400]["description"])
    for status, response in responses.items():
        if status not in ("401", "408", "413"):
            response.setdefault("headers", {}).update(RATE_LIMIT_HEADERS)
    responses["429"].setdefault("headers", {})["Retry-After"] = RETRY_AFTER


def _declare_method_not_allowed(operation: dict[str, Any]) -> None:
    """Every path answers 405 to a method it does not have, with `Allow` naming those it has. OpenAPI describes
    answers per operation, so each operation of the path declares it."""
    operation["responses"]["405"] = {
        "description": error_responses(405)[405]["description"],
        "headers": {"Allow": ALLOW},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }
