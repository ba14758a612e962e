"""One JSON error shape for every failure: `{"error": {"code", "message", "details"}}`.

Our own errors (OpusError), FastAPI's request validation, Starlette's 404/405 and anything unexpected all
leave through here, so clients parse one shape.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import psycopg_pool
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from opus.errors import (
    ConflictError,
    FeedPermanentError,
    HoldDeniedError,
    NotFoundError,
    OpusError,
    TransientError,
    ValidationFailed,
)

log = logging.getLogger(__name__)
MESSAGE_PROBLEMS = 5  # validation problems spelled out in the message; `details` lists them all
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (psycopg.OperationalError, psycopg_pool.PoolTimeout)

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    500: "internal_error",
    502: "feed_error",
    503: "unavailable",
}


class ApiError(OpusError):
    """An error that already knows its HTTP answer (bad cursor, missing header...)."""

    def __init__(
        self, status: int, message: str, *, code: str | None = None, details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _STATUS_CODES.get(status, "error")
        self.details = details
        self.headers = headers


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(
    status: int, message: str, *, code: str | None = None, details: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(code or _STATUS_CODES.get(status, "error"), message, details), status_code=status, headers=headers
    )


def status_for(exc: OpusError) -> tuple[int, str]:
    """The HTTP status and error code of one of our errors."""
    if isinstance(exc, ApiError):
        return exc.status, exc.code
    if isinstance(exc, HoldDeniedError):
        return 409, "hold_denied"
    if isinstance(exc, NotFoundError):
        return 404, "not_found"
    if isinstance(exc, ConflictError):
        return 409, "conflict"
    if isinstance(exc, ValidationFailed):
        return 422, "validation_failed"
    if isinstance(exc, TransientError):
        return 503, "unavailable"
    if isinstance(exc, FeedPermanentError):
        return 502, "feed_error"
    return 500, "internal_error"


def _opus_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OpusError)
    status, code = status_for(exc)
    headers = dict(exc.headers or {}) if isinstance(exc, ApiError) else {}
    if isinstance(exc, TransientError) and exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    details = exc.details if isinstance(exc, ApiError) else getattr(exc, "details", None)
    if status >= 500:
        log.warning("api request failed", extra={"status": status, "error": str(exc)})
    message = str(exc) if status != 500 else "internal error"
    return error_response(status, message, code=code, details=details, headers=headers or None)


def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if any(err.get("type") == "json_invalid" for err in exc.errors()):
        # A body that is not JSON at all is malformed (400); JSON that breaks the schema is invalid (422).
        return error_response(400, "the request body is not valid JSON", code="invalid_body")
    problems = [
        {"loc": [str(part) for part in err.get("loc", ())], "msg": str(err.get("msg", "")), "type": err.get("type")}
        for err in exc.errors()
    ]
    # The message names the parameters at fault, so a person reading only the message knows what to fix.
    summary = "; ".join(f"{'.'.join(p['loc'])}: {p['msg']}" for p in problems[:MESSAGE_PROBLEMS])
    more = f" (and {len(problems) - MESSAGE_PROBLEMS} more)" if len(problems) > MESSAGE_PROBLEMS else ""
    return error_response(422, f"the request is not valid: {summary}{more}", details=problems)


def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else _STATUS_CODES.get(exc.status_code, "error")
    code = "invalid_body" if exc.status_code == 400 else None  # FastAPI's "error parsing the body"
    return error_response(exc.status_code, message, code=code, headers=dict(exc.headers or {}) or None)


def database_unavailable() -> JSONResponse:
    return error_response(503, "the database could not serve the request; retry later", code="database_unavailable",
                          headers={"Retry-After": "5"})


def _database_error(_: Request, exc: Exception) -> JSONResponse:
    log.warning("api request failed: database unavailable", extra={"error": type(exc).__name__})
    return database_unavailable()


def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error in api request", exc_info=exc)
    return error_response(500, "internal error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OpusError, _opus_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # A lost connection or an exhausted pool passes; anything else psycopg raises is a bug and stays a 500.
    for exc_type in DATABASE_UNAVAILABLE:
        app.add_exception_handler(exc_type, _database_error)
    app.add_exception_handler(Exception, _unexpected)
