"""Telemetry of the Functions app: Application Insights through OpenTelemetry when it is configured.

With `APPLICATIONINSIGHTS_CONNECTION_STRING` set, `configure_azure_monitor` exports the `opus` loggers' records
and the traces to Application Insights; each record's `extra={...}` (run_id, partition, counts) becomes custom
dimensions of its trace. Only the `opus` loggers: the Functions host already forwards every log line as a plain
trace, and exporting the SDKs' chatter a second time would only cost ingestion. Authentication is Entra ID (a
managed identity) when `APPLICATIONINSIGHTS_AUTHENTICATION_STRING` says `Authorization=AAD` (its `ClientId=`
names a user-assigned identity), as the host reads the same setting. Without a connection string, the log lines
the host forwards carry the extras as `key=value` pairs (`opus.logs.ExtraFormatter`).

OpenTelemetry takes only primitive attribute values (str, bool, int, float, bytes and their sequences) and drops
any other with a warning: an extra that is a dict or a list of dicts would vanish from the trace. `JsonExtras`,
set on the handlers of the `opus` logger, encodes such values as JSON text first, so every extra arrives.

Configured once per process: a second call changes nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from opus.config import Settings
from opus.logs import record_extra, use_extra_formatter

LOGGER_NAME = "opus"

Configure = Callable[..., None]


def _azure_monitor() -> Configure:
    from azure.monitor.opentelemetry import configure_azure_monitor

    configure: Configure = configure_azure_monitor
    return configure


def aad_client_id(authentication: str | None) -> tuple[bool, str | None]:
    """(use Entra ID, user-assigned client id or None) from an `Authorization=AAD;ClientId=...` string."""
    if not authentication:
        return False, None
    parts = {
        key.strip().lower(): value.strip()
        for key, _, value in (item.partition("=") for item in authentication.split(";") if item.strip())
    }
    if parts.get("authorization", "").upper() != "AAD":
        return False, None
    return True, parts.get("clientid") or None


_PRIMITIVE = (str, bool, int, float, bytes, type(None))


class JsonExtras(logging.Filter):
    """Encode the extras OpenTelemetry would drop (dicts, lists of non-primitives, objects) as JSON text."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in record_extra(record).items():
            if not _attribute_value(value):
                setattr(record, key, json.dumps(value, default=str, sort_keys=True))
        return True


def _attribute_value(value: object) -> bool:
    if isinstance(value, _PRIMITIVE):
        return True
    return isinstance(value, (list, tuple)) and all(isinstance(v, _PRIMITIVE) for v in value)


def configure_telemetry(
    settings: Settings, *, configure: Configure | None = None, log_record_processors: Sequence[Any] = (),
) -> bool:
    """Set up Application Insights (or key=value log lines); True when Application Insights was set up.

    Called once per process, by `opus.azure.runtime.current_runtime` as it builds the process's runtime under its
    lock (a second `configure_azure_monitor` would add a second exporter). `configure` stands in for
    `configure_azure_monitor` (a boundary we do not own); `log_record_processors` are added beside its exporter.
    """
    connection = settings.applicationinsights_connection_string
    if not connection:
        use_extra_formatter(logging.getLogger().handlers)
        return False
    options: dict[str, Any] = {"connection_string": connection, "logger_name": LOGGER_NAME}
    use_aad, client_id = aad_client_id(settings.applicationinsights_authentication_string)
    if use_aad:
        from azure.identity import ManagedIdentityCredential

        options["credential"] = ManagedIdentityCredential(client_id=client_id)
    if log_record_processors:
        options["log_record_processors"] = list(log_record_processors)
    (configure or _azure_monitor())(**options)
    opus_logger = logging.getLogger(LOGGER_NAME)
    for handler in opus_logger.handlers:  # the exporter's handler: filters of the logger would miss child loggers
        handler.addFilter(JsonExtras())
    opus_logger.setLevel(logging.INFO)
    logging.getLogger(__name__).info("application insights configured", extra={"aad": use_aad})
    return True
