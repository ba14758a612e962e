"""Reading Nivoda's answers: error classification, token lifetimes, loose scalars. Pure, no I/O.

Nivoda reports most errors in the GraphQL `errors[]` array with HTTP 200, and also answers 429 and 5xx.
Every answer is turned into the data dict or one of: FeedTransientError (retry may help), FeedPermanentError
(it will not), AuthRejected (re-authenticate, then retry once) or NotFound (only where the caller asked).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from opus.errors import FeedPermanentError, FeedTransientError

DEFAULT_TOKEN_LIFETIME_S = 6 * 3600.0  # documented lifetime, assumed whenever `expires` cannot be read
REFRESH_MARGIN_S = 300.0
MAX_MESSAGE_CHARS = 500

_AUTH_MESSAGE = re.compile(
    r"unauthenticated|unauthori[sz]ed|not authori[sz]ed|not authenticated|authentication required|"
    r"not logged in|must be logged in|(?:invalid|expired|bad|missing) (?:access |auth )?token|"
    r"token (?:is |has )?(?:invalid|expired|not valid)|jwt",
    re.IGNORECASE,
)
_AUTH_CODES = frozenset({"UNAUTHENTICATED", "UNAUTHORIZED", "UNAUTHORISED", "INVALID_TOKEN", "TOKEN_EXPIRED"})
_RATE_MESSAGE = re.compile(r"too many requests|rate.?limit", re.IGNORECASE)
_RATE_CODES = frozenset({"RATE_LIMITED", "TOO_MANY_REQUESTS", "THROTTLED"})
_NOT_FOUND_MESSAGE = re.compile(r"not found|does not exist|doesn't exist|could not find|no such", re.I)


class UnprocessedError(FeedTransientError):
    """A transient failure before Nivoda processed the request: safe to retry, even for a mutation."""


class RateLimited(UnprocessedError):
    """Nivoda is throttling (HTTP 429 or a rate-limit error): the whole fleet should hold back."""


class AuthRejected(Exception):
    """Nivoda refused the token or the credentials (HTTP 401, or an auth error in `errors[]`)."""


class NotFound(Exception):
    """Every error of the answer says the thing asked for does not exist."""


# --- token lifetime -----------------------------------------------------------------------------------
def token_lifetime_s(expires: object, now_wall: float) -> float:
    """Seconds the token lives, from the `expires` field, whose unit is unconfirmed.

    > 1e11 is epoch milliseconds, > 1e9 epoch seconds, anything smaller seconds from now; an ISO-8601 string
    is a moment. Missing, unreadable or already past: the documented 6 hours (an auth error re-authenticates
    anyway).
    """
    value = _number_or_moment(expires)
    if value is None:
        return DEFAULT_TOKEN_LIFETIME_S
    if value > 1e11:
        lifetime = value / 1000.0 - now_wall
    elif value > 1e9:
        lifetime = value - now_wall
    else:
        lifetime = value
    return lifetime if lifetime > 0 else DEFAULT_TOKEN_LIFETIME_S


def refresh_margin_s(lifetime_s: float) -> float:
    """Refresh this long before expiry: a few minutes, but never more than half a short token's life."""
    return min(REFRESH_MARGIN_S, lifetime_s / 2.0)


def _number_or_moment(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and value.strip():
        try:
            number = float(value.strip())
        except ValueError:
            moment = _parse_iso(value)
            return moment.timestamp() if moment is not None else None
    else:
        return None
    return number if math.isfinite(number) else None


def _parse_iso(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# --- loose scalars ------------------------------------------------------------------------------------
def parse_until(value: object) -> datetime | None:
    """A hold's `until`: an ISO-8601 string or an epoch number (seconds, or milliseconds when > 1e11)."""
    if isinstance(value, str) and value.strip():
        moment = _parse_iso(value)
        if moment is not None:
            return moment
    number = _number_or_moment(value)
    if number is None or number <= 0:
        return None
    seconds = number / 1000.0 if number > 1e11 else number
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def is_truthy(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes"}
    return value is True or (isinstance(value, int) and value == 1)


def as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


# --- answers ------------------------------------------------------------------------------------------
def retry_after_s(response: httpx.Response, now_wall: float) -> float | None:
    """The `Retry-After` header in seconds (delta-seconds or an HTTP date), or None."""
    header = response.headers.get("retry-after")
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(header).timestamp() - now_wall)
    except (TypeError, ValueError, IndexError):
        return None


def interpret(
    response: httpx.Response, operation: str, *, secrets: tuple[str, ...] = (), now_wall: float,
    tolerate_not_found: bool = False,
) -> dict[str, Any]:
    """The `data` object of a GraphQL answer, or the classified error. `secrets` never appear in messages."""
    status = response.status_code
    body = _json_object(response)
    errors = _errors(body)
    detail = _redact(_describe(errors, response), secrets)[:MAX_MESSAGE_CHARS]
    if status == 429 or (errors and all(_is_rate_limit(e) for e in errors)):
        raise RateLimited(
            f"{operation}: Nivoda is rate limiting (HTTP {status}): {detail}",
            retry_after=retry_after_s(response, now_wall),
        )
    if status >= 500:
        raise FeedTransientError(
            f"{operation}: Nivoda failed (HTTP {status}): {detail}",
            retry_after=retry_after_s(response, now_wall),
        )
    if status == 401 or any(_is_auth(e) for e in errors):
        raise AuthRejected(f"HTTP {status}: {detail}")
    if status >= 300 or status < 200:
        raise FeedPermanentError(f"{operation}: Nivoda refused the request (HTTP {status}): {detail}")
    if body is None:
        if not _parses(response):
            # A success status with a body cut off in transit, or a proxy's maintenance page: the answer was lost,
            # not refused. JSON of the wrong shape, below, is a real answer and stays permanent.
            raise FeedTransientError(f"{operation}: HTTP {status} with a body that is not JSON")
        raise FeedPermanentError(f"{operation}: HTTP {status} with a body that is not a JSON object")
    if errors:
        if tolerate_not_found and all(_NOT_FOUND_MESSAGE.search(_message(e)) for e in errors):
            raise NotFound(detail)
        if all(_is_server_fault(e) for e in errors):
            raise FeedTransientError(f"{operation}: Nivoda failed while answering: {detail}")
        raise FeedPermanentError(f"{operation}: Nivoda refused the request: {detail}")
    data = body.get("data")
    if not isinstance(data, dict):
        raise FeedPermanentError(f"{operation}: the answer has no data")
    return data


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        return None
    return body if isinstance(body, dict) else None


def _parses(response: httpx.Response) -> bool:
    try:
        response.json()
    except ValueError:
        return False
    return True


def _errors(body: dict[str, Any] | None) -> list[Any]:
    errors = body.get("errors") if body is not None else None
    return errors if isinstance(errors, list) else []


def _message(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message", ""))
    return str(error)


# Codes GraphQL servers use for their own failures (as opposed to a query they refuse): worth another try.
_SERVER_FAULT_CODES = frozenset({"INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE", "TIMEOUT", "GATEWAY_TIMEOUT"})


def _is_server_fault(error: Any) -> bool:
    return _code(error) in _SERVER_FAULT_CODES or _message(error).strip().lower() == "internal server error"


def _code(error: Any) -> str:
    if isinstance(error, dict):
        extensions = error.get("extensions")
        if isinstance(extensions, dict):
            return str(extensions.get("code", "")).upper()
    return ""


def _is_auth(error: Any) -> bool:
    message = _message(error)
    if "$token" in message:  # a variable-validation message that merely names the token variable
        return False
    return _code(error) in _AUTH_CODES or bool(_AUTH_MESSAGE.search(message))


def _is_rate_limit(error: Any) -> bool:
    return _code(error) in _RATE_CODES or bool(_RATE_MESSAGE.search(_message(error)))


def _describe(errors: list[Any], response: httpx.Response) -> str:
    if errors:
        text = "; ".join(_message(e) or "(no message)" for e in errors)
    else:
        try:
            text = " ".join(response.text.split())
        except (UnicodeDecodeError, httpx.ResponseNotRead):
            text = ""
        text = text or "(empty body)"
    return text


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text
