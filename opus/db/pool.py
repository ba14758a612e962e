"""One connection pool per process, created once and reused (psycopg 3 + psycopg_pool)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

logger = logging.getLogger(__name__)

Connection = psycopg.Connection[dict[str, Any]]
AsyncConnection = psycopg.AsyncConnection[dict[str, Any]]


class Database:
    """A pool of autocommit-off connections returning rows as dicts.

    `transaction()` is the unit of work: it commits when the block ends and rolls back on an exception.
    """

    def __init__(
        self, url: str, *, max_size: int = 4, timeout_s: float = 10.0, idle_timeout_s: float = 60.0
    ) -> None:
        self.url = url
        self._sizes: dict[str, Any] = {
            "min_size": 1, "max_size": max(max_size, 1), "timeout": timeout_s, "max_idle": idle_timeout_s}
        self._connect: dict[str, Any] = {"row_factory": dict_row, "connect_timeout": max(int(timeout_s), 1)}
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            url, **self._sizes, kwargs=self._connect, open=False, name="opus")
        self._pool.open(wait=True, timeout=timeout_s)

    def async_reads(self) -> AsyncReads:
        """A pool of the same size on the same database, for reads from an event loop (not yet open)."""
        return AsyncReads(AsyncConnectionPool(
            self.url, **self._sizes, kwargs={**self._connect, "autocommit": True}, open=False, name="opus-async",
        ))

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        with self._pool.connection() as conn:
            yield conn

    @contextmanager
    def autocommit(self) -> Iterator[Connection]:
        """A connection outside any transaction, for reads: each statement is its own, so a read costs no
        COMMIT round trip when the block ends."""
        with self._pool.connection() as conn:
            conn.autocommit = True
            try:
                yield conn
            finally:
                # A broken connection is not idle: the pool discards it, and the setter would raise over the
                # error that broke it.
                if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                    conn.autocommit = False

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self._pool.connection() as conn, conn.transaction():
            yield conn

    def checkouts(self) -> int:
        """Connections handed out since the pool opened. Every statement takes one, so work that took none ran
        no statement: a figure that, unlike PostgreSQL's statistics, is exact the moment it is read."""
        return int(self._pool.get_stats().get("requests_num", 0))

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncReads:
    """Autocommit connections for an event loop: a read served without a thread (`Database` is for threads).

    An asyncio pool belongs to the loop that opened it, so it is opened and closed by whoever runs that loop
    (the API's lifespan); everything else uses `Database`.
    """

    def __init__(self, pool: AsyncConnectionPool[AsyncConnection]) -> None:
        self._pool = pool

    async def open(self) -> None:
        """Start connecting (in the background: a request waits for a connection up to the pool's timeout)."""
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        async with self._pool.connection() as conn:
            yield conn
