"""Checking credentials: API keys against the database (verified keys trusted briefly from memory), HMAC
signatures against the configured secrets, with each nonce accepted once across every instance."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from starlette.datastructures import Headers

from opus.api.errors import ApiError
from opus.db.pool import Database
from opus.db.queries import Queries
from opus.domain import auth
from opus.domain.auth import Scope as AccessScope

Q = Queries("api_auth")
API_KEY_HEADER = "X-API-Key"
CLIENT_HEADER = "X-Client-Id"
TIMESTAMP_HEADER = "X-Timestamp"
NONCE_HEADER = "X-Nonce"
SIGNATURE_HEADER = "X-Signature"
CHALLENGE = (
    'ApiKey realm="opus", header="X-API-Key", '
    'HMAC-SHA256 realm="opus", headers="X-Client-Id X-Timestamp X-Nonce X-Signature"'
)
TOUCH_INTERVAL_S = 60.0
PRUNE_INTERVAL_S = 60.0
MAX_CACHED_KEYS = 10_000
# Least privilege: an HMAC client reads unless `hmac_scopes` grants it more.
HMAC_SCOPE = AccessScope.READ


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. `id` is stable per credential: it keys rate limits and ownership of holds."""

    id: str
    name: str
    scope: AccessScope


@dataclass(frozen=True, slots=True)
class PendingSignature:
    """A signed request whose headers are in order; only the signature over the body remains to be checked."""

    client_id: str
    secret: str
    timestamp_text: str
    timestamp: int
    nonce: str
    signature: str


@dataclass(frozen=True, slots=True)
class _Verified:
    principal: Principal
    key_id: int
    until: float


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": CHALLENGE})


class Authenticator:
    """Checks credentials against the database (keys) and the settings (HMAC secrets).

    A verified key is remembered for `key_cache_s`: a search then costs no lookup, and a revocation (made by
    any process, e.g. `opus keys revoke`) takes effect within that time. Only successes are remembered, so a
    wrong key always reaches the database, which the failure limit per address keeps rare.
    """

    def __init__(
        self, db: Database, hmac_secrets: Mapping[str, str], clock: Callable[[], datetime], *,
        hmac_scopes: Mapping[str, AccessScope] | None = None, key_cache_s: float = 0.0,
    ) -> None:
        self._db = db
        self._secrets = dict(hmac_secrets)
        self._hmac_scopes = dict(hmac_scopes or {})
        self._clock = clock
        self._key_cache_s = key_cache_s
        self._lock = threading.Lock()
        self._touched: dict[int, float] = {}
        self._verified: dict[str, _Verified] = {}
        self._last_prune = 0.0

    def authenticate(self, headers: Headers) -> Principal:
        """The caller of a request that carries no HMAC headers (an API key, or nothing)."""
        key = headers.get(API_KEY_HEADER)
        if key is None:
            raise unauthorized(f"credentials required: an {API_KEY_HEADER} header or an HMAC signature")
        return self._by_key(key.strip())

    def from_memory(self, headers: Headers) -> Principal | None:
        """The caller, when their API key was verified less than `key_cache_s` ago and nothing is due to be
        written for it: no I/O, so the request needs no thread for it. None: ask `authenticate`."""
        key = headers.get(API_KEY_HEADER)
        if key is None:
            return None
        stamp = self._clock().timestamp()
        cached = self._remembered(key.strip(), stamp)
        if cached is None or stamp - self._touched.get(cached.key_id, float("-inf")) >= TOUCH_INTERVAL_S:
            return None
        return cached.principal

    def _remembered(self, key: str, stamp: float) -> _Verified | None:
        """The key's verification, if it is still within `key_cache_s`."""
        cached = self._verified.get(key)
        return cached if cached is not None and cached.until > stamp else None

    def _by_key(self, key: str) -> Principal:
        stamp = self._clock().timestamp()
        cached = self._remembered(key, stamp)
        if cached is not None:
            self._touch(cached.key_id)
            return cached.principal
        parsed = auth.parse_key(key)
        if parsed is None:
            raise unauthorized("invalid API key")
        with self._db.connection() as conn:
            row = conn.execute(Q.key_by_prefix, {"prefix": parsed.prefix}).fetchone()
        if row is None or not auth.key_matches(key, row["digest"]):
            raise unauthorized("invalid API key")
        if row["revoked_at"] is not None:
            self._verified.pop(key, None)
            raise unauthorized("this API key has been revoked")
        principal = Principal(f"key:{row['id']}", str(row["name"]), AccessScope(row["scope"]))
        if self._key_cache_s > 0:
            with self._lock:
                if len(self._verified) >= MAX_CACHED_KEYS:
                    self._verified.clear()
                self._verified[key] = _Verified(principal, int(row["id"]), stamp + self._key_cache_s)
        self._touch(int(row["id"]))
        return principal

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

    def pending_signature(self, headers: Headers) -> PendingSignature:
        """Check every HMAC header but the signature itself (which needs the body): no I/O."""
        client_id = headers.get(CLIENT_HEADER, "")
        signature = headers.get(SIGNATURE_HEADER, "")
        timestamp_text = headers.get(TIMESTAMP_HEADER, "")
        nonce = headers.get(NONCE_HEADER, "")
        if not (client_id and signature and timestamp_text and nonce):
            raise unauthorized(
                f"HMAC needs {CLIENT_HEADER}, {TIMESTAMP_HEADER}, {NONCE_HEADER} and {SIGNATURE_HEADER}")
        if not auth.nonce_valid(nonce):
            raise unauthorized(f"{NONCE_HEADER} must be {auth.NONCE_MIN_LENGTH} to {auth.NONCE_MAX_LENGTH} "
                               "characters of A-Z, a-z, 0-9, _ and -")
        timestamp = auth.parse_timestamp(timestamp_text)
        if timestamp is None:
            raise unauthorized(f"{TIMESTAMP_HEADER} must be Unix seconds")
        if not auth.timestamp_fresh(timestamp, self._clock().timestamp()):
            raise unauthorized(f"{TIMESTAMP_HEADER} is more than {auth.HMAC_WINDOW_S} s from the server's time")
        secret = auth.find_secret(self._secrets, client_id)
        if secret is None:
            raise unauthorized("invalid signature")
        return PendingSignature(client_id, secret, timestamp_text, timestamp, nonce, signature)

    def verify_signature(self, pending: PendingSignature, method: str, path_with_query: str,
                         body: bytes) -> Principal:
        if not auth.signature_matches(pending.secret, method, path_with_query, pending.timestamp_text, body,
                                      pending.signature, nonce=pending.nonce):
            raise unauthorized(f"invalid signature (lowercase hex HMAC-SHA256 of the request with its "
                               f"{NONCE_HEADER})")
        self._remember(pending.client_id, pending.nonce, pending.timestamp)
        client = pending.client_id
        return Principal(f"hmac:{client}", client, self._hmac_scopes.get(client, HMAC_SCOPE))

    def _remember(self, client_id: str, nonce: str, timestamp: int) -> None:
        """Refuse a nonce seen before; rows outlive the freshness window, after which they are pruned."""
        now = self._clock()
        expires = datetime.fromtimestamp(timestamp, tz=now.tzinfo) + timedelta(seconds=auth.HMAC_WINDOW_S + 1)
        prune = False
        with self._lock:
            if now.timestamp() - self._last_prune >= PRUNE_INTERVAL_S:
                self._last_prune, prune = now.timestamp(), True
        with self._db.transaction() as conn:
            if prune:
                conn.execute(Q.prune_nonces, {"now": now})
            fresh = conn.execute(
                Q.remember_nonce, {"client_id": client_id, "nonce": nonce, "expires_at": expires}
            ).fetchone()
        if fresh is None:
            raise unauthorized(f"this {NONCE_HEADER} was already used (replay)")
