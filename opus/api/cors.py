"""Cross-origin access for the dashboard when it is served from another origin (an Azure Static Web App).

The CORS layer is installed outermost, in front of authentication: a browser's preflight (OPTIONS, no
credentials) is answered here and never reaches the auth middleware, while every real request still passes
through authentication, and its answer, a 401 included, carries the CORS headers the browser needs to read it.
Credentials travel in headers, never cookies, so `allow_credentials` stays off.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from opus.api.security import API_KEY_HEADER, CLIENT_HEADER, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER

ALLOWED_METHODS = ("GET", "POST", "PUT", "DELETE")
ALLOWED_HEADERS = (
    API_KEY_HEADER, CLIENT_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER, "Idempotency-Key", "Content-Type",
)
EXPOSED_HEADERS = ("Retry-After", "WWW-Authenticate", "RateLimit", "RateLimit-Policy")
PREFLIGHT_MAX_AGE_S = 600


def install_cors(app: FastAPI, origins: Sequence[str]) -> None:
    """Answer cross-origin requests from `origins` (exact origins); with none, add nothing."""
    if not origins:
        return
    # Added last, so it wraps every middleware added before it.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(origins),
        allow_methods=list(ALLOWED_METHODS),
        allow_headers=list(ALLOWED_HEADERS),
        expose_headers=list(EXPOSED_HEADERS),
        allow_credentials=False,
        max_age=PREFLIGHT_MAX_AGE_S,
    )
