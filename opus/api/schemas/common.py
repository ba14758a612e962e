"""Schemas shared by every resource: the error shape and reusable field types."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)

# Upper bounds keep values inside the database's bigint, integer and numeric columns.
MAX_BIGINT = 2**63 - 1
MAX_INT = 2**31 - 1


class RequestBody(BaseModel):
    """What a client sends in a request body: no unknown fields, and every scalar taken as the JSON type it is.

    Pydantic's lax mode would read `0` and `"yes"` as booleans, `"5"` and `true` as integers: a client's mistake
    would pass unnoticed, and a value would have many spellings. Strict, each is a 422 naming the field. The
    types JSON can only carry as text (decimals, UUIDs, enums) are marked `AsText`, each where it is declared.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _integral_numbers_are_integers(cls, value: Any) -> Any:
        # JSON has one number type, and JSON Schema's `integer` is any number without a fraction: 3.0 is the
        # integer 3 to the document, so it is to the API too (3.5, "3" and true are still refused).
        return int(value) if isinstance(value, float) and value.is_integer() else value


# Read from its text in a strict body: FastAPI validates the parsed JSON, where a decimal, a UUID or an enum is
# still a string (or a number), never the Python type strict mode would insist on.
AsText = Strict(False)


def _digits_only(value: Any) -> Any:
    # Lax parsing would read "1.0", " 1" and "1_000" as integers: one resource would have many spellings, and a
    # client's mistake would pass unnoticed. A path or query integer is written in ASCII digits, nothing else.
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("must be a whole number written in digits only")
    return value


# For integer path and query parameters (which arrive as text); the OpenAPI type stays `integer`.
Digits = BeforeValidator(_digits_only)


def _at_scale(scale: int) -> AfterValidator:
    """Rewrite an accepted decimal with exactly `scale` places.

    The digit and place limits are checked on the value without its spare zeros, so `1.000...0` (thousands of
    zeros) or `0E-16384` pass them, yet PostgreSQL refuses such a numeric outright. Quantizing is exact here,
    because the value already has at most `scale` significant places.
    """
    step = Decimal(1).scaleb(-scale)
    return AfterValidator(lambda value: value.quantize(step))


def _decimal_schema(whole: int, places: int, description: str, *, positive: bool = False) -> WithJsonSchema:
    """What the document says a bounded decimal is: a decimal string (exact) or a whole number. The check also
    accepts spare zeros and exponents that reduce to such a value, so the document errs on the narrow side."""
    nonzero = "(?=.*[1-9])" if positive else ""
    return WithJsonSchema({
        "anyOf": [
            {"type": "string", "pattern": rf"^{nonzero}[0-9]{{1,{whole}}}(\.[0-9]{{1,{places}}})?$"},
            {"type": "integer", "minimum": 1 if positive else 0, "maximum": 10**whole - 1},
        ],
        "description": description,
    })


# Decimals bounded by the numeric(precision, scale) columns they are compared with or stored in (0001_core.sql):
# carats numeric(8, 3), money numeric(12, 2), markups numeric(8, 4). A value with more digits or places is
# refused, never rounded; NaN and infinities are refused by Decimal itself.
Carats = Annotated[Decimal, AsText, Field(ge=0, max_digits=8, decimal_places=3), _at_scale(3),
                   _decimal_schema(5, 3, "Carats: up to 5 digits and 3 places, e.g. \"1.25\".")]
Money = Annotated[Decimal, AsText, Field(ge=0, max_digits=12, decimal_places=2), _at_scale(2),
                  _decimal_schema(10, 2, "US dollars: up to 10 digits and 2 places, e.g. \"1234.50\".")]
# Exclusive upper bounds of pricing rules: the table checks them `> 0` (a rule below 0 carats matches nothing).
PositiveCarats = Annotated[Decimal, AsText, Field(gt=0, max_digits=8, decimal_places=3), _at_scale(3),
                           _decimal_schema(5, 3, "Carats above zero: up to 5 digits and 3 places, e.g. \"1.25\".",
                                           positive=True)]
PositiveMoney = Annotated[Decimal, AsText, Field(gt=0, max_digits=12, decimal_places=2), _at_scale(2),
                          _decimal_schema(10, 2, "US dollars above zero: up to 10 digits and 2 places.", positive=True)]
Markup = Annotated[Decimal, AsText, Field(gt=0, max_digits=8, decimal_places=4), _at_scale(4),
                   _decimal_schema(4, 4, "A positive ratio: up to 4 digits and 4 places, e.g. \"1.25\".",
                                   positive=True)]

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
    400: "Malformed request: a body that is not JSON (`invalid_body`), an invalid cursor, a bad Content-Length.",
    401: "Missing or invalid credentials.",
    403: "The credential's scope does not allow this route.",
    404: "Not found.",
    409: "Conflicts with the current state (held, sold, duplicate priority, run already active...).",
    405: "The path exists but not with this method; the `Allow` header lists the methods it has.",
    408: "The request body did not arrive in time (API_REQUEST_TIMEOUT_S); the connection is closed.",
    413: "Request body larger than API_MAX_BODY_BYTES; the connection is closed.",
    422: "The request does not validate.",
    429: "Too many requests for this credential (or failed authentications from this address); see Retry-After.",
    500: "Unexpected server error.",
    502: "The inventory feed refused the request.",
    503: "A dependency (feed, pipeline, database) is unavailable; retry later.",
}
