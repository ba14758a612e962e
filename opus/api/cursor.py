"""Opaque keyset cursors: the last row's sort key and id, bound to the sort they came from, and signed.

`base64url(json [sort, order, key, id]) "." base64url(mac)`. The MAC (HMAC-SHA256, truncated) means a cursor
the client edited or made up is refused with 400 instead of silently starting somewhere else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass

from opus.api.errors import ApiError

_MAC_BYTES = 16


@dataclass(frozen=True, slots=True)
class Cursor:
    sort: str
    order: str
    key: str  # the sort key as text: Decimal, int or ISO timestamp, parsed by the search for its column
    id: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, payload, hashlib.sha256).digest()[:_MAC_BYTES]


def encode_cursor(secret: bytes, cursor: Cursor) -> str:
    payload = json.dumps([cursor.sort, cursor.order, cursor.key, cursor.id], separators=(",", ":")).encode()
    return f"{_b64(payload)}.{_b64(_mac(secret, payload))}"


def decode_cursor(secret: bytes, text: str, *, sort: str, order: str) -> Cursor:
    """The cursor in `text`; ApiError 400 when it is malformed, forged, or from another sort order."""
    bad = ApiError(400, "the `next` cursor is not valid; start again without it", code="invalid_cursor")
    if len(text) > 512 or not text.isascii():
        raise bad
    body, dot, mac = text.partition(".")
    try:
        payload, presented = _unb64(body), _unb64(mac)
    except (binascii.Error, ValueError):
        raise bad from None
    if not dot or not hmac.compare_digest(_mac(secret, payload), presented):
        raise bad
    try:
        value = json.loads(payload)
    except ValueError:
        raise bad from None
    if (
        not isinstance(value, list) or len(value) != 4
        or not all(isinstance(v, str) for v in value[:3]) or type(value[3]) is not int
    ):
        raise bad
    if value[0] != sort or value[1] != order:
        raise ApiError(
            400, "this cursor belongs to another sort order; keep `sort` and `order` while paging",
            code="invalid_cursor",
        )
    return Cursor(value[0], value[1], value[2], value[3])
