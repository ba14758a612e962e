"""The ASGI application: `create_app(...)` wires the routers, credentials, limits and error shape.

Everything the app needs is passed in, so the same factory serves uvicorn on one machine and the Azure HTTP
function (which forwards requests to the ASGI app), and tests build as many apps as they like.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, FastAPI

from opus.api.context import ApiContext, ReplayWait
from opus.api.cors import install_cors
from opus.api.errors import install_error_handlers
from opus.api.openapi import build_openapi
from opus.api.ratelimit import RateLimiter
from opus.api.routers import analytics, diamonds, health, operations, orchestration, pricing_rules, triggers
from opus.api.schemas.common import error_responses
from opus.api.security import Authenticator, AuthMiddleware
from opus.config import Settings
from opus.db.pool import Database
from opus.domain.auth import Scope as AccessScope
from opus.ports import Feed, PipelineControl

API_PREFIX = "/api/v2"
OPENAPI_URL = f"{API_PREFIX}/openapi.json"
DOCS_URL = f"{API_PREFIX}/docs"
# The documentation is public so that people and client generators can read it without a key.
PUBLIC_PATHS = frozenset({OPENAPI_URL, DOCS_URL, f"{DOCS_URL}/oauth2-redirect"})

DESCRIPTION = """\
The Opus diamond inventory: search stones, hold and buy them, manage pricing rules, watch and trigger the pipeline.

**Credentials** (every route except `/health`): an `X-API-Key` header, or an HMAC signature (`X-Client-Id`,
`X-Timestamp`, `X-Signature`; HMAC clients have the admin scope). Scopes: `read` (search, stones, analytics,
pricing rules), `trade` (read plus holds and purchases), `admin` (everything, including availability changes,
triggers and pricing-rule changes). Missing or invalid credentials give 401, a scope that does not cover the
route 403, more than the configured requests per minute per credential 429 with `Retry-After` (each server
instance counts separately).

**Errors** always look like `{"error": {"code": "...", "message": "...", "details": ...}}`.
"""


def is_protected(path: str) -> bool:
    return (path == API_PREFIX or path.startswith(API_PREFIX + "/")) and path not in PUBLIC_PATHS


def _utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    *,
    db: Database,
    settings: Settings,
    feed: Feed | None,
    control: PipelineControl | None,
    clock: Callable[[], datetime] | None = None,
    replay_wait: ReplayWait | None = None,
) -> FastAPI:
    """Build the API. `feed` may be None (trading routes answer 503), so may `control` (trigger routes 503).
    `replay_wait` bounds how long a repeated purchase waits for the first one (default: ReplayWait())."""
    now = clock or _utc_now
    app = FastAPI(
        title="Opus API",
        version="2.0.0",
        description=DESCRIPTION,
        openapi_url=OPENAPI_URL,
        docs_url=DOCS_URL,
        swagger_ui_oauth2_redirect_url=f"{DOCS_URL}/oauth2-redirect",
        redoc_url=None,
        openapi_tags=[
            {"name": "health", "description": "Liveness, no credentials."},
            {"name": "diamonds", "description": "Search, read, hold, release, buy, set availability."},
            {"name": "analytics", "description": "Inventory summary, runs, suppliers, errors, alerts."},
            {"name": "triggers", "description": "Start and steer pipeline runs (admin)."},
            {"name": "pricing rules", "description": "Rules that price stones; changes reprice at once."},
            {"name": "operations", "description": "The calling credential; run history and pipeline state."},
        ],
    )
    app.state.opus = ApiContext(db=db, settings=settings, feed=feed, control=control, clock=now,
                                replay_wait=replay_wait or ReplayWait())
    install_error_handlers(app)

    api = APIRouter(prefix=API_PREFIX, responses=error_responses(401, 403, 413, 422, 429, 500))
    for module in (diamonds, analytics, triggers, pricing_rules, operations, orchestration):
        api.include_router(module.router)
    app.include_router(health.router)
    app.include_router(api)

    app.add_middleware(
        AuthMiddleware,
        authenticator=Authenticator(
            db, settings.hmac_secrets, now,
            hmac_scopes={client: AccessScope(scope) for client, scope in settings.hmac_scopes.items()},
        ),
        limiter=RateLimiter(settings.rate_limit_per_minute, lambda: now().timestamp()),
        is_protected=is_protected,
    )
    install_cors(app, settings.cors_origins)  # outermost: preflights are answered before authentication

    def openapi() -> dict[str, Any]:
        return build_openapi(app, is_protected)

    app.openapi = openapi  # type: ignore[method-assign]
    return app
