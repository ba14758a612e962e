"""Schemas shared by every resource: the error shape and reusable field types."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# Upper bounds keep values inside the database's bigint, integer and numeric columns.
MAX_BIGINT = 2**63 - 1
MAX_INT = 2**31 - 1

# Free text a client sends: printable, bounded. PostgreSQL refuses NUL characters in text, so they are refused
# here, as a validation error, not deep in the database.
Text = Annotated[str, StringConstraints(max_length=500, pattern=r"^[^\x00-\x1f\x7f]*$")]
# One filter value or a comma list of them, the way stored enums are spelled (ROUND, VERY_GOOD, VVS1, GIA).
FilterToken = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9 _.,+\-/]+$")]


class ErrorDetail(BaseModel):
    """The error itself."""

    code: str = Field(description="Stable machine-readable code, e.g. `not_found`, `conflict`, `hold_denied`.")
    message: str = Field(description="What went wrong, for people.")
    details: Any = Field(default=None, description="Extra structure, e.g. the list of invalid fields.")


class ErrorResponse(BaseModel):
    """Every error response of the API has this shape."""

    model_config = ConfigDict(title="ErrorResponse")
    error: ErrorDetail = Field(description="The error.")


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for error statuses, all with the one error shape."""
    return {status: {"model": ErrorResponse, "description": _DESCRIPTIONS[status]} for status in statuses}


_DESCRIPTIONS = {
    400: "Malformed request (e.g. an invalid cursor or a missing Idempotency-Key).",
    401: "Missing or invalid credentials.",
    403: "The credential's scope does not allow this route.",
    404: "Not found.",
    409: "Conflicts with the current state (held, sold, duplicate priority, run already active...).",
    413: "Request body too large.",
    422: "The request does not validate.",
    429: "Too many requests for this credential; see Retry-After.",
    500: "Unexpected server error.",
    502: "The inventory feed refused the request.",
    503: "A dependency (feed, pipeline, database) is unavailable; retry later.",
}
