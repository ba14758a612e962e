"""The WatermarkStore contract, for the fake, PostgreSQL and Blob Storage (on Azurite)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from azure.storage.blob import BlobServiceClient

from opus.adapters.blob_watermark import BlobWatermarkStore
from opus.adapters.postgres_state import PostgresWatermarkStore
from opus.ports import WatermarkStore
from opus.testing.fakes import InMemoryWatermarkStore, SteppableClock

T0 = datetime(2025, 3, 1, 2, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(params=["in-memory", "postgres", "blob"])
def store(request: pytest.FixtureRequest) -> Iterator[WatermarkStore]:
    if request.param == "in-memory":
        yield InMemoryWatermarkStore()
    elif request.param == "postgres":
        yield PostgresWatermarkStore(request.getfixturevalue("db"))
    else:
        service = BlobServiceClient.from_connection_string(request.getfixturevalue("azurite_blob"))
        blob = BlobWatermarkStore(service, clock=SteppableClock(), container=f"wm-{uuid.uuid4().hex[:12]}")
        yield blob
        blob.close()


def test_a_feed_without_a_watermark_has_none(store: WatermarkStore) -> None:
    assert store.get("nivoda") is None


def test_advance_then_get_returns_the_same_instant(store: WatermarkStore) -> None:
    store.advance("nivoda", T0)
    got = store.get("nivoda")
    assert got == T0
    assert got is not None
    assert got.utcoffset() is not None


def test_the_instant_counts_not_its_timezone(store: WatermarkStore) -> None:
    store.advance("nivoda", T0.astimezone(timezone(timedelta(hours=-5))))
    assert store.get("nivoda") == T0
    store.advance("nivoda", (T0 - timedelta(minutes=1)).astimezone(timezone(timedelta(hours=9))))
    assert store.get("nivoda") == T0, "a minute earlier, written in another zone, is still earlier"


def test_advance_moves_forward(store: WatermarkStore) -> None:
    store.advance("nivoda", T0)
    store.advance("nivoda", T0 + timedelta(hours=24))
    store.advance("nivoda", T0 + timedelta(hours=48, microseconds=1))
    assert store.get("nivoda") == T0 + timedelta(hours=48, microseconds=1)


def test_advance_never_moves_backwards(store: WatermarkStore) -> None:
    store.advance("nivoda", T0 + timedelta(days=1))
    store.advance("nivoda", T0)
    store.advance("nivoda", T0 + timedelta(days=1) - timedelta(microseconds=1))
    assert store.get("nivoda") == T0 + timedelta(days=1)


def test_advancing_to_the_same_value_is_harmless(store: WatermarkStore) -> None:
    store.advance("nivoda", T0)
    store.advance("nivoda", T0)
    assert store.get("nivoda") == T0


def test_each_feed_has_its_own_watermark(store: WatermarkStore) -> None:
    store.advance("nivoda", T0)
    store.advance("nivoda-eu", T0 - timedelta(days=3))
    assert store.get("nivoda") == T0
    assert store.get("nivoda-eu") == T0 - timedelta(days=3)
    assert store.get("nivoda-us") is None
