"""BlobWatermarkStore against Azurite: the real Blob API, ETags and all."""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError
from azure.storage.blob import BlobServiceClient

from opus.adapters.blob_watermark import BlobWatermarkStore
from opus.config import load_settings
from opus.errors import ConfigError, PermanentError, TransientError
from opus.ports import WatermarkStore
from opus.testing.azurite import ACCOUNT, ACCOUNT_KEY
from opus.testing.fakes import SteppableClock

T0 = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)


@pytest.fixture
def container() -> str:
    """A container of its own per test: tests share one Azurite."""
    return f"wm-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def service(azurite_blob: str) -> Iterator[BlobServiceClient]:
    with BlobServiceClient.from_connection_string(azurite_blob) as client:
        yield client


@pytest.fixture
def clock() -> SteppableClock:
    return SteppableClock(datetime(2025, 3, 1, 3, 0, tzinfo=UTC))


@pytest.fixture
def store(service: BlobServiceClient, container: str, clock: SteppableClock) -> BlobWatermarkStore:
    return BlobWatermarkStore(service, clock=clock, container=container)


def _document(service: BlobServiceClient, container: str, feed: str) -> tuple[dict[str, str], str]:
    download = service.get_blob_client(container, f"{feed}.json").download_blob()
    return json.loads(download.readall()), download.properties.etag


def test_it_is_a_watermark_store(store: BlobWatermarkStore) -> None:
    port: WatermarkStore = store
    assert port.get("nivoda") is None


def test_the_container_is_created_when_missing(
    store: BlobWatermarkStore, service: BlobServiceClient, container: str
) -> None:
    assert not service.get_container_client(container).exists()
    assert store.get("nivoda") is None
    assert service.get_container_client(container).exists()


def test_an_existing_container_is_used(service: BlobServiceClient, container: str, clock: SteppableClock) -> None:
    service.create_container(container)
    store = BlobWatermarkStore(service, clock=clock, container=container)
    store.advance("nivoda", T0)
    assert store.get("nivoda") == T0


def test_advance_creates_the_blob_as_a_json_document(
    store: BlobWatermarkStore, service: BlobServiceClient, container: str, clock: SteppableClock
) -> None:
    store.advance("nivoda", T0.astimezone(timezone(timedelta(hours=2))))
    document, _ = _document(service, container, "nivoda")
    assert document == {"feed": "nivoda", "value": "2025-03-01T02:00:00+00:00", "updated_at": clock.now().isoformat()}
    blob = service.get_blob_client(container, "nivoda.json").get_blob_properties()
    assert blob.content_settings.content_type == "application/json"
    assert store.get("nivoda") == T0


def test_advance_replaces_the_blob_only_when_the_value_moves_forward(
    store: BlobWatermarkStore, service: BlobServiceClient, container: str, clock: SteppableClock
) -> None:
    store.advance("nivoda", T0)
    _, first_etag = _document(service, container, "nivoda")
    clock.advance(60)
    store.advance("nivoda", T0 + timedelta(hours=1))
    document, second_etag = _document(service, container, "nivoda")
    assert second_etag != first_etag
    assert document["value"] == (T0 + timedelta(hours=1)).isoformat()
    assert document["updated_at"] == clock.now().isoformat()
    store.advance("nivoda", T0)
    store.advance("nivoda", T0 + timedelta(hours=1))
    _, third_etag = _document(service, container, "nivoda")
    assert third_etag == second_etag, "backwards or equal: nothing written"
    assert store.get("nivoda") == T0 + timedelta(hours=1)


def test_the_update_is_conditional_on_the_etag_it_read(
    store: BlobWatermarkStore, service: BlobServiceClient, container: str
) -> None:
    """A writer holding a stale ETag is refused: what advance relies on to lose no concurrent update."""
    store.advance("nivoda", T0)
    _, stale = _document(service, container, "nivoda")
    store.advance("nivoda", T0 + timedelta(minutes=5))
    with pytest.raises(ResourceModifiedError):
        service.get_blob_client(container, "nivoda.json").upload_blob(
            b"{}", overwrite=True, etag=stale, match_condition=MatchConditions.IfNotModified
        )


def test_a_later_value_written_by_someone_else_is_kept(
    store: BlobWatermarkStore, service: BlobServiceClient, container: str
) -> None:
    store.advance("nivoda", T0)
    later = {"feed": "nivoda", "value": (T0 + timedelta(days=1)).isoformat(), "updated_at": T0.isoformat()}
    service.get_blob_client(container, "nivoda.json").upload_blob(json.dumps(later), overwrite=True)
    store.advance("nivoda", T0 + timedelta(hours=1))
    assert store.get("nivoda") == T0 + timedelta(days=1)


def test_feeds_are_separate(store: BlobWatermarkStore) -> None:
    store.advance("nivoda", T0)
    store.advance("nivoda-eu", T0 + timedelta(hours=3))
    assert store.get("nivoda") == T0
    assert store.get("nivoda-eu") == T0 + timedelta(hours=3)
    assert store.get("other") is None


def test_concurrent_writers_lose_nothing_and_never_go_backwards(store: BlobWatermarkStore) -> None:
    """8 writers x 25 advances over the same blob, values interleaved so that most races pit a later value
    against an earlier one: a blind overwrite would sooner or later leave an earlier value behind."""
    writers, advances = 8, 25
    values = [T0 + timedelta(seconds=i) for i in range(writers * advances)]
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []
    backwards: list[tuple[datetime, datetime]] = []

    def write(w: int) -> None:
        mine = values[w::writers]
        random.Random(w).shuffle(mine)
        barrier.wait()
        seen: datetime | None = None
        try:
            for value in mine:
                store.advance("nivoda", value)
                now = store.get("nivoda")
                assert now is not None
                if now < value or (seen is not None and now < seen):
                    backwards.append((seen or value, now))
                seen = now
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert backwards == []
    assert store.get("nivoda") == values[-1]


def test_a_blob_that_is_not_a_watermark_is_a_permanent_error(
    store: BlobWatermarkStore, service: BlobServiceClient, container: str
) -> None:
    store.advance("nivoda", T0)
    service.get_blob_client(container, "nivoda.json").upload_blob(b"not json", overwrite=True)
    with pytest.raises(PermanentError, match="not a watermark document"):
        store.get("nivoda")


def test_a_naive_time_is_refused(store: BlobWatermarkStore) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        store.advance("nivoda", datetime(2025, 3, 1))


def test_a_wrong_account_key_is_a_permanent_error(azurite_blob: str, container: str) -> None:
    wrong = azurite_blob.replace(ACCOUNT_KEY, "d3Jvbmcta2V5LW5vdC10aGUtcmVhbC1vbmU=")
    store = BlobWatermarkStore(BlobServiceClient.from_connection_string(wrong), clock=SteppableClock(),
                               container=container)
    with pytest.raises(PermanentError, match="failed to authenticate"):
        store.get("nivoda")


def test_an_unreachable_service_is_a_transient_error(container: str) -> None:
    # Port 9 (discard) on the loopback interface refuses connections at once.
    unreachable = (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
                   f"BlobEndpoint=http://127.0.0.1:9/{ACCOUNT};")
    service = BlobServiceClient.from_connection_string(unreachable, retry_total=0)
    store = BlobWatermarkStore(service, clock=SteppableClock(), container=container)
    with pytest.raises(TransientError, match="ServiceRequestError"):
        store.advance("nivoda", T0)


def test_from_settings_with_a_connection_string(azurite_blob: str) -> None:
    settings = load_settings(AzureWebJobsStorage=azurite_blob, watermark_container="wm-from-settings")
    store = BlobWatermarkStore.from_settings(settings, clock=SteppableClock())
    store.advance("nivoda", T0)
    assert store.get("nivoda") == T0
    store.close()


def test_from_settings_with_development_storage_points_at_the_default_azurite_port() -> None:
    store = BlobWatermarkStore.from_settings(
        load_settings(AzureWebJobsStorage="UseDevelopmentStorage=true"), clock=SteppableClock()
    )
    assert store._service.url.startswith("http://127.0.0.1:10000/devstoreaccount1")


def test_from_settings_with_an_identity_uses_the_account_endpoint() -> None:
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential()
    by_name = BlobWatermarkStore.from_settings(
        load_settings(AzureWebJobsStorage__accountName="opusprod"), clock=SteppableClock(), credential=credential
    )
    assert by_name._service.url == "https://opusprod.blob.core.windows.net/"
    by_uri = BlobWatermarkStore.from_settings(
        load_settings(AzureWebJobsStorage__blobServiceUri="https://opusgov.blob.core.usgovcloudapi.net"),
        clock=SteppableClock(), credential=credential,
    )
    assert by_uri._service.url == "https://opusgov.blob.core.usgovcloudapi.net/"


def test_from_settings_without_storage_names_the_settings() -> None:
    with pytest.raises(ConfigError, match="AzureWebJobsStorage"):
        BlobWatermarkStore.from_settings(load_settings(), clock=SteppableClock())
