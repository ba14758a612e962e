"""Liveness and a database round trip; no credentials, so load balancers and probes can call it."""

from __future__ import annotations

import logging
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from opus.api.context import ApiContext, get_context
from opus.api.errors import ApiError
from opus.api.schemas.common import error_responses

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


class Health(BaseModel):
    """The service is up and its database answers."""

    status: Literal["ok"] = Field(description="Always `ok` with status 200.")
    database: Literal["ok"] = Field(description="The database answered a query.")


@router.get("/health", response_model=Health, responses=error_responses(503), summary="Health check",
            description="200 when the process is up and PostgreSQL answers; 503 (error shape) otherwise.")
def health(ctx: Annotated[ApiContext, Depends(get_context)]) -> Health:
    try:
        with ctx.db.connection() as conn:
            conn.execute("SELECT 1").fetchone()
    except Exception as exc:
        log.warning("health check: database unavailable", extra={"error": type(exc).__name__})
        raise ApiError(503, "the database is unavailable", details={"database": "unavailable"}) from None
    return Health(status="ok", database="ok")
