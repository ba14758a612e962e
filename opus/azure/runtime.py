"""The composition root of the Functions app: one per worker process, built on first use and reused.

Microsoft's guidance for Python functions is to keep clients in globals, so that invocations share a connection
pool, HTTP clients and Service Bus senders instead of opening them each time. `AzureRuntime.from_settings` builds
them from Settings; `AzureRuntime(...)` takes them as explicit parts, which is how tests point the functions at a
sandbox, a Service Bus double and Azurite (`install_runtime`). Nothing connects at import: `function_app.py`
reaches the runtime through `current_runtime()` inside each invocation.

Only the Durable client differs per invocation: it arrives with the binding, so the coordinator built on it
(`coordinator_for`) lives exactly as long as the invocation, and the HTTP API finds it through a ContextVar
(`opus.azure.control`). Migrations are not run here: the deployment runs `opus db migrate`.
"""

from __future__ import annotations

import logging
import threading
from contextlib import ExitStack
from typing import Any

from opus.adapters.email_alerts import ResendNotifier
from opus.adapters.postgres_state import PostgresAlerts, SystemClock
from opus.azure.durable_coordinator import DurableClient, DurableClientBridge, DurableRunCoordinator
from opus.config import Settings, get_settings
from opus.db.pool import Database
from opus.errors import ConfigError
from opus.pipeline.deps import PipelineDeps
from opus.pipeline.preparers import preparer_for
from opus.ports import Alerts, Clock, Feed, WatermarkStore, WorkQueue

logger = logging.getLogger(__name__)


class AzureRuntime:
    """The process's long-lived parts, the PipelineDeps over them and the ASGI app, built once."""

    def __init__(
        self, settings: Settings, *, db: Database, feed: Feed, queue: WorkQueue, watermarks: WatermarkStore,
        alerts: Alerts, clock: Clock, resources: ExitStack | None = None,
    ) -> None:
        """`resources` closes what the runtime owns (pool, clients); parts passed in by a caller stay theirs."""
        self.settings = settings
        self._resources = resources or ExitStack()
        # In-thread unless set: chains on several instances are the parallelism, and an instance's cores are few.
        preparer = preparer_for(settings.consolidator_processes or 0)
        self._resources.callback(preparer.close)
        self.deps = PipelineDeps(
            db=db, feed=feed, queue=queue, watermarks=watermarks, alerts=alerts, clock=clock, settings=settings,
            preparer=preparer,
        )
        self._asgi_app: Any = None
        self._asgi_middleware: Any = None
        self._asgi_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> AzureRuntime:
        """The production wiring: PostgreSQL, Nivoda, Service Bus, Blob Storage, alerts (and e-mail if set)."""
        from opus.adapters.blob_watermark import BlobWatermarkStore
        from opus.adapters.servicebus_queue import ServiceBusWorkQueue
        from opus.feeds.nivoda import NivodaClient

        url = settings.configured_database_url
        if url is None:
            raise ConfigError("the Functions app needs a database server: set DATABASE_URL or DATABASE_HOST")
        clock = SystemClock()
        stack = ExitStack()
        try:
            db = Database(url, max_size=settings.pg_pool_max, timeout_s=settings.pg_conn_timeout_ms / 1000,
                          idle_timeout_s=settings.pg_idle_timeout_ms / 1000)
            stack.callback(db.close)
            # The rate limit (and a 429's pause) is one bucket in PostgreSQL for every instance the platform runs.
            feed = NivodaClient.from_settings(settings, db=db)
            stack.callback(feed.close)
            queue = ServiceBusWorkQueue.from_settings(settings, clock=clock)
            stack.callback(queue.close)
            watermarks = BlobWatermarkStore.from_settings(settings, clock=clock)
            stack.callback(watermarks.close)
            alerts = PostgresAlerts(db, _notifier(settings, stack))
        except BaseException:
            stack.close()
            raise
        logger.info("azure runtime created", extra={"feed": feed.name, "pool_max": settings.pg_pool_max})
        return cls(settings, db=db, feed=feed, queue=queue, watermarks=watermarks, alerts=alerts, clock=clock,
                   resources=stack)

    def coordinator_for(self, client: DurableClient) -> DurableRunCoordinator:
        """The RunCoordinator of one invocation. Call it in the `async def` trigger, on its event loop."""
        bridge = DurableClientBridge.on_running_loop(client)
        return DurableRunCoordinator(
            bridge, clock=self.deps.clock, deadline_minutes=self.settings.run_deadline_minutes,
        )

    @property
    def asgi_app(self) -> Any:
        """The REST API, built on first use (routes, auth, limits); its control reads the invocation's coordinator."""
        if self._asgi_app is None:
            with self._asgi_lock:
                if self._asgi_app is None:
                    from opus.api.app import create_app
                    from opus.azure.control import InvocationPipelineControl

                    self._asgi_app = create_app(
                        db=self.deps.db, settings=self.settings, feed=self.deps.feed,
                        control=InvocationPipelineControl(self.deps), clock=self.deps.clock.now,
                    )
        return self._asgi_app

    @property
    def asgi_middleware(self) -> Any:
        """The adapter from a Functions HTTP request to the ASGI app, made once like the app.

        The adapter tells the app no caller address; `PlatformClientAddress` takes it from the platform's header,
        so that limits per address (failed authentications) tell callers apart.
        """
        if self._asgi_middleware is None:
            import azure.functions as func

            from opus.azure.client_address import PlatformClientAddress

            self._asgi_middleware = func.AsgiMiddleware(  # type: ignore[no-untyped-call]
                PlatformClientAddress(self.asgi_app))
        return self._asgi_middleware

    def close(self) -> None:
        self._resources.close()


def _notifier(settings: Settings, stack: ExitStack) -> ResendNotifier | None:
    if settings.resend_api_key is None or not settings.alert_email_to or not settings.alert_email_from:
        return None
    notifier = ResendNotifier(
        settings.resend_api_key.get_secret_value(), settings.alert_email_from,
        [a.strip() for a in settings.alert_email_to.split(",") if a.strip()], endpoint=settings.resend_endpoint,
    )
    stack.callback(notifier.close)
    return notifier


_runtime: AzureRuntime | None = None
_runtime_lock = threading.Lock()


def current_runtime() -> AzureRuntime:
    """The process's runtime: the installed one, else built from the environment on first call (with telemetry)."""
    global _runtime
    if _runtime is None:
        with _runtime_lock:
            if _runtime is None:
                from opus.azure.telemetry import configure_telemetry

                settings = get_settings()
                configure_telemetry(settings)
                _runtime = AzureRuntime.from_settings(settings)
    return _runtime


def install_runtime(runtime: AzureRuntime | None) -> AzureRuntime | None:
    """Make `runtime` the process's runtime (None: build from the environment next time); returns the previous.

    The seam for tests and tools that build the runtime from explicit parts. The caller closes what it replaces.
    """
    global _runtime
    with _runtime_lock:
        previous, _runtime = _runtime, runtime
    return previous
