"""Who is calling (API key or HMAC signature), how often, and whether their scope allows the route.

Authentication runs as ASGI middleware in front of every `/api/v2` path except the documentation, so a route
added later is protected without remembering anything, and an unauthenticated caller learns nothing about
which routes exist or what they accept (401 comes before 404, 405 and body validation). Authorisation is a
per-route dependency (`RequireScope`), because the needed scope is a property of the route.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio
from fastapi import Request
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opus.api.errors import DATABASE_UNAVAILABLE, ApiError, database_unavailable, error_response
from opus.api.ratelimit import RateLimiter
from opus.db.pool import Database
from opus.db.queries import Queries
from opus.domain import auth
from opus.domain.auth import Scope as AccessScope

Q = Queries("api_auth")
API_KEY_HEADER = "X-API-Key"
CLIENT_HEADER = "X-Client-Id"
TIMESTAMP_HEADER = "X-Timestamp"
SIGNATURE_HEADER = "X-Signature"
CHALLENGE = (
    'ApiKey realm="opus", header="X-API-Key", '
    'HMAC-SHA256 realm="opus", headers="X-Client-Id X-Timestamp X-Signature"'
)
MAX_SIGNED_BODY = 1_048_576  # HMAC needs the whole body in memory before the route runs
TOUCH_INTERVAL_S = 60.0
PRUNE_INTERVAL_S = 60.0
# HMAC clients are operators' own systems configured by hand in HMAC_SECRETS, hence the full scope unless
# `hmac_scopes` names another for a client.
HMAC_SCOPE = AccessScope.ADMIN


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. `id` is stable per credential: it keys rate limits and ownership of holds."""

    id: str
    name: str
    scope: AccessScope


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": CHALLENGE})


class Authenticator:
    """Checks credentials against the database (keys) and the settings (HMAC secrets)."""

    def __init__(
        self, db: Database, hmac_secrets: Mapping[str, str], clock: Callable[[], datetime], *,
        hmac_scopes: Mapping[str, AccessScope] | None = None,
    ) -> None:
        self._db = db
        self._secrets = dict(hmac_secrets)
        self._hmac_scopes = dict(hmac_scopes or {})
        self._clock = clock
        self._lock = threading.Lock()
        self._touched: dict[int, float] = {}
        self._last_prune = 0.0

    def authenticate(self, method: str, path_with_query: str, headers: Headers, body: bytes) -> Principal:
        key = headers.get(API_KEY_HEADER)
        if key is not None:
            return self._by_key(key)
        if any(h in headers for h in (CLIENT_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)):
            return self._by_signature(method, path_with_query, headers, body)
        raise _unauthorized(f"credentials required: an {API_KEY_HEADER} header or an HMAC signature")

    def _by_key(self, key: str) -> Principal:
        parsed = auth.parse_key(key.strip())
        if parsed is None:
            raise _unauthorized("invalid API key")
        with self._db.connection() as conn:
            row = conn.execute(Q.key_by_prefix, {"prefix": parsed.prefix}).fetchone()
        if row is None or not auth.key_matches(key.strip(), row["digest"]):
            raise _unauthorized("invalid API key")
        if row["revoked_at"] is not None:
            raise _unauthorized("this API key has been revoked")
        self._touch(int(row["id"]))
        return Principal(f"key:{row['id']}", str(row["name"]), AccessScope(row["scope"]))

    def _touch(self, key_id: int) -> None:
        # Remembering the last write here saves a round trip per request; the SQL guard covers other processes.
        now = self._clock()
        stamp = now.timestamp()
        with self._lock:
            if stamp - self._touched.get(key_id, float("-inf")) < TOUCH_INTERVAL_S:
                return
            self._touched[key_id] = stamp
        with self._db.transaction() as conn:
            conn.execute(Q.touch_key, {"id": key_id, "now": now})

    def _by_signature(self, method: str, path_with_query: str, headers: Headers, body: bytes) -> Principal:
        client_id = headers.get(CLIENT_HEADER, "")
        signature = headers.get(SIGNATURE_HEADER, "")
        timestamp_text = headers.get(TIMESTAMP_HEADER, "")
        if not (client_id and signature and timestamp_text):
            raise _unauthorized(f"HMAC needs {CLIENT_HEADER}, {TIMESTAMP_HEADER} and {SIGNATURE_HEADER}")
        timestamp = auth.parse_timestamp(timestamp_text)
        if timestamp is None:
            raise _unauthorized(f"{TIMESTAMP_HEADER} must be Unix seconds")
        now = self._clock()
        if not auth.timestamp_fresh(timestamp, now.timestamp()):
            raise _unauthorized(f"{TIMESTAMP_HEADER} is more than {auth.HMAC_WINDOW_S} s from the server's time")
        secret = auth.find_secret(self._secrets, client_id)
        if secret is None or not auth.signature_matches(
            secret, method, path_with_query, timestamp_text, body, signature
        ):
            raise _unauthorized("invalid signature")
        self._remember(client_id, signature.strip().lower(), timestamp, now)
        return Principal(f"hmac:{client_id}", client_id, self._hmac_scopes.get(client_id, HMAC_SCOPE))

    def _remember(self, client_id: str, signature: str, timestamp: int, now: datetime) -> None:
        """Refuse a signature seen before; rows outlive the freshness window, after which they are pruned."""
        expires = datetime.fromtimestamp(timestamp, tz=now.tzinfo) + timedelta(seconds=auth.HMAC_WINDOW_S + 1)
        prune = False
        with self._lock:
            if now.timestamp() - self._last_prune >= PRUNE_INTERVAL_S:
                self._last_prune, prune = now.timestamp(), True
        with self._db.transaction() as conn:
            if prune:
                conn.execute(Q.prune_signatures, {"now": now})
            fresh = conn.execute(
                Q.remember_signature, {"signature": signature, "client_id": client_id, "expires_at": expires}
            ).fetchone()
        if fresh is None:
            raise _unauthorized("this signature was already used (replay)")


class RequireScope:
    """Route dependency: the caller's scope must include `scope`. Returns the Principal."""

    def __init__(self, scope: AccessScope) -> None:
        self.scope = scope

    async def __call__(self, request: Request) -> Principal:
        principal = request.scope.get("state", {}).get("principal")
        if not isinstance(principal, Principal):
            raise _unauthorized("credentials required")
        if not principal.scope.allows(self.scope):
            raise ApiError(403, f"this route needs the {self.scope.value!r} scope; the credential has "
                           f"{principal.scope.value!r}")
        return principal


READ = RequireScope(AccessScope.READ)
TRADE = RequireScope(AccessScope.TRADE)
ADMIN = RequireScope(AccessScope.ADMIN)


class AuthMiddleware:
    """Authenticate and rate-limit every protected request before routing."""

    def __init__(
        self, app: ASGIApp, *, authenticator: Authenticator, limiter: RateLimiter,
        is_protected: Callable[[str], bool],
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.limiter = limiter
        self.is_protected = is_protected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.is_protected(_route_path(scope)):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        signed = _needs_body(headers)
        body = b""
        if signed:
            try:
                body = await _read_body(receive)
            except ApiError as exc:
                await error_response(exc.status, str(exc), code=exc.code)(scope, receive, send)
                return
        path = _path_with_query(scope)
        try:
            principal = await anyio.to_thread.run_sync(
                self.authenticator.authenticate, scope["method"], path, headers, body
            )
        except ApiError as exc:
            await error_response(exc.status, str(exc), code=exc.code, headers=exc.headers)(scope, receive, send)
            return
        except DATABASE_UNAVAILABLE:
            await database_unavailable()(scope, receive, send)
            return
        decision = self.limiter.check(principal.id)
        if not decision.allowed:
            response = error_response(
                429, f"more than {self.limiter.per_minute} requests a minute for this credential",
                headers={"Retry-After": str(decision.retry_after_s)},
            )
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, _replay(body, receive) if signed else receive, send)


def _needs_body(headers: Headers) -> bool:
    return API_KEY_HEADER not in headers and SIGNATURE_HEADER in headers


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def _path_with_query(scope: Scope) -> str:
    raw: Any = scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes | bytearray) else scope["path"]
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_SIGNED_BODY:
            raise ApiError(413, f"a signed request body may be at most {MAX_SIGNED_BODY} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
