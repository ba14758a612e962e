"""Telemetry of the Functions app: Application Insights through OpenTelemetry when it is configured.

With `APPLICATIONINSIGHTS_CONNECTION_STRING` set, `configure_azure_monitor` exports the `opus` loggers' records
and the traces to Application Insights; each record's `extra={...}` (run_id, partition, counts) becomes custom
dimensions of its trace. Only the `opus` loggers: the Functions host already forwards every log line as a plain
trace, and exporting the SDKs' chatter a second time would only cost ingestion. Authentication is Entra ID (a
managed identity) when `APPLICATIONINSIGHTS_AUTHENTICATION_STRING` says `Authorization=AAD` (its `ClientId=`
names a user-assigned identity), as the host reads the same setting. Without a connection string, the log lines
the host forwards carry the extras as `key=value` pairs (`opus.logs.ExtraFormatter`).

Configured once per process: a second call changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from opus.config import Settings
from opus.logs import use_extra_formatter

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


def configure_telemetry(settings: Settings, *, configure: Configure | None = None) -> bool:
    """Set up Application Insights (or key=value log lines); True when Application Insights was set up.

    Called once per process, by `opus.azure.runtime.current_runtime` as it builds the process's runtime under its
    lock (a second `configure_azure_monitor` would add a second exporter). `configure` stands in for
    `configure_azure_monitor` (a boundary we do not own).
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
    (configure or _azure_monitor())(**options)
    logging.getLogger(LOGGER_NAME).setLevel(logging.INFO)
    logging.getLogger(__name__).info("application insights configured", extra={"aad": use_aad})
    return True
