"""Tokens as nivoda-api.md describes them: random, expiring, `expires` in epoch milliseconds.

A fault can make tokens die early (after N requests or seconds), as a token revoked mid-run does;
`limits` reports those limits at each check, so they can change while tokens are in use.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable

from graphql import GraphQLError

UNAUTHENTICATED = {"code": "UNAUTHENTICATED"}
# (most requests a token serves, most seconds it lives), either None for "no such limit"
TokenLimits = Callable[[], tuple[int | None, float | None]]


def unauthenticated(message: str) -> GraphQLError:
    return GraphQLError(message, extensions=dict(UNAUTHENTICATED))


class TokenStore:
    def __init__(self, username: str, password: str, ttl_s: float, clock: Callable[[], float] = time.time,
                 limits: TokenLimits | None = None) -> None:
        if ttl_s <= 0:
            raise ValueError("token_ttl_s must be > 0")
        self.username = username
        self._password = password
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}
        self._issued: dict[str, float] = {}
        self._uses: dict[str, int] = {}
        self._limits = limits or (lambda: (None, None))

    def issue(self, username: str, password: str) -> tuple[str, int]:
        """A new token and its expiry (epoch milliseconds), or an UNAUTHENTICATED error."""
        ok_user = secrets.compare_digest(username.encode(), self.username.encode())
        ok_password = secrets.compare_digest(password.encode(), self._password.encode())
        if not (ok_user and ok_password):
            raise unauthenticated("unauthorized: invalid username or password")
        now = self._clock()
        token = secrets.token_urlsafe(32)
        with self._lock:
            # forget long-dead tokens so a long demo does not grow without bound
            self._expiry = {t: e for t, e in self._expiry.items() if e > now - 86_400}
            self._issued = {t: i for t, i in self._issued.items() if t in self._expiry}
            self._uses = {t: n for t, n in self._uses.items() if t in self._expiry}
            self._expiry[token] = now + self.ttl_s
            self._issued[token] = now
        return token, int((now + self.ttl_s) * 1000)

    def check(self, token: str | None) -> None:
        if not token:
            raise unauthenticated("unauthorized: no token; use as(token:) or an Authorization: Bearer header")
        max_requests, max_age_s = self._limits()
        now = self._clock()
        with self._lock:
            expiry = self._expiry.get(token)
            if expiry is None:
                raise unauthenticated("unauthorized: unknown token")
            uses = self._uses[token] = self._uses.get(token, 0) + 1
            issued = self._issued[token]
        if now >= expiry:
            raise unauthenticated("unauthorized: token expired")
        if max_requests is not None and uses > max_requests:
            raise unauthenticated("unauthorized: token expired")
        if max_age_s is not None and now >= issued + max_age_s:
            raise unauthenticated("unauthorized: token expired")
