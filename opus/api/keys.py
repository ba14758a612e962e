"""API-key administration for the command line: create (the plaintext is shown once), list, revoke."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from opus.db.pool import Database
from opus.db.queries import Queries
from opus.domain.auth import PREFIX_ALPHABET, PREFIX_LENGTH, Scope, format_key, key_digest

Q = Queries("api_auth")
SECRET_BYTES = 32  # token_urlsafe(32) gives 43 characters: 256 bits


def _new_key() -> tuple[str, str]:
    prefix = "".join(secrets.choice(PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    key = format_key(prefix, secrets.token_urlsafe(SECRET_BYTES))
    return prefix, key


def create_key(db: Database, name: str, scope: str) -> str:
    """Store a new key and return its plaintext, which is never stored and cannot be shown again."""
    if scope not in Scope.__members__.values():
        raise ValueError(f"scope must be one of {', '.join(Scope)}, not {scope!r}")
    checked = Scope(scope)
    if not name.strip():
        raise ValueError("a key needs a name (who or what uses it)")
    with db.transaction() as conn:
        while True:
            prefix, key = _new_key()
            # A prefix collision (1 in 36^8 per pair) is retried rather than surfaced as an error.
            if conn.execute(Q.key_by_prefix, {"prefix": prefix}).fetchone() is None:
                break
        conn.execute(
            Q.insert_key, {"name": name.strip(), "prefix": prefix, "digest": key_digest(key), "scope": checked.value}
        )
    return key


def list_keys(db: Database) -> list[dict[str, Any]]:
    """Every key with its prefix, scope and dates; never the digest."""
    with db.connection() as conn:
        return list(conn.execute(Q.list_keys).fetchall())


def revoke_key(db: Database, prefix_or_id: str | int, *, now: datetime | None = None) -> bool:
    """Revoke by prefix (or by numeric id when no prefix matches); False when nothing was live to revoke."""
    when = now or datetime.now(UTC)
    text = str(prefix_or_id).strip()
    with db.transaction() as conn:
        if conn.execute(Q.revoke_by_prefix, {"prefix": text, "now": when}).fetchone() is not None:
            return True
        if text.isdigit() and int(text) < 2**63:
            return conn.execute(Q.revoke_by_id, {"id": int(text), "now": when}).fetchone() is not None
    return False
