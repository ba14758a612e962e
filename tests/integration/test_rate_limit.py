"""The one Nivoda rate limit in PostgreSQL: its arithmetic on a stepped database clock, and, against the sandbox,
many threads of two clients (as two processes would be) held to the limit together and paused together by a 429."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from opus.db.pool import Database
from opus.db.queries import Queries
from opus.domain.models import FeedQuery
from opus.feeds import NivodaClient
from opus.feeds.postgres_ratelimit import PostgresRateLimiter
from opus.sandbox.config import Behaviour, Latency, SandboxConfig
from opus.sandbox.runner import RunningSandbox, run_sandbox
from opus.testing.traffic import assert_rate_held

RATELIMIT = Queries("ratelimit")
LIMIT = 20.0


class SteppedClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def step(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def test_reservations_are_spaced_and_an_idle_bucket_allows_only_its_burst(db: Database) -> None:
    clock = SteppedClock()
    limiter = PostgresRateLimiter(db, 4, burst=2, clock=clock)  # the emptied database: the row is recreated
    # A new bucket is an idle one: its burst back to back, then a slot every quarter second.
    assert [round(limiter.reserve(), 6) for _ in range(4)] == [0.0, 0.0, 0.25, 0.5]
    clock.step(10)
    assert [round(limiter.reserve(), 6) for _ in range(3)] == [0.0, 0.0, 0.25]
    other_process = PostgresRateLimiter(db, 4, burst=2, clock=clock)
    assert other_process.reserve() == pytest.approx(0.5), "a second limiter on the same row queues behind"


def test_a_pause_holds_every_sharer_until_it_ends(db: Database) -> None:
    clock = SteppedClock()
    first, second = PostgresRateLimiter(db, 10, clock=clock), PostgresRateLimiter(db, 10, clock=clock)
    assert first.reserve() == 0.0
    second.pause(3.0)
    first.pause(1.0)  # a shorter pause does not shorten the longer one
    assert first.reserve() == pytest.approx(3.0)
    assert second.reserve() == pytest.approx(3.1)
    clock.step(10)
    assert first.reserve() == 0.0
    with db.connection() as conn:
        row = conn.execute(RATELIMIT.get_bucket, {"name": "nivoda"}).fetchone()
    assert row is not None
    assert (row["reservations"], row["pauses"]) == (4, 2)


def test_the_real_clock_spaces_threads_of_one_limiter(db: Database) -> None:
    limiter = PostgresRateLimiter(db, 50)
    started = time.monotonic()
    threads = [threading.Thread(target=lambda: [limiter.acquire() for _ in range(5)]) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - started >= 39 / 50 * 0.95  # 40 slots, 20 ms apart: the first is free


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    # Requests take 200 ms, so 12 threads could send 60/s: the limit, not the latency, decides the rate.
    config = SandboxConfig(behaviour=Behaviour(latency=Latency(median_ms=200, sigma=0, cap_ms=1000)))
    with run_sandbox(diamonds=200, seed=41, config=config) as sb:
        yield sb


class Sends:
    """When each request left and each 429 came back, seen by the HTTP client (Nivoda's boundary)."""

    def __init__(self) -> None:
        self.sent: list[float] = []
        self.throttled: list[float] = []
        self._lock = threading.Lock()

    def client(self) -> httpx.Client:
        def on_request(request: httpx.Request) -> None:
            with self._lock:
                self.sent.append(time.monotonic())

        def on_response(response: httpx.Response) -> None:
            if response.status_code == 429:
                with self._lock:
                    self.throttled.append(time.monotonic())

        return httpx.Client(timeout=10, event_hooks={"request": [on_request], "response": [on_response]})


def hammer(clients: list[NivodaClient], threads_each: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    errors: list[BaseException] = []

    def loop(client: NivodaClient) -> None:
        try:
            while time.monotonic() < deadline:
                client.count(FeedQuery())
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=loop, args=(c,)) for c in clients for _ in range(threads_each)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors, errors[0]


def stats(sandbox: RunningSandbox) -> dict[str, object]:
    requests: dict[str, object] = httpx.get(f"{sandbox.base_url}/admin/stats", timeout=5).json()["requests"]
    return requests


def limited_clients(db: Database, sandbox: RunningSandbox, sends: Sends) -> list[NivodaClient]:
    return [NivodaClient(sandbox.endpoint, sandbox.username, sandbox.password, http=sends.client(),
                         limiter=PostgresRateLimiter(db, LIMIT)) for _ in range(2)]


def test_two_clients_with_many_threads_never_exceed_the_limit_together(db: Database, sandbox: RunningSandbox) -> None:
    httpx.post(f"{sandbox.base_url}/admin/reset", timeout=5)
    sends = Sends()
    clients = limited_clients(db, sandbox, sends)
    hammer(clients, threads_each=6, seconds=3.0)
    served = stats(sandbox)
    assert_rate_held(served, LIMIT)
    assert len(sends.sent) >= 2.5 * LIMIT * 0.8, "the clients were busy enough for the limit to matter"


def test_a_429_pauses_every_worker_of_every_client(db: Database, sandbox: RunningSandbox) -> None:
    httpx.post(f"{sandbox.base_url}/admin/reset", timeout=5)
    sends = Sends()
    clients = limited_clients(db, sandbox, sends)
    clients[0].count(FeedQuery())  # both log in before the fault is armed
    clients[1].count(FeedQuery())
    httpx.post(f"{sandbox.base_url}/admin/faults", json={"fail_next": [429], "retry_after_s": 2}, timeout=5)
    hammer(clients, threads_each=4, seconds=4.0)
    assert len(sends.throttled) == 1
    after = [t for t in sends.sent if t > sends.throttled[0]]
    # Requests already reserved before the 429 went out (at most one slot per thread, 50 ms apart); then
    # nothing, from either client, until the pause ended.
    late = [t for t in after if t < sends.throttled[0] + 0.5]
    assert len(late) <= 8
    resumed = [t for t in after if t >= sends.throttled[0] + 0.5]
    assert resumed, "the clients resumed after the pause"
    assert resumed[0] - sends.throttled[0] >= 2.0 * 0.95
