"""The one Settings object: nothing else in Opus reads the environment.

Every setting has a default that works on one machine with no cloud. A bad value fails at start with a
message that names the environment variable (see `load_settings`).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from opus.domain.models import FeedConfig
from opus.errors import ConfigError

# The folder holding function_app.py and config/: where a relative FEEDS_FILE is looked for after the working folder.
APP_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SANDBOX_ENDPOINT = "http://127.0.0.1:4000/api/diamonds"


class Settings(BaseSettings):
    """Opus configuration, read from environment variables (case-insensitive) and an optional `.env`."""

    _feeds: tuple[Path | None, tuple[FeedConfig, ...]] | None = PrivateAttr(default=None)

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    # --- database -------------------------------------------------------------------------------------
    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL. Unset (and no DATABASE_HOST): Opus starts an embedded PostgreSQL.",
    )
    database_host: str | None = Field(default=None, description="Alternative to DATABASE_URL, with the next four.")
    database_port: int = Field(default=5432, ge=1, le=65535)
    database_name: str = "opus"
    database_username: str = "postgres"
    database_password: SecretStr | None = None
    pg_pool_max: int = Field(default=8, ge=1, le=100, description="Connections per process.")
    pg_idle_timeout_ms: int = Field(default=60_000, ge=1_000)
    pg_conn_timeout_ms: int = Field(default=10_000, ge=100)
    state_dir: Path = Field(default=Path(".state"), description="Embedded database data and other local state.")

    # --- Nivoda ---------------------------------------------------------------------------------------
    nivoda_endpoint: str = DEFAULT_SANDBOX_ENDPOINT
    nivoda_username: str = "sandbox"
    nivoda_password: SecretStr = SecretStr("sandbox")
    nivoda_timeout_s: float = Field(default=60.0, gt=0, description="Per request; real requests take up to 45 s.")
    nivoda_read_attempts: int = Field(default=3, ge=1, le=10, description="Tries of a read before it fails.")
    nivoda_rate_limit_per_s: float = Field(
        default=25.0, gt=0,
        description="Requests per second to Nivoda for all of Opus: every thread, process and instance shares "
        "one token bucket held in PostgreSQL.",
    )

    # --- feeds, rate limit and fetch concurrency ----------------------------------------------------
    feeds_file: Path | None = Field(
        default=None,
        description="TOML or JSON file of feeds (name, DiamondQuery filters, enabled); checked at start. Unset: "
        "one feed `nivoda` with no filters. config/feeds.toml holds the natural and lab-grown feeds.",
    )
    nivoda_staging: bool = Field(
        default=False,
        description="Nivoda staging: never select the certificate fields staging rejects (clarity, floInt, "
        "floCol, labgrown_type).",
    )
    worker_concurrency: int = Field(
        default=64, ge=1, le=256,
        description="Page-worker threads per process: requests in flight. Nivoda's latency has a median of about "
        "1.5 s but a long tail (mean about 2.1 s), so 25 requests/s needs about 52 in flight; 64 keeps the limit, "
        "not the latency, in charge.",
    )
    density_scan_parallelism: int = Field(
        default=64, ge=1, le=256, description="Count calls in flight while a run's density is scanned."
    )

    # --- pipeline -------------------------------------------------------------------------------------
    worker_page_size: int = Field(default=50, ge=1, le=50, description="Nivoda refuses limit > 50.")
    max_workers: int = Field(
        default=64, ge=1, le=200,
        description="Upper bound on partitions per run. A partition pages one request at a time, so this also "
        "caps a run's requests in flight; tens, not hundreds (each is a Durable sub-task on Azure).",
    )
    min_records_per_worker: int = Field(default=1_000, ge=1)
    incremental_buffer_minutes: int = Field(default=15, ge=0)
    partition_page_cap: int | None = Field(
        default=None, ge=1,
        description="Pages one partition may fetch before it is stopped as runaway. Unset: three times its "
        "estimated pages plus 100, so the cap scales with the partition.",
    )
    page_attempts: int = Field(
        default=6, ge=1, le=100,
        description="Tries of one page (each with the client's own retries) before its partition fails. Counted "
        "in partition_progress, whatever the transport's delivery count says. A planning count is tried as often.",
    )
    run_deadline_minutes: int = Field(default=360, ge=1)
    planning_timeout_s: int = Field(
        default=120, ge=5,
        description="A planning run whose planner sent no heartbeat for this long is failed (or taken over by "
        "`opus run`): a killed planner must not block the feed until the run's deadline.",
    )
    partition_stall_s: int = Field(
        default=900, ge=30,
        description="A partition of a running run that made no progress for this long gets its page enqueued "
        "again (a lost or dead-lettered message must not stall the run until its deadline).",
    )
    claim_ttl_seconds: int = Field(default=300, ge=5, description="Consolidator claims expire after this.")
    consolidator_batch_size: int = Field(default=2_000, ge=1, le=50_000)
    consolidator_concurrency: int = Field(default=2, ge=1, le=32, description="Consolidation chains per run.")
    consolidator_processes: int | None = Field(
        default=None, ge=0, le=64,
        description="Worker processes that parse, map and price claimed raw rows for consolidation; 0: in the "
        "consolidating thread. Unset: the machine's cores on one machine, 0 in the Functions app.",
    )
    consolidator_slice_s: float = Field(
        default=60.0, gt=0, le=600,
        description="How long one consolidate message works before it sends its continuation.",
    )
    max_delete_fraction: float = Field(
        default=0.5, ge=0, le=1, description="A full run refuses to soft-delete more than this share of stones."
    )
    delete_confirm_limit: int = Field(
        default=50_000, ge=0,
        description="A full run asks the feed about at most this many stones it did not see; only stones the "
        "feed confirms gone are soft-deleted, the rest stay live and are reported.",
    )
    max_delete_floor: int = Field(default=100, ge=0, description="...unless it is at most this many stones.")
    queue_visibility_timeout_s: int = Field(
        default=20, ge=1,
        description="Lock of a received local-queue message; a live consumer renews it, so a dead consumer's "
        "messages come back this soon.",
    )
    queue_max_deliveries: int = Field(default=10, ge=1)
    purchase_pending_alert_s: int = Field(
        default=300, ge=30,
        description="A purchase still waiting for the feed's answer after this long belongs to an API process that "
        "died mid-order: housekeeping raises one `purchase_pending` alert for it, to be resolved by an admin after "
        "checking Nivoda. Longer than an order can take (the feed client's timeout).",
    )
    housekeeping_interval_s: float = Field(
        default=30.0, gt=0, description="How often a local runtime runs housekeeping while it consumes."
    )

    # --- service --------------------------------------------------------------------------------------
    schedule: str = Field(default="0 2 * * *", description="Nightly run, cron syntax, UTC.")
    full_run_every_days: int = Field(
        default=7, ge=1, description="A scheduled run is full (and soft-deletes) when the last full run is older."
    )
    hmac_secrets: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, description='JSON object {"client_id": "secret"}.'
    )
    hmac_scopes: Annotated[dict[str, Literal["read", "trade", "admin"]], NoDecode] = Field(
        default_factory=dict, description='JSON {"client_id": "read|trade|admin"}; an unlisted HMAC client is read.'
    )

    # --- REST API limits ------------------------------------------------------------------------------
    rate_limit_per_minute: int = Field(
        default=600, ge=1, description="Requests a minute per credential, counted across every API instance."
    )
    auth_failures_per_minute: int = Field(
        default=30, ge=1,
        description="Failed authentications a minute per client address (per process); beyond it 429, with no "
        "database lookup.",
    )
    api_max_body_bytes: int = Field(
        default=65_536, ge=1_024, le=10_485_760, description="Largest request body; a larger one is 413."
    )
    api_request_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="A request body must arrive within this; otherwise 408."
    )
    api_key_cache_s: float = Field(
        default=5.0, ge=0, le=60,
        description="How long a verified API key is trusted without asking the database again; a revocation "
        "takes effect within this. 0: every request asks.",
    )
    api_keep_alive_s: int = Field(
        default=5, ge=1, le=300, description="`opus serve`: an idle keep-alive connection is closed after this."
    )
    api_processes: int = Field(
        default=1, ge=1, le=64,
        description="`opus serve`: processes serving the API on one socket (the first also runs the consumers and "
        "the schedule). On Azure the Functions host scales instances instead.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma list of origins (https://dash.example.com) whose browsers may call the API; default none.",
    )

    # --- alerts and telemetry -------------------------------------------------------------------------
    resend_api_key: SecretStr | None = None
    alert_email_to: str | None = None
    alert_email_from: str | None = None
    resend_endpoint: str = "https://api.resend.com/emails"
    applicationinsights_connection_string: str | None = None
    applicationinsights_authentication_string: str | None = Field(
        default=None,
        description="`Authorization=AAD` (optionally `;ClientId=<id>`): telemetry through a managed identity.",
    )

    # --- Azure (read only by the Functions runtime; unset on one machine) -------------------------------
    # The exact names the Functions host and its bindings use, so that one app setting serves both; they are
    # also the names to pass to load_settings.
    servicebus_connection: SecretStr | None = Field(
        default=None, validation_alias="ServiceBusConnection",
        description="Service Bus connection string. Unset: identity-based, through the next setting.",
    )
    servicebus_namespace: str | None = Field(
        default=None,
        validation_alias="ServiceBusConnection__fullyQualifiedNamespace",
        description="Identity-based Service Bus: the namespace host, e.g. opus-prod.servicebus.windows.net.",
    )
    azure_storage_connection: SecretStr | None = Field(
        default=None, validation_alias="AzureWebJobsStorage",
        description="Storage connection string (UseDevelopmentStorage=true for Azurite). Unset: identity-based.",
    )
    azure_storage_account: str | None = Field(
        default=None, validation_alias="AzureWebJobsStorage__accountName",
        description="Identity-based storage: the account name; its blob endpoint is derived from it.",
    )
    azure_storage_blob_uri: str | None = Field(
        default=None,
        validation_alias="AzureWebJobsStorage__blobServiceUri",
        description="Identity-based storage: the blob endpoint, for clouds where it is not derived from the name.",
    )
    watermark_container: str = Field(
        default="watermarks", min_length=3, max_length=63, pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$",
        description="Blob container holding one watermark blob per feed; created when missing.",
    )

    @field_validator("hmac_secrets", mode="before")
    @classmethod
    def _parse_hmac_secrets(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return {}
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"must be a JSON object of client id to secret: {exc.msg}") from exc
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()
        ):
            raise ValueError('must be a JSON object {"client_id": "secret"} with non-empty string secrets')
        return value

    @field_validator("hmac_scopes", mode="before")
    @classmethod
    def _parse_hmac_scopes(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(f"must be a JSON object of client id to scope: {exc.msg}") from exc
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [origin.strip().rstrip("/") for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("schedule")
    @classmethod
    def _check_cron(cls, value: str) -> str:
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"not a valid cron expression: {value!r}")
        return value

    @field_validator("feeds_file")
    @classmethod
    def _check_feeds_file(cls, value: Path | None) -> Path | None:
        from opus.feeds.catalog import load_feeds

        if value is not None and not value.is_absolute() and not value.exists() and (APP_ROOT / value).exists():
            # A relative path names a file of the app (config/feeds.toml), wherever the process was started.
            value = APP_ROOT / value
        load_feeds(value)  # a FeedsFileError (a ValueError) names the file and the bad key
        return value

    @property
    def feeds(self) -> tuple[FeedConfig, ...]:
        """Every configured feed (see `opus.feeds.catalog`), read from FEEDS_FILE once (the scheduler asks often)."""
        from opus.feeds.catalog import load_feeds

        # Keyed by the path: a copy of these settings naming another file must not get this file's feeds.
        if self._feeds is None or self._feeds[0] != self.feeds_file:
            self._feeds = (self.feeds_file, load_feeds(self.feeds_file))
        return self._feeds[1]

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql:// or postgres://")
        return value or None

    @model_validator(mode="after")
    def _check_alerts(self) -> Settings:
        if self.resend_api_key is not None and not (self.alert_email_to and self.alert_email_from):
            raise ValueError("RESEND_API_KEY needs ALERT_EMAIL_TO and ALERT_EMAIL_FROM")
        return self

    @property
    def configured_database_url(self) -> str | None:
        """The URL of a configured server, or None when the embedded database should be used."""
        if self.database_url:
            return self.database_url
        if self.database_host:
            from psycopg.conninfo import make_conninfo

            password = self.database_password.get_secret_value() if self.database_password else None
            return make_conninfo(
                host=self.database_host,
                port=self.database_port,
                dbname=self.database_name,
                user=self.database_username,
                password=password,
            )
        return None


def load_settings(**overrides: Any) -> Settings:
    """Build Settings, turning a validation error into one ConfigError naming each bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = "_".join(str(part) for part in err["loc"]).upper() or "SETTINGS"
            problems.append(f"{name}: {err['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide Settings, loaded once."""
    return load_settings()
