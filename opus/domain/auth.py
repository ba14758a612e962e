"""Credentials of the REST API: API-key format and digests, scopes, and HMAC request signatures.

Pure: the caller supplies the random parts of a new key and the current time, so everything here is
deterministic and testable with plain values.

API key: `opus_<prefix>_<secret>`. The prefix (8 lowercase letters and digits) is stored in clear and finds the
row; only the SHA-256 hex digest of the whole key is stored, so a database leak reveals no usable key.

HMAC: `X-Signature` is the lowercase hex HMAC-SHA256, keyed by the client's secret, of
`METHOD \n PATH_WITH_QUERY \n TIMESTAMP \n NONCE \n HEX_SHA256(BODY)`, where PATH_WITH_QUERY is the path exactly
as sent plus `?` and the raw query string when there is one, and NONCE is the request's `X-Nonce`: a value the
client never uses twice. Signing the raw query means a changed filter is a changed signature; the nonce is what
the replay check remembers, so two identical requests in one second are two requests, not a replay.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

KEY_NAMESPACE: Final = "opus"
PREFIX_LENGTH: Final = 8
MIN_SECRET_LENGTH: Final = 32
PREFIX_ALPHABET: Final = "abcdefghijklmnopqrstuvwxyz0123456789"
HMAC_WINDOW_S: Final = 300
NONCE_MIN_LENGTH: Final = 16
NONCE_MAX_LENGTH: Final = 128
_NONCE = re.compile(rf"^[A-Za-z0-9_\-]{{{NONCE_MIN_LENGTH},{NONCE_MAX_LENGTH}}}$")
# Exactly what `hexdigest()` gives: the documentation says lowercase, so only lowercase is accepted.
_SIGNATURE = re.compile(r"^[0-9a-f]{64}$")
_PREFIX = re.compile(rf"^[a-z0-9]{{{PREFIX_LENGTH}}}$")
_SECRET = re.compile(rf"^[A-Za-z0-9_\-]{{{MIN_SECRET_LENGTH},256}}$")


class Scope(StrEnum):
    """What a credential may do. Each scope includes the ones before it."""

    READ = "read"  # search, stones, analytics, pricing rules: everything that only reads
    TRADE = "trade"  # read + holds, purchases, availability changes
    ADMIN = "admin"  # trade + pipeline triggers and pricing-rule changes

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: Scope) -> bool:
        return self.rank >= needed.rank


_RANKS: Final = {Scope.READ: 1, Scope.TRADE: 2, Scope.ADMIN: 3}


@dataclass(frozen=True, slots=True)
class ParsedKey:
    prefix: str
    secret: str


def format_key(prefix: str, secret: str) -> str:
    """The plaintext key for a prefix and secret; raises ValueError when either has the wrong form."""
    if not _PREFIX.match(prefix):
        raise ValueError(f"prefix must be {PREFIX_LENGTH} characters of [a-z0-9]")
    if not _SECRET.match(secret):
        raise ValueError(f"secret must be at least {MIN_SECRET_LENGTH} URL-safe characters")
    return f"{KEY_NAMESPACE}_{prefix}_{secret}"


def parse_key(key: str) -> ParsedKey | None:
    """Split a presented key into prefix and secret; None when it cannot be one of ours."""
    namespace, _, rest = key.partition("_")
    prefix, _, secret = rest.partition("_")  # the secret itself may contain "_"
    if namespace != KEY_NAMESPACE or not _PREFIX.match(prefix) or not _SECRET.match(secret):
        return None
    return ParsedKey(prefix, secret)


def key_digest(key: str) -> str:
    """What is stored for a key: the SHA-256 hex digest of the whole plaintext."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_matches(key: str, stored_digest: str) -> bool:
    """Constant-time comparison of a presented key with a stored digest."""
    return hmac.compare_digest(key_digest(key), stored_digest)


def canonical_request(method: str, path_with_query: str, timestamp: str, nonce: str, body: bytes) -> str:
    return "\n".join((method.upper(), path_with_query, timestamp, nonce, hashlib.sha256(body).hexdigest()))


def sign_request(
    secret: str, method: str, path_with_query: str, timestamp: str | int, body: bytes = b"", *, nonce: str
) -> str:
    """The `X-Signature` value for a request (clients and tests use this too)."""
    message = canonical_request(method, path_with_query, str(timestamp), nonce, body)
    return hmac.new(secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()


def signature_matches(
    secret: str, method: str, path_with_query: str, timestamp: str, body: bytes, signature: str, *, nonce: str
) -> bool:
    """Constant-time check of a presented signature: 64 lowercase hex digits, nothing else."""
    if not _SIGNATURE.match(signature):
        return False
    expected = sign_request(secret, method, path_with_query, timestamp, body, nonce=nonce)
    return hmac.compare_digest(expected, signature)


def nonce_valid(nonce: str) -> bool:
    """A nonce is 16 to 128 URL-safe characters (a UUID4 in hex, or 16+ random bytes in base64url)."""
    return bool(_NONCE.match(nonce))


def parse_timestamp(value: str) -> int | None:
    """Unix seconds as sent in `X-Timestamp`; None for anything that is not a plain integer."""
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        return None
    return int(text)


def timestamp_fresh(timestamp: int, now_unix: float, window_s: int = HMAC_WINDOW_S) -> bool:
    """Whether a signed timestamp is within `window_s` of now, in either direction (clocks drift both ways)."""
    return abs(now_unix - timestamp) <= window_s


def find_secret(secrets: dict[str, str], client_id: str) -> str | None:
    """The secret of a configured client, looked up without a timing hint of which ids exist."""
    found: str | None = None
    for known, secret in secrets.items():
        if hmac.compare_digest(known.encode("utf-8"), client_id.encode("utf-8")):
            found = secret
    return found
