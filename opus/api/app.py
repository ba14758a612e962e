"""The ASGI application: `create_app(...)` wires the routers, credentials, limits and error shape.

Everything the app needs is passed in, so the same factory serves uvicorn on one machine and the Azure HTTP
function (which forwards requests to the ASGI app), and tests build as many apps as they like.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.telemetry import TelemetryConfig

from opus.api.context import ApiContext, ReplayWait
from opus.api.cors import install_cors
from opus.api.docs_assets import install_docs, public_paths
from opus.api.errors import install_error_handlers
from opus.api.openapi import build_openapi
from opus.api.ratelimit import RateLimiter, SharedRateLimiter
from opus.api.routers import analytics, diamonds, health, operations, orchestration, pricing_rules, triggers
from opus.api.routers import purchases as purchase_records
from opus.api.routes import ScopeTable, method_not_allowed
from opus.api.schemas.common import error_responses
from opus.api.security import Authenticator, AuthMiddleware, BodyLimits
from opus.config import Settings
from opus.db.pool import Database
from opus.domain.auth import Scope as AccessScope
from opus.ports import Feed, PipelineControl

API_PREFIX = "/api/v2"
OPENAPI_URL = f"{API_PREFIX}/openapi.json"
DOCS_URL = f"{API_PREFIX}/docs"
# The documentation is public so that people and client generators can read it without a key.
PUBLIC_PATHS = frozenset({OPENAPI_URL, *public_paths(DOCS_URL)})
NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}

DESCRIPTION = """\
The Opus diamond inventory: search stones, hold and buy them, manage pricing rules, watch and trigger the pipeline.

**Credentials** (every route except `/health`): an `X-API-Key` header, or an HMAC signature (`X-Client-Id`,
`X-Timestamp`, `X-Nonce`, `X-Signature`; an HMAC client has the read scope unless configured otherwise).
Scopes: `read` (search, stones, analytics, pricing rules), `trade` (read plus holds and purchases), `admin`
(everything, including availability changes, triggers and pricing-rule changes). Missing or invalid
credentials give 401, a scope that does not cover the route 403 (before the body is read or validated).

**Limits.** More than the configured requests per minute per credential (counted across every server
instance) give 429 with `Retry-After`; every answer carries `RateLimit-Policy` and `RateLimit`
(draft-ietf-httpapi-ratelimit-headers: quota `q` per window `w` seconds, `r` left, `t` seconds until the
bucket is full). Too many failed authentications from one address give 429 `too_many_failures`. A body larger
than the configured size (64 KiB by default) is 413, a body that does not arrive within the configured time
(10 s by default) 408; a body that is not JSON is 400, JSON that does not fit the schema 422.

**Errors** always look like `{"error": {"code": "...", "message": "...", "details": ...}}`.
"""


def is_protected(path: str) -> bool:
    return (path == API_PREFIX or path.startswith(API_PREFIX + "/")) and path not in PUBLIC_PATHS


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _reads_while_served(context: ApiContext) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The lifespan: while a server runs the app, searches read through an asyncio pool of the server's loop
    (`ApiContext.reads`) instead of each taking a thread. Without a lifespan (the Functions host's ASGI adapter,
    a test client outside `with`), they take a thread and `Database`."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Opened without waiting for a connection: an API whose database is down starts, and answers 503
        # until the database is back, as the thread path does.
        reads = context.db.async_reads()
        await reads.open()
        context.reads = reads
        try:
            yield
        finally:
            context.reads = None
            await reads.close()

    return lifespan


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
    context = ApiContext(db=db, settings=settings, feed=feed, control=control, clock=now,
                         replay_wait=replay_wait or ReplayWait())
    app = FastAPI(
        lifespan=_reads_while_served(context),
        title="Opus API",
        version="2.0.0",
        description=DESCRIPTION,
        openapi_url=OPENAPI_URL,
        docs_url=None,  # install_docs serves the page with its assets from the app, not from a CDN
        swagger_ui_oauth2_redirect_url=None,
        redoc_url=None,
        # FastAPI traces requests itself once an OpenTelemetry provider is set up (Application Insights on
        # Azure); where none is, it would still look the providers up on every request.
        telemetry=None if settings.applicationinsights_connection_string else NO_TELEMETRY,
        openapi_tags=[
            {"name": "health", "description": "Liveness, no credentials."},
            {"name": "diamonds", "description": "Search, read, hold, release, buy, set availability."},
            {"name": "analytics", "description": "Inventory summary, runs, suppliers, errors, alerts."},
            {"name": "triggers", "description": "Start and steer pipeline runs (admin)."},
            {"name": "purchases", "description": "Purchases left pending by a dead process: list, resolve (admin)."},
            {"name": "pricing rules", "description": "Rules that price stones; changes reprice at once."},
            {"name": "operations", "description": "The calling credential; run history and pipeline state."},
        ],
    )
    app.state.opus = context
    install_error_handlers(app)
    app.add_exception_handler(405, method_not_allowed)  # ahead of the class handler, for 405s only

    api = APIRouter(prefix=API_PREFIX, responses=error_responses(401, 403, 408, 413, 422, 429, 500))
    for module in (diamonds, purchase_records, analytics, triggers, pricing_rules, operations, orchestration):
        api.include_router(module.router)
    app.include_router(health.router)
    app.include_router(api)
    install_docs(app, docs_url=DOCS_URL, openapi_url=OPENAPI_URL)

    app.add_middleware(
        AuthMiddleware,
        authenticator=Authenticator(
            db, settings.hmac_secrets, now, key_cache_s=settings.api_key_cache_s,
            hmac_scopes={client: AccessScope(scope) for client, scope in settings.hmac_scopes.items()},
        ),
        limiter=SharedRateLimiter(db, settings.rate_limit_per_minute, now),
        auth_failures=RateLimiter(settings.auth_failures_per_minute, lambda: now().timestamp()),
        limits=BodyLimits(settings.api_max_body_bytes, settings.api_request_timeout_s),
        is_protected=is_protected,
        required_scope=ScopeTable(app),
    )
    install_cors(app, settings.cors_origins)  # outermost: preflights are answered before authentication

    def openapi() -> dict[str, Any]:
        return build_openapi(app, is_protected)

    app.openapi = openapi  # type: ignore[method-assign]
    return app
