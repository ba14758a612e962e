"""What every request handler may use, created once per app by `create_app` (no module globals)."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

import anyio.to_thread
from fastapi import Request

from opus.api.errors import ApiError
from opus.config import Settings
from opus.db.pool import AsyncReads, Database
from opus.db.queries import Queries
from opus.ports import Feed, PipelineControl

Q = Queries("api_auth")
CURSOR_KEY_NAME = "search_cursor"


@dataclass(frozen=True, slots=True)
class ReplayWait:
    """How long a repeated purchase waits for the first request with its Idempotency-Key to finish.

    A few seconds covers a normal feed order, so a client's quick retry gets the real answer; polling (rather
    than waiting on the stone's lock) keeps no transaction open meanwhile. `retry_after_s` is what a repeat
    that outwaited it is told.
    """

    timeout_s: float = 5.0
    poll_s: float = 0.1
    retry_after_s: int = 2


class EstimateCache:
    """Planner estimates per filter set, kept `ttl_s`: an estimate is approximate anyway, and the statistics it
    comes from change only when the table is analysed. Bounded: full means cleared, not grown."""

    def __init__(self, ttl_s: float = 10.0, max_entries: int = 1_000) -> None:
        self._ttl_s = ttl_s
        self._max = max_entries
        self._entries: dict[str, tuple[int, float]] = {}

    def get(self, key: str, now: float) -> int | None:
        found = self._entries.get(key)
        return found[0] if found is not None and found[1] > now else None

    def put(self, key: str, estimate: int, now: float) -> None:
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[key] = (estimate, now + self._ttl_s)


@dataclass
class ApiContext:
    db: Database
    settings: Settings
    feed: Feed | None
    control: PipelineControl | None
    clock: Callable[[], datetime]
    replay_wait: ReplayWait = field(default_factory=ReplayWait)
    estimates: EstimateCache = field(default_factory=EstimateCache)
    # Open while a server runs the app's lifespan (`opus serve`): reads from the event loop, without a thread.
    reads: AsyncReads | None = None
    _cursor_key: bytes | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def now(self) -> datetime:
        return self.clock()

    def require_feed(self) -> Feed:
        if self.feed is None:
            raise ApiError(503, "no inventory feed is configured for this API", code="feed_unavailable")
        return self.feed

    def require_control(self) -> PipelineControl:
        if self.control is None:
            raise ApiError(503, "pipeline control is not available in this deployment", code="control_unavailable")
        return self.control

    def cursor_key(self) -> bytes:
        """The key that signs search cursors, shared through the database by every instance."""
        if self._cursor_key is None:
            with self._lock:
                if self._cursor_key is None:
                    self._cursor_key = self._load_cursor_key()
        return self._cursor_key

    async def ensure_cursor_key(self) -> None:
        """`cursor_key()` answers without I/O from now on: loaded in a thread, not on the event loop."""
        if self._cursor_key is None:
            await anyio.to_thread.run_sync(self.cursor_key)

    def _load_cursor_key(self) -> bytes:
        with self.db.transaction() as conn:
            conn.execute(Q.ensure_secret, {"name": CURSOR_KEY_NAME, "value": secrets.token_hex(32)})
            row = conn.execute(Q.get_secret, {"name": CURSOR_KEY_NAME}).fetchone()
        assert row is not None
        return bytes.fromhex(str(row["value"]))


async def get_context(request: Request) -> ApiContext:
    # async: FastAPI runs a plain function dependency in its thread pool, one more hop for every request.
    return cast(ApiContext, request.app.state.opus)
