"""The Nivoda client against the local Nivoda sandbox, over real HTTP on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import httpx
import pytest

from opus.domain.models import FeedQuery
from opus.errors import FeedAuthError, FeedPermanentError
from opus.feeds import NivodaClient
from opus.sandbox.runner import RunningSandbox, run_sandbox

DIAMONDS = 2000
FAST = 10_000.0  # requests per second: high enough never to slow the suite
PAGE_CAP = 1000  # safety cap on pages per range (pitfall 2: stop on an empty page, never on a short one)


class Recorder:
    """An httpx request hook that keeps each GraphQL request body, to see what the client sent."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> None:
        with self._lock:
            self.bodies.append(json.loads(request.content))

    def operations(self) -> list[dict[str, Any]]:
        return [b for b in self.bodies if "authenticate" not in b["query"]]

    def auths(self) -> int:
        return len(self.bodies) - len(self.operations())


def recording_client(sb: RunningSandbox, **kwargs: Any) -> tuple[NivodaClient, Recorder, httpx.Client]:
    recorder = Recorder()
    http = httpx.Client(event_hooks={"request": [recorder]})
    client = NivodaClient(sb.endpoint, sb.username, sb.password, rate_limit_per_s=FAST, http=http, **kwargs)
    return client, recorder, http


def set_faults(sb: RunningSandbox, **faults: Any) -> None:
    httpx.post(f"{sb.base_url}/admin/faults", json=faults, timeout=5).raise_for_status()


@pytest.fixture(scope="module")
def sb() -> Iterator[RunningSandbox]:
    """The sandbox this module shares (named apart from conftest's function-scoped `sandbox`)."""
    with run_sandbox(diamonds=DIAMONDS, seed=7, port=0) as running:
        yield running


@pytest.fixture(scope="module")
def feed(sb: RunningSandbox) -> Iterator[NivodaClient]:
    with NivodaClient(sb.endpoint, sb.username, sb.password, rate_limit_per_s=FAST) as c:
        yield c


@pytest.fixture(autouse=True)
def _no_faults(sb: RunningSandbox) -> Iterator[None]:
    yield
    set_faults(sb)  # an empty configuration clears every fault


@pytest.fixture
def short_lived() -> Iterator[RunningSandbox]:
    with run_sandbox(diamonds=20, seed=3, token_ttl_s=2, port=0) as sb:
        yield sb


def scan(feed: NivodaClient, query: FeedQuery) -> list[str]:
    """Every supplier stone id of a range, paged 50 at a time until an empty page."""
    ids: list[str] = []
    offset = 0
    for _ in range(PAGE_CAP):
        items = feed.page(query, offset, 50)
        if not items:
            return ids
        ids.extend(item["diamond"]["id"] for item in items)
        offset += len(items)
    raise AssertionError(f"{query} did not end within {PAGE_CAP} pages")


def present_ppc(sb: RunningSandbox, fraction: float) -> int:
    """A whole-dollar price per carat that some stone has exactly, so bounds fall on real stones."""
    values = sorted(s.ppc_floor for s in sb.inventory.stones())
    return values[int(fraction * (len(values) - 1))]


# --- authentication -----------------------------------------------------------------------------------
def test_authenticates_and_counts_the_whole_inventory(feed: NivodaClient, sb: RunningSandbox) -> None:
    assert feed.count(FeedQuery()) == len(sb.inventory) == DIAMONDS


def test_wrong_password_is_a_feed_auth_error(sb: RunningSandbox) -> None:
    bad = NivodaClient(sb.endpoint, sb.username, "wrong-password", rate_limit_per_s=FAST)
    with bad, pytest.raises(FeedAuthError, match="sandbox") as caught:
        bad.count(FeedQuery())
    assert "wrong-password" not in str(caught.value)


def test_token_is_refreshed_before_it_expires(short_lived: RunningSandbox) -> None:
    client, recorder, http = recording_client(short_lived)
    with http, client:
        assert client.count(FeedQuery()) == 20
        time.sleep(2.3)  # past the 2 s lifetime
        assert client.count(FeedQuery()) == 20
    assert recorder.auths() == 2
    first, second = recorder.operations()  # refreshed ahead of time: no request was refused
    assert first["variables"]["token"] != second["variables"]["token"]


def test_an_expired_token_is_replaced_once_and_the_operation_retried(short_lived: RunningSandbox) -> None:
    # A frozen clock makes the client believe its token is still fresh, so the server refuses it.
    client, recorder, http = recording_client(short_lived, clock=lambda: 0.0)
    with http, client:
        client.count(FeedQuery())
        time.sleep(2.3)
        assert client.count(FeedQuery()) == 20
    assert recorder.auths() == 2
    assert len(recorder.operations()) == 3  # count, refused count, retried count


# --- reading ------------------------------------------------------------------------------------------
def test_paging_a_range_returns_each_stone_in_it_exactly_once(
    feed: NivodaClient, sb: RunningSandbox
) -> None:
    lo, hi = present_ppc(sb, 0.3), present_ppc(sb, 0.6)
    expected = {s.stone_id for s in sb.inventory.stones() if lo <= s.ppc_floor < hi}
    assert any(s.ppc_floor == hi for s in sb.inventory.stones())  # the excluded bound is really there
    query = FeedQuery(lo, hi)
    assert feed.count(query) == len(expected) > 150
    ids = scan(feed, query)
    assert len(ids) == len(set(ids))
    assert set(ids) == expected


def test_adjacent_partitions_cover_the_axis_once_even_with_short_pages(
    feed: NivodaClient, sb: RunningSandbox
) -> None:
    set_faults(sb, short_page_rate=0.3, seed=11)
    bounds = sorted({present_ppc(sb, f) for f in (0.1, 0.25, 0.5, 0.7, 0.9)})
    edges: list[int | None] = [None, *bounds, None]
    partitions = [FeedQuery(a, b) for a, b in pairwise(edges)]
    with ThreadPoolExecutor(max_workers=len(partitions)) as pool:  # one client shared by many threads
        results = list(pool.map(lambda query: scan(feed, query), partitions))
    ids = [i for part in results for i in part]
    assert len(ids) == len(set(ids)) == DIAMONDS
    assert set(ids) == {s.stone_id for s in sb.inventory.stones()}
    assert sum(feed.count(query) for query in partitions) == DIAMONDS


def test_updated_window_is_sent_as_utc(feed: NivodaClient, sb: RunningSandbox) -> None:
    stones = sb.inventory.stones()
    cut = sorted(s.updated_ms for s in stones)[len(stones) // 2]
    updated_to = datetime.fromtimestamp(cut / 1000, UTC)
    expected = sum(1 for s in stones if s.updated_ms <= cut)
    assert feed.count(FeedQuery(updated_to=updated_to)) == expected
    assert feed.count(FeedQuery(updated_from=updated_to + timedelta(days=3650))) == 0


def test_transient_429_and_500_are_retried(feed: NivodaClient, sb: RunningSandbox) -> None:
    feed.count(FeedQuery())  # a token first, so the faults hit the count itself
    set_faults(sb, fail_next=[429, 500])
    started = time.monotonic()
    assert feed.count(FeedQuery()) == DIAMONDS
    assert time.monotonic() - started >= 1.0  # the 429's Retry-After: 1 was honoured
    assert httpx.get(f"{sb.base_url}/admin/faults", timeout=5).json()["fail_next"] == []


def test_a_limit_over_50_is_refused_before_any_request(sb: RunningSandbox) -> None:
    client, recorder, http = recording_client(sb)
    with http, client, pytest.raises(ValueError, match="limit"):
        client.page(FeedQuery(), 0, 51)
    assert recorder.bodies == []


def test_a_graphql_validation_error_is_permanent(feed: NivodaClient) -> None:
    # GraphQL Int is 32-bit: the server rejects the variable, as Nivoda would.
    with pytest.raises(FeedPermanentError, match="32-bit"):
        feed.page(FeedQuery(), 2**40, 10)


def test_get_by_id(feed: NivodaClient, sb: RunningSandbox) -> None:
    stone = sb.inventory.stones()[17]
    item = feed.get(stone.stone_id)
    assert item is not None
    assert item["id"] == stone.offer_id
    assert item["diamond"]["id"] == stone.stone_id
    assert item["price"] == stone.price_cents
    assert feed.get("00000000-0000-4000-8000-000000000000") is None


# --- trading ------------------------------------------------------------------------------------------
def test_hold_double_hold_cancel_and_order(feed: NivodaClient, sb: RunningSandbox) -> None:
    stone = next(s for s in sb.inventory.stones() if s.availability == "AVAILABLE")
    held = feed.hold(stone.stone_id)
    assert not held.denied
    assert held.hold_id
    assert held.until is not None
    assert held.until - datetime.now(UTC) > timedelta(hours=23)
    item = feed.get(stone.stone_id)
    assert item is not None
    assert item["diamond"]["availability"] == "ON HOLD"

    again = feed.hold(stone.stone_id)
    assert again.denied
    assert again.hold_id is None
    assert again.reason

    feed.cancel_hold(held.hold_id)
    item = feed.get(stone.stone_id)
    assert item is not None
    assert item["diamond"]["availability"] == "AVAILABLE"
    with pytest.raises(FeedPermanentError, match="not found"):
        feed.cancel_hold(held.hold_id)

    order_id = feed.order(stone.offer_id, reference="PO-1", comment="integration test")
    assert sb.inventory.orders[order_id] == [stone.offer_id]
    with pytest.raises(FeedPermanentError, match="sold"):
        feed.order(stone.offer_id)
