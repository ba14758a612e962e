"""The Nivoda GraphQL client (`Feed` port): token, count, page, get, hold, cancel_hold, order.

Written against docs/nivoda-api.md. One instance (and its one `httpx.Client`) is shared by every worker
thread: the token is refreshed under a lock, one refresh at a time, and a token bucket spaces all requests.
Errors are classified here, at the boundary: callers see FeedTransientError or FeedPermanentError (including
its FeedAuthError), plus ValueError for arguments that can never be valid.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import httpx

from opus.domain.models import FeedQuery, HoldResult
from opus.errors import FeedAuthError, FeedPermanentError, FeedTransientError
from opus.feeds import nivoda_queries as q
from opus.feeds.nivoda_responses import (
    AuthRejected,
    NotFound,
    RateLimited,
    UnprocessedError,
    as_int,
    interpret,
    is_truthy,
    parse_until,
    refresh_margin_s,
    token_lifetime_s,
)
from opus.feeds.ratelimit import RateLimiter, TokenBucket

if TYPE_CHECKING:
    from opus.config import Settings
    from opus.db.pool import Database

log = logging.getLogger(__name__)

JSON = dict[str, Any]

READ_ATTEMPTS = 3
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 8.0
# A longer Retry-After is not slept through inside a worker: the error goes up so the queue can delay instead.
MAX_RETRY_AFTER_S = 30.0
CONNECT_TIMEOUT_S = 10.0
_SECRETS = frozenset({"password", "token"})


@dataclass(frozen=True, slots=True)
class _Token:
    value: str = field(repr=False)
    refresh_at: float  # monotonic clock
    expires_at: float  # monotonic clock


class NivodaClient:
    """A thread-safe Nivoda client. Use one per process, as a context manager or with `close()`."""

    name = "nivoda"

    def __init__(
        self,
        endpoint: str,
        username: str,
        password: str,
        *,
        timeout_s: float = 60.0,
        rate_limit_per_s: float = 25.0,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        read_attempts: int = READ_ATTEMPTS,
        limiter: RateLimiter | None = None,
        staging: bool = False,
    ) -> None:
        if not endpoint:
            raise ValueError("endpoint must not be empty")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        if read_attempts < 1:
            raise ValueError(f"read_attempts must be at least 1, got {read_attempts!r}")
        self._endpoint = endpoint
        self._username = username
        self._password = password
        self._timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, CONNECT_TIMEOUT_S))
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=self._timeout)
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._read_attempts = read_attempts
        # The limiter keeps real time of its own: an injected clock must not stretch or skip its spacing.
        # Without one (no database at hand) the client spaces its own requests.
        self._limiter: RateLimiter = limiter if limiter is not None else TokenBucket(rate_limit_per_s)
        self._page_document = q.page_document(staging=staging)
        self._get_document = q.get_document(staging=staging)
        # Cleared for good once the server refuses `expires` in the login (see `_authenticate`).
        self._select_expires = True
        self._auth_lock = threading.Lock()
        self._token: _Token | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, db: Database | None = None) -> NivodaClient:
        """The process's client; with `db`, its requests count against the one limit all of Opus shares."""
        limiter = None
        if db is not None:
            from opus.feeds.postgres_ratelimit import PostgresRateLimiter

            limiter = PostgresRateLimiter(db, settings.nivoda_rate_limit_per_s)
        return cls(
            settings.nivoda_endpoint,
            settings.nivoda_username,
            settings.nivoda_password.get_secret_value(),
            timeout_s=settings.nivoda_timeout_s,
            read_attempts=settings.nivoda_read_attempts,
            rate_limit_per_s=settings.nivoda_rate_limit_per_s,
            limiter=limiter,
            staging=settings.nivoda_staging,
        )

    # --- lifecycle ------------------------------------------------------------------------------------
    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- Feed -----------------------------------------------------------------------------------------
    def count(self, query: FeedQuery) -> int:
        if q.is_empty_range(query):
            return 0
        data = self._run_as("count", q.COUNT, {"query": q.diamond_query(query)})
        value = as_int(data.get("diamonds_by_query_count"))
        if value is None or value < 0:
            raise FeedPermanentError("count: diamonds_by_query_count is missing or not a count")
        return value

    def page(self, query: FeedQuery, offset: int, limit: int) -> list[JSON]:
        variables = q.page_variables(query, offset, limit)  # ValueError before any request
        if q.is_empty_range(query):
            return []
        data = self._run_as("page", self._page_document, variables)
        result = data.get("diamonds_by_query")
        raw = result.get("items") if isinstance(result, dict) else None
        if not isinstance(raw, list) or not all(item is None or isinstance(item, dict) for item in raw):
            raise FeedPermanentError("page: diamonds_by_query.items is missing or not a list of objects")
        # A null item is dropped rather than failing the page: a caller that advances its offset by the
        # rows it received then re-reads a row (harmless upsert) and never skips one.
        items = [item for item in raw if item is not None]
        extra = {"operation": "page", "offset": offset, "limit": limit, "rows": len(items)}
        if len(items) < len(raw):
            log.warning("nivoda page held null items", extra={**extra, "nulls": len(raw) - len(items)})
        log.debug("nivoda page", extra=extra)
        return items

    def get(self, stone_id: str) -> JSON | None:
        try:
            data = self._run_as("get", self._get_document, {"diamond_id": stone_id}, tolerate_not_found=True)
        except NotFound:
            return None
        item = data.get("get_diamond_by_id")
        if item is None or isinstance(item, dict):
            return item
        raise FeedPermanentError("get: get_diamond_by_id is not an object")

    def hold(self, stone_id: str) -> HoldResult:
        data = self._run_as("hold", q.CREATE_HOLD, {"product_id": stone_id}, mutation=True)
        hold = data.get("create_hold")
        if not isinstance(hold, dict):
            raise FeedPermanentError("hold: create_hold returned no hold")
        if is_truthy(hold.get("denied")):
            # A denied hold's id, when present, is the hold that blocks ours, not one we may cancel.
            log.info("nivoda hold denied", extra={"operation": "hold", "stone_id": stone_id})
            return HoldResult(None, True, None, "Nivoda denied the hold: the stone is held, sold or on memo")
        hold_id = hold.get("id")
        if hold_id in (None, ""):
            raise FeedPermanentError("hold: create_hold returned neither an id nor a denial")
        return HoldResult(str(hold_id), False, parse_until(hold.get("until")))

    def cancel_hold(self, hold_id: str) -> None:
        data = self._run_as("cancel_hold", q.CANCEL_HOLD, {"hold_id": hold_id}, mutation=True)
        if not isinstance(data.get("cancel_hold"), dict):
            raise FeedPermanentError(f"cancel_hold: Nivoda did not confirm cancelling hold {hold_id!r}")

    def order(self, offer_id: str, *, reference: str | None = None, comment: str | None = None) -> str:
        items = q.order_items(offer_id, reference, comment)
        data = self._run_as("order", q.CREATE_ORDER, {"items": items}, mutation=True)
        result = data.get("create_order")
        if isinstance(result, dict):  # tolerate an object answer as well as the documented scalar id
            result = result.get("id")
        if isinstance(result, bool) or not isinstance(result, str | int) or result == "":
            raise FeedPermanentError("order: create_order returned no order id")
        return str(result)

    # --- token ----------------------------------------------------------------------------------------
    def _valid_token(self) -> str:
        current = self._token
        if current is not None and self._clock() < current.refresh_at:
            return current.value
        with self._auth_lock:  # one refresh at a time; the others wait and then use its token
            current = self._token
            if current is not None and self._clock() < current.refresh_at:
                return current.value
            try:
                self._token = self._authenticate()
            except FeedTransientError:
                if current is not None and self._clock() < current.expires_at:
                    log.warning("nivoda token refresh failed; keeping the current token until it expires")
                    return current.value
                raise
            return self._token.value

    def _invalidate(self, token: str) -> None:
        with self._auth_lock:
            if self._token is not None and self._token.value == token:
                self._token = None

    def _authenticate(self) -> _Token:
        started = self._clock()
        try:
            data = self._login()
        except AuthRejected as exc:
            raise FeedAuthError(f"Nivoda refused the credentials of user {self._username!r}: {exc}") from None
        except FeedAuthError:
            raise
        except FeedPermanentError as exc:
            raise FeedAuthError(f"authentication as {self._username!r} failed: {exc}") from None
        auth = data.get("authenticate")
        payload = auth.get("username_and_password") if isinstance(auth, dict) else None
        token = payload.get("token") if isinstance(payload, dict) else None
        if not isinstance(token, str) or not token:
            raise FeedAuthError(f"Nivoda returned no token for user {self._username!r}")
        expires = payload.get("expires") if isinstance(payload, dict) else None
        lifetime = token_lifetime_s(expires, self._wall_clock())
        refresh_at = started + lifetime - refresh_margin_s(lifetime)
        log.info("nivoda authenticated", extra={"operation": "authenticate", "lifetime_s": round(lifetime)})
        return _Token(token, refresh_at, started + lifetime)

    def _login(self) -> JSON:
        """The authenticate answer, selecting `expires` unless the server's schema refuses it.

        A validation error naming `expires` means this server does not offer it: log in again with the token
        alone (its lifetime is then the documented 6 hours) and never ask for `expires` again.
        """
        variables = {"username": self._username, "password": self._password}
        if self._select_expires:
            try:
                return self._post_with_retries("authenticate", q.AUTHENTICATE, variables, mutation=False)
            except AuthRejected:
                raise
            except FeedPermanentError as exc:
                if "expires" not in str(exc):
                    raise
                log.warning("nivoda refused `expires` in the login; logging in with the token alone",
                            extra={"operation": "authenticate"})
                self._select_expires = False
        return self._post_with_retries("authenticate", q.AUTHENTICATE_TOKEN_ONLY, variables, mutation=False)

    # --- transport ------------------------------------------------------------------------------------
    def _run_as(
        self, operation: str, document: str, variables: JSON, *, mutation: bool = False,
        tolerate_not_found: bool = False,
    ) -> JSON:
        """Run an operation inside `as(token:)`, return `data.as`; re-authenticate once on an auth error."""
        reauthenticated = False
        while True:
            token = self._valid_token()
            try:
                data = self._post_with_retries(
                    operation, document, {**variables, "token": token}, mutation=mutation,
                    tolerate_not_found=tolerate_not_found,
                )
            except AuthRejected as exc:
                if reauthenticated:
                    raise FeedAuthError(f"{operation}: Nivoda refused a fresh token: {exc}") from None
                log.info("nivoda token refused; re-authenticating", extra={"operation": operation})
                reauthenticated = True
                self._invalidate(token)
                continue
            result = data.get("as")
            if not isinstance(result, dict):
                raise FeedPermanentError(f"{operation}: the answer has no data.as object")
            return result

    def _post_with_retries(
        self, operation: str, document: str, variables: JSON, *, mutation: bool,
        tolerate_not_found: bool = False,
    ) -> JSON:
        """Reads retry transient errors; mutations only those raised before the server processed anything."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._post(operation, document, variables, tolerate_not_found)
            except FeedTransientError as exc:
                unprocessed = isinstance(exc, UnprocessedError)
                retryable = (unprocessed or not mutation) and attempt < self._read_attempts
                if exc.retry_after is not None and exc.retry_after > MAX_RETRY_AFTER_S:
                    retryable = False
                extra = {"operation": operation, "attempt": attempt, "error": str(exc)}
                throttled = isinstance(exc, RateLimited)
                if throttled:
                    # Throttled: everyone holds back, not only this thread (the limiter's pause is fleet-wide).
                    pause = exc.retry_after if exc.retry_after is not None else self._backoff_s(attempt, None)
                    self._limiter.pause(pause)
                if not retryable:
                    log.warning("nivoda request failed", extra=extra)
                    if mutation and not unprocessed:
                        raise FeedTransientError(
                            f"{operation}: the request may have been processed, so it was not retried: {exc}",
                            retry_after=exc.retry_after,
                        ) from exc
                    raise
                # After a 429 the limiter's pause does the waiting; a little jitter spreads the retries.
                delay = random.uniform(0, 0.05) if throttled else self._backoff_s(attempt, exc.retry_after)
                log.warning("nivoda request failed; retrying", extra={**extra, "delay_s": round(delay, 3)})
                self._sleep(delay)

    def _backoff_s(self, attempt: int, retry_after: float | None) -> float:
        base = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1))
        if retry_after is not None:
            return retry_after + random.uniform(0, base / 2)
        return random.uniform(base / 2, base)

    def _post(self, operation: str, document: str, variables: JSON, tolerate_not_found: bool) -> JSON:
        secrets = tuple(v for k, v in variables.items() if k in _SECRETS and isinstance(v, str) and v)
        self._limiter.acquire()
        started = time.monotonic()
        try:
            response = self._http.post(
                self._endpoint, json={"query": document, "variables": variables}, timeout=self._timeout
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise UnprocessedError(f"{operation}: cannot connect to Nivoda ({type(exc).__name__})") from exc
        except httpx.TimeoutException as exc:
            raise FeedTransientError(f"{operation}: no answer in time ({type(exc).__name__})") from exc
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise FeedPermanentError(f"{operation}: bad Nivoda endpoint {self._endpoint!r}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise FeedTransientError(f"{operation}: transport error ({type(exc).__name__})") from exc
        elapsed_ms = round((time.monotonic() - started) * 1000)
        log.debug(
            "nivoda response",
            extra={"operation": operation, "status": response.status_code, "elapsed_ms": elapsed_ms},
        )
        return interpret(
            response, operation, secrets=secrets, now_wall=self._wall_clock(),
            tolerate_not_found=tolerate_not_found,
        )
