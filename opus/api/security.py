"""Who is calling (API key or HMAC signature), how often, and whether their scope allows the route.

Authentication runs as ASGI middleware in front of every `/api/v2` path except the documentation, so a route
added later is protected without remembering anything, and an unauthenticated caller learns nothing about
which routes exist or what they accept (401 comes before 404, 405 and body validation). The scope is checked
there too, before the body is read or parsed (`ScopeTable` finds the route first); `RequireScope` stays on each
route because the needed scope is a property of the route, and it is what the OpenAPI document reads.

What a hostile or careless client can cost is bounded here: failed authentications per client address
(`auth_failures`), the size of every body (`limits.max_body_bytes`, 413) and the time it may take to arrive
(`limits.body_timeout_s`, 408), and requests per credential across every instance (`SharedRateLimiter`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import anyio
from fastapi import Request
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opus.api.credentials import (
    API_KEY_HEADER,
    CHALLENGE,
    CLIENT_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Authenticator,
    PendingSignature,
    Principal,
    unauthorized,
)
from opus.api.errors import DATABASE_UNAVAILABLE, ApiError, database_unavailable, error_response
from opus.api.ratelimit import Quota, RateLimiter, SharedRateLimiter
from opus.domain.auth import Scope as AccessScope

__all__ = [
    "ADMIN", "API_KEY_HEADER", "CHALLENGE", "CLIENT_HEADER", "NONCE_HEADER", "READ", "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER", "TRADE", "AuthMiddleware", "Authenticator", "BodyLimits", "Principal", "RequireScope",
]


_BODILESS = frozenset({"GET", "HEAD"})


class RequireScope:
    """Route dependency: the caller's scope must include `scope`. Returns the Principal."""

    def __init__(self, scope: AccessScope) -> None:
        self.scope = scope

    async def __call__(self, request: Request) -> Principal:
        principal = request.scope.get("state", {}).get("principal")
        if not isinstance(principal, Principal):
            raise unauthorized("credentials required")
        if not principal.scope.allows(self.scope):
            raise forbidden(self.scope, principal.scope)
        return principal


def forbidden(needed: AccessScope, held: AccessScope) -> ApiError:
    return ApiError(403, f"this route needs the {needed.value!r} scope; the credential has {held.value!r}")


READ = RequireScope(AccessScope.READ)
TRADE = RequireScope(AccessScope.TRADE)
ADMIN = RequireScope(AccessScope.ADMIN)


@dataclass(frozen=True, slots=True)
class BodyLimits:
    max_body_bytes: int
    body_timeout_s: float


class AuthMiddleware:
    """Authenticate, rate-limit and authorise every protected request before routing."""

    def __init__(
        self, app: ASGIApp, *, authenticator: Authenticator, limiter: SharedRateLimiter,
        auth_failures: RateLimiter, limits: BodyLimits, is_protected: Callable[[str], bool],
        required_scope: Callable[[Scope], AccessScope | None],
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.limiter = limiter
        self.auth_failures = auth_failures
        self.limits = limits
        self.is_protected = is_protected
        self.required_scope = required_scope

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.is_protected(_route_path(scope)):
            await self.app(scope, receive, send)
            return
        source = _source(scope)
        refused = self.auth_failures.blocked(source)
        if not refused.allowed:
            # Checked before the credential, so a guesser costs no database lookup at all.
            await error_response(
                429, f"more than {self.auth_failures.per_minute} failed authentications a minute from this "
                "address", code="too_many_failures", headers={"Retry-After": str(refused.retry_after_s)},
            )(scope, receive, send)
            return
        try:
            principal, quota, body = await self._admit(scope, receive)
        except ApiError as exc:
            if exc.status == 401:
                self.auth_failures.check(source)
            await error_response(exc.status, str(exc), code=exc.code, headers=exc.headers)(scope, receive, send)
            return
        except DATABASE_UNAVAILABLE:
            await database_unavailable()(scope, receive, send)
            return
        except _ClientGone:
            return
        if not quota.allowed:
            response = error_response(
                429, f"more than {self.limiter.per_minute} requests a minute for this credential",
                headers=quota.headers(),
            )
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive if body is None else _replay(body, receive),
                       _with_headers(send, quota.headers()))

    async def _admit(self, scope: Scope, receive: Receive) -> tuple[Principal, Quota, bytes | None]:
        """The caller, their quota and the whole body (None: the request has none, and nothing was read), or
        the ApiError that refuses the request."""
        headers = Headers(scope=scope)
        declared = _declared_length(headers)
        if declared is not None and declared > self.limits.max_body_bytes:
            raise self._too_large()
        method, path = scope["method"], _path_with_query(scope)
        # A GET that declares no body has none that any route reads: nothing to wait for or to bound. (Only
        # when nothing is declared: over HTTP/2, or through an ASGI adapter, a body may come without either
        # Content-Length or Transfer-Encoding, which is why other methods are read and capped regardless.)
        bodiless = method in _BODILESS and declared is None and "transfer-encoding" not in headers
        body: bytes | None = None
        if API_KEY_HEADER not in headers and any(
            h in headers for h in (CLIENT_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER, NONCE_HEADER)
        ):
            # Everything but the signature is checked before the body is read: a stranger costs no buffering.
            pending = self.authenticator.pending_signature(headers)
            body = await self._read_body(receive)
            principal, quota = await anyio.to_thread.run_sync(self._signed, pending, method, path, body)
        else:
            # A key verified moments ago and a lease with tokens left need no I/O: no thread for them.
            remembered = self._keyed_from_memory(headers)
            if remembered is None:
                remembered = await anyio.to_thread.run_sync(self._keyed, headers)
            principal, quota = remembered
        if not quota.allowed:
            return principal, quota, b""
        needed = self.required_scope(scope)
        if needed is not None and not principal.scope.allows(needed):
            raise forbidden(needed, principal.scope)
        if body is None and not bodiless:
            body = await self._read_body(receive)
        return principal, quota, body

    def _keyed_from_memory(self, headers: Headers) -> tuple[Principal, Quota] | None:
        principal = self.authenticator.from_memory(headers)
        if principal is None:
            return None
        quota = self.limiter.take_leased(principal.id)
        return None if quota is None else (principal, quota)

    def _keyed(self, headers: Headers) -> tuple[Principal, Quota]:
        principal = self.authenticator.authenticate(headers)
        return principal, self.limiter.take(principal.id)

    def _signed(self, pending: PendingSignature, method: str, path: str, body: bytes) -> tuple[Principal, Quota]:
        principal = self.authenticator.verify_signature(pending, method, path, body)
        return principal, self.limiter.take(principal.id)

    def _too_large(self) -> ApiError:
        return ApiError(413, f"a request body may be at most {self.limits.max_body_bytes} bytes",
                        headers={"Connection": "close"})

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            with anyio.fail_after(self.limits.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _ClientGone
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.limits.max_body_bytes:
                        raise self._too_large()
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            raise ApiError(408, f"the request body did not arrive within {self.limits.body_timeout_s:g} s",
                           code="request_timeout", headers={"Connection": "close"}) from None


class _ClientGone(Exception):
    """The client disconnected before its body arrived: there is no one to answer."""


def _source(scope: Scope) -> str:
    """The caller's address, as the server saw it: the socket's peer under uvicorn; on Azure Functions, whose
    adapter gives none, the address the platform's front end named (`opus.azure.client_address`). A request
    header is never read here: anywhere else it would be the caller's to invent."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _declared_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise ApiError(400, "Content-Length must be a plain number of bytes", headers={"Connection": "close"})
    return int(value)


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def _path_with_query(scope: Scope) -> str:
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes | bytearray) else scope["path"]
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else str(path)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _with_headers(send: Send, extra: dict[str, str]) -> Send:
    raw = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in extra.items()]

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *raw]}
        await send(message)

    return sending
