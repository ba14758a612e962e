"""The Azure WatermarkStore: one JSON blob per feed in a container of Blob Storage.

The blob is `{"feed", "value", "updated_at"}` (ISO-8601, UTC). Several consolidators may publish at once, so
`advance` is an optimistic read-modify-write: it writes only if the blob is still the one it read (ETag,
`IfNotModified`), creates a missing blob only if nobody else has (`overwrite=False`), and on losing either race
reads again. It writes nothing when the stored value is already as late: the watermark never moves backwards.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobClient, BlobServiceClient, ContentSettings

from opus.errors import ConfigError, PermanentError, TransientError
from opus.ports import Clock

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from opus.config import Settings

logger = logging.getLogger(__name__)

DEFAULT_CONTAINER = "watermarks"
# Each lost race means another writer succeeded, so a writer only keeps losing while others keep publishing:
# a few consolidators finishing together settle within a handful of rounds.
_MAX_ATTEMPTS = 30
_BACKOFF_S = 0.01
_JSON = ContentSettings(content_type="application/json")


@dataclass(frozen=True, slots=True)
class _Stored:
    value: datetime
    etag: str


class BlobWatermarkStore:
    """Implements `opus.ports.WatermarkStore`; safe to share between threads."""

    def __init__(self, service: BlobServiceClient, *, clock: Clock, container: str = DEFAULT_CONTAINER) -> None:
        self._service = service
        self._container = service.get_container_client(container)
        self._clock = clock
        self._container_ready = False
        self._container_lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: Settings, *, clock: Clock, credential: TokenCredential | None = None,
    ) -> BlobWatermarkStore:
        """A connection string (Azurite's `UseDevelopmentStorage=true` too) when set, else an Azure identity."""
        if settings.azure_storage_connection is not None:
            service = BlobServiceClient.from_connection_string(settings.azure_storage_connection.get_secret_value())
        else:
            account_url = settings.azure_storage_blob_uri or (
                f"https://{settings.azure_storage_account}.blob.core.windows.net"
                if settings.azure_storage_account else None
            )
            if account_url is None:
                raise ConfigError(
                    "Blob Storage is not configured: set AzureWebJobsStorage, AzureWebJobsStorage__accountName "
                    "or AzureWebJobsStorage__blobServiceUri"
                )
            if credential is None:
                from azure.identity import DefaultAzureCredential

                credential = DefaultAzureCredential()
            service = BlobServiceClient(account_url, credential=credential)
        return cls(service, clock=clock, container=settings.watermark_container)

    def get(self, feed: str) -> datetime | None:
        with _translated(feed, "read"):
            stored = self._read(self._blob(feed), feed)
        return stored.value if stored else None

    def advance(self, feed: str, value: datetime) -> None:
        if value.utcoffset() is None:
            raise ValueError("a watermark must be timezone-aware")
        value = value.astimezone(UTC)
        blob = self._blob(feed)
        with _translated(feed, "advance"):
            for attempt in range(_MAX_ATTEMPTS):
                if self._try_advance(blob, feed, value):
                    return
                # Lost a race: someone else wrote in between. Back off a little, at random, so that writers
                # that collided do not collide again in step.
                time.sleep(random.uniform(0, _BACKOFF_S * (attempt + 1)))
        raise TransientError(f"watermark of {feed!r} kept changing under {_MAX_ATTEMPTS} attempts to advance it")

    def close(self) -> None:
        self._service.close()

    # -- internals -------------------------------------------------------------------------------------------

    def _try_advance(self, blob: BlobClient, feed: str, value: datetime) -> bool:
        """True when done (written, or nothing to write); False when another writer got in first."""
        stored = self._read(blob, feed)
        if stored is not None and stored.value >= value:
            return True
        document = json.dumps(
            {"feed": feed, "value": value.isoformat(), "updated_at": self._clock.now().astimezone(UTC).isoformat()}
        )
        try:
            if stored is None:
                # Create only if still absent. (`etag="*"` with IfMissing raises a TypeError in the SDK.)
                blob.upload_blob(document, overwrite=False, content_settings=_JSON)
            else:
                blob.upload_blob(
                    document, overwrite=True, content_settings=_JSON,
                    etag=stored.etag, match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceExistsError, ResourceModifiedError):
            return False
        except HttpResponseError as exc:
            if exc.status_code in (409, 412):  # a conflict or failed precondition the SDK did not map
                return False
            raise
        logger.info("watermark advanced", extra={"feed": feed, "watermark": value.isoformat()})
        return True

    def _read(self, blob: BlobClient, feed: str) -> _Stored | None:
        try:
            download = blob.download_blob()
            raw = download.readall()
        except ResourceNotFoundError:
            return None
        etag = download.properties.etag
        try:
            value = datetime.fromisoformat(json.loads(raw)["value"])
        except (ValueError, KeyError, TypeError) as exc:
            raise PermanentError(f"watermark blob of {feed!r} is not a watermark document: {exc}") from exc
        if value.utcoffset() is None:
            raise PermanentError(f"watermark blob of {feed!r} holds a time without a timezone")
        return _Stored(value, etag)

    def _blob(self, feed: str) -> BlobClient:
        if not feed:
            raise ValueError("a feed name must not be empty")
        self._ensure_container()
        return self._container.get_blob_client(f"{feed}.json")

    def _ensure_container(self) -> None:
        with self._container_lock:
            if self._container_ready:
                return
            with _translated(self._container.container_name, "create container"), suppress(ResourceExistsError):
                self._container.create_container()
            self._container_ready = True


def classify(exc: AzureError, feed: str, action: str) -> TransientError | PermanentError:
    """Our error for an SDK error: credentials and other 4xx are permanent; 408, 429, 5xx and I/O transient."""
    text = f"Blob watermark {action} for {feed!r} failed: {type(exc).__name__}: {exc}"
    if isinstance(exc, ClientAuthenticationError):
        return PermanentError(text)
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        status = exc.status_code
        if status in (408, 429) or status >= 500:
            return TransientError(text)
        return PermanentError(text)
    # Connection refused, reset or timed out (ServiceRequestError, ServiceResponseError) and the like.
    return TransientError(text)


@contextmanager
def _translated(feed: str, action: str) -> Iterator[None]:
    try:
        yield
    except AzureError as exc:
        error = classify(exc, feed, action)
        logger.warning(
            "blob storage call failed",
            extra={"feed": feed, "action": action, "error": type(exc).__name__,
                   "transient": isinstance(error, TransientError)},
        )
        raise error from exc
