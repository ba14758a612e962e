"""The `opus` command line."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import click

from opus.config import Settings, load_settings
from opus.domain.models import RunType
from opus.errors import OpusError
from opus.logs import configure_logging

if TYPE_CHECKING:
    from opus.pipeline.deps import PipelineDeps

F = TypeVar("F", bound=Callable[..., Any])


def _settings() -> Settings:
    return load_settings()


@contextmanager
def _runtime(settings: Settings) -> Iterator[Any]:
    from opus.local.runtime import LocalRuntime

    with LocalRuntime(settings) as runtime:
        yield runtime


@click.group()
@click.option("--log-level", default="INFO", show_default=True, help="Logging level (to stderr).")
def main(log_level: str) -> None:
    """Opus: ingest the Nivoda inventory, price it, serve it."""
    # The run, partition and counts of each line travel in `extra`: the standard formatter would drop them.
    configure_logging(log_level)


@main.group()
def db() -> None:
    """Database commands."""


@db.command("migrate")
def db_migrate() -> None:
    """Apply the migrations not yet applied (starts the embedded database if none is configured)."""
    from contextlib import ExitStack

    from opus.db.connect import database_url
    from opus.db.migrate import migrate

    with ExitStack() as stack:
        applied = migrate(database_url(_settings(), stack))
    click.echo(f"applied {len(applied)} migration(s)" + "".join(f"\n  {m.version:04d} {m.name}" for m in applied))


@main.group()
def purchases() -> None:
    """Purchases an API process left pending: list them, resolve one after checking Nivoda."""


@purchases.command("pending")
@click.option("--older-than", "older_than_s", type=click.IntRange(0), default=0, show_default=True,
              help="Only those pending for at least this many seconds.")
def purchases_pending(older_than_s: int) -> None:
    """Pending purchases, oldest first, one JSON object per line (find each in Nivoda by customer_order_number)."""
    from datetime import UTC, datetime, timedelta

    from opus.api.services.purchases import pending_purchases

    with _database() as database:
        rows = pending_purchases(database, datetime.now(UTC) - timedelta(seconds=older_than_s))
    for row in rows:
        click.echo(json.dumps(row, default=str))


@purchases.command("resolve")
@click.argument("purchase_id", type=click.IntRange(1))
@click.option("--ordered", "order_id", metavar="ORDER_ID", help="The order is in Nivoda, with this id.")
@click.option("--failed", "reason", metavar="REASON", help="No such order is in Nivoda: why it failed.")
def purchases_resolve(purchase_id: int, order_id: str | None, reason: str | None) -> None:
    """Settle a pending purchase as it stands in Nivoda: --ordered marks the stone SOLD, --failed frees it."""
    import getpass
    from datetime import UTC, datetime

    from opus.api.services.purchases import Resolution, resolve_purchase

    if (order_id is None) == (reason is None) or not (order_id or reason or "").strip():
        raise click.UsageError("give exactly one of --ordered ORDER_ID and --failed REASON, not empty")
    found = Resolution("ordered", order_id.strip()) if order_id is not None else Resolution("failed", str(reason))
    with _database() as database:
        row = resolve_purchase(database, purchase_id, found, by=f"cli:{getpass.getuser()}", now=datetime.now(UTC))
    click.echo(json.dumps(row, default=str))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=4000, show_default=True, type=int)
@click.option("--diamonds", default=20_000, show_default=True, type=click.IntRange(0))
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--token-ttl", default=21_600.0, show_default=True, type=float, help="Token lifetime, seconds.")
@click.option("--production-like", is_flag=True,
              help="The realistic set: market inventory, noisy counts, latency, throttling, hold rules, mild faults.")
@click.option("--realistic/--uniform", default=None, help="Market-shaped inventory (prices, availability, media).")
@click.option("--count-noise/--exact-counts", default=None, help="Counts undercount per price bucket.")
@click.option("--latency-median-ms", type=click.FloatRange(0), help="Log-normal request latency, median.")
@click.option("--latency-sigma", type=click.FloatRange(0), help="Spread of the latency (0: always the median).")
@click.option("--latency-cap-ms", type=click.FloatRange(0), help="Longest latency served.")
@click.option("--throttle-rps", type=click.FloatRange(0), help="429 above this many requests/s in all (0: off).")
@click.option("--staging/--production", default=None, help="Reject the fields staging rejects.")
@click.option("--hold-expiry/--holds-forever", default=None, help="Holds lapse at their `until`.")
@click.option("--no-hold-suppliers", type=click.FloatRange(0, 1), help="Share of suppliers that deny holds.")
@click.option("--fault", "fault_rates", multiple=True, metavar="KIND=RATE",
              help="Request fault rate; KIND: 429 500 502 503 drop slow graphql_error truncate.")
@click.option("--fault-every", multiple=True, metavar="KIND=N", help="The fault on every Nth request.")
@click.option("--malformed", multiple=True, metavar="KIND=RATE", help="Malformed-record rate, per record.")
@click.option("--malformed-stone", "malformed_stones", multiple=True, metavar="KIND=ID[,ID...]",
              help="These stones' records carry the malformation on every fetch.")
@click.option("--fail-next", help="Exact outcomes of the next requests, e.g. 429,500,drop.")
@click.option("--short-pages", type=click.FloatRange(0, 1), help="Rate of short pages mid-range.")
@click.option("--rows-past-count", type=click.FloatRange(0, 0.9), help="Further share of stones counts leave out.")
@click.option("--slow-ms", type=click.IntRange(0), help="Delay of a `slow` fault.")
@click.option("--retry-after", type=click.IntRange(0), help="Retry-After of an injected 429, seconds.")
@click.option("--token-max-requests", type=click.IntRange(1), help="A token stops working after N requests.")
@click.option("--token-max-age", type=click.FloatRange(0), help="A token stops working after N seconds.")
def sandbox(host: str, port: int, diamonds: int, seed: int, token_ttl: float, production_like: bool,
            realistic: bool | None, count_noise: bool | None, latency_median_ms: float | None,
            latency_sigma: float | None, latency_cap_ms: float | None, throttle_rps: float | None,
            staging: bool | None, hold_expiry: bool | None, no_hold_suppliers: float | None,
            fault_rates: tuple[str, ...], fault_every: tuple[str, ...], malformed: tuple[str, ...],
            malformed_stones: tuple[str, ...], fail_next: str | None, short_pages: float | None,
            rows_past_count: float | None, slow_ms: int | None, retry_after: int | None,
            token_max_requests: int | None, token_max_age: float | None) -> None:
    """Serve the Nivoda sandbox: a local GraphQL stand-in for the Nivoda API."""
    from opus.sandbox.options import build_config, fault_flags
    from opus.sandbox.server import serve

    try:
        faults = fault_flags(fault_rates, fault_every, malformed, fail_next, malformed_stones=malformed_stones,
                             short_page_rate=short_pages, rows_past_count=rows_past_count, slow_ms=slow_ms,
                             retry_after_s=retry_after,
                             token_max_requests=token_max_requests, token_max_age_s=token_max_age)
        config = build_config(
            production_like, realistic,
            behaviour={"count_noise": count_noise, "throttle_rps": throttle_rps, "staging": staging,
                       "hold_expiry": hold_expiry, "no_hold_suppliers": no_hold_suppliers},
            latency={"median_ms": latency_median_ms, "sigma": latency_sigma, "cap_ms": latency_cap_ms},
            faults=faults)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    serve(host=host, port=port, diamonds=diamonds, seed=seed, token_ttl_s=token_ttl, config=config)


def _run_type_option(fn: F) -> F:
    return click.option(
        "--full/--incremental", "full", default=False, show_default=True,
        help="Full run (all stones, soft-deletes the missing) or incremental (changes since the watermark).",
    )(fn)


def _feed_option(fn: F) -> F:
    return click.option(
        "--feed", "feed_name", default=None, metavar="NAME",
        help="Only this feed (of FEEDS_FILE; a disabled one too). Default: every enabled feed.",
    )(fn)


def _chosen_feeds(settings: Settings, feed_name: str | None) -> tuple[Any, ...]:
    from opus.feeds.catalog import enabled_feeds, find_feed

    if feed_name is None:
        return enabled_feeds(settings.feeds)
    try:
        return (find_feed(settings.feeds, feed_name),)
    except KeyError as exc:
        raise click.UsageError(str(exc.args[0])) from None


@main.command()
@_run_type_option
@_feed_option
@click.option("--workers", default=None, type=click.IntRange(1, 256), help="Worker threads [WORKER_CONCURRENCY].")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object (one per feed), last.")
def run(full: bool, feed_name: str | None, workers: int | None, as_json: bool) -> None:
    """Plan and work one whole run per feed, side by side, in this process; exit 0 only if all completed."""
    from opus.local.progress import progress_reporter
    from opus.local.run_once import run_feeds

    settings = _settings()
    feeds = _chosen_feeds(settings, feed_name)
    with _runtime(settings) as runtime, progress_reporter(quiet=False) as report:
        results = run_feeds(
            runtime, RunType.FULL if full else RunType.INCREMENTAL, feeds,
            workers=workers or settings.worker_concurrency, on_progress=report,
        )
    for result in results:
        if as_json:
            click.echo(json.dumps(result))
        else:
            for key, value in result.items():
                click.echo(f"{key:>14}: {value}")
            click.echo("")
    sys.exit(0 if all(r["status"] == "completed" for r in results) else 1)


@main.command()
@_run_type_option
@_feed_option
def schedule(full: bool, feed_name: str | None) -> None:
    """Plan a run per feed and enqueue its work, then exit (as the nightly timer does); one JSON line per feed."""
    from opus.pipeline.scheduler import schedule_run

    settings = _settings()
    with _runtime(settings) as runtime:
        for feed in _chosen_feeds(settings, feed_name):
            plan = schedule_run(runtime.deps, runtime.coordinator, RunType.FULL if full else RunType.INCREMENTAL,
                                trigger="cli", feed=feed)
            click.echo(json.dumps({"run_id": plan.run_id, "feed": plan.feed, "type": plan.run_type.value,
                                   "partitions": len(plan.partitions)}))


@main.command()
@click.option("--workers", default=4, show_default=True, type=click.IntRange(0, 64))
@click.option("--consolidators", default=1, show_default=True, type=click.IntRange(0, 8))
def worker(workers: int, consolidators: int) -> None:
    """Run queue consumers until interrupted (another process or machine helping a run)."""
    from opus.local.signals import wait_for_shutdown

    with _runtime(_settings()) as runtime:
        runtime.start_consumers(workers=workers, consolidators=consolidators)
        click.echo(f"consuming with {workers} worker(s) and {consolidators} consolidator(s); Ctrl-C stops",
                   err=True)
        wait_for_shutdown()


@main.command()
@click.option("--run", "run_id", required=True, help="Run id.")
@click.option("--force", is_flag=True, help="Consolidate even if not every partition succeeded.")
def consolidate(run_id: str, force: bool) -> None:
    """Consolidate a run's raw rows now, in this process."""
    from opus.pipeline.consolidator import consolidate_run

    with _runtime(_settings()) as runtime:
        _refuse_unless_consolidatable(runtime.deps, run_id, force=force)
        status = consolidate_run(runtime.deps, run_id, force=force)
    click.echo(json.dumps({"run_id": run_id, "status": status}))


def _refuse_unless_consolidatable(deps: PipelineDeps, run_id: str, *, force: bool) -> None:
    """A run that would leave `opus consolidate` with nothing to do is refused, saying what to do instead: exiting 0
    with the run's status looked like success to an operator whose run was stuck."""
    import uuid

    from opus.domain.models import RunStatus
    from opus.errors import ConflictError, NotFoundError
    from opus.pipeline.runs import get_run

    try:
        uuid.UUID(run_id)
    except ValueError:
        raise NotFoundError(f"no run {run_id!r}") from None
    run = get_run(deps, run_id)
    if run is None:
        raise NotFoundError(f"no run {run_id!r}")
    status = run["status"]
    if status == RunStatus.PLANNING:
        raise ConflictError(
            f"run {run_id} is planning: it has fetched nothing to consolidate. `opus run --{run['run_type']}` "
            f"resumes it (a dead planner's run is taken over), `opus runs cancel {run_id}` cancels it")
    if status != RunStatus.CONSOLIDATING and not force:
        raise ConflictError(
            f"run {run_id} is {status}: it is not consolidating. `--force` consolidates what it has fetched")


@main.command()
@click.option("--run", "run_id", required=True, help="Run id of a failed run.")
def retry(run_id: str) -> None:
    """Re-enqueue the failed partitions of a run from where they stopped."""
    with _runtime(_settings()) as runtime:
        count = runtime.control.retry_partitions(run_id)
    click.echo(json.dumps({"run_id": run_id, "partitions": count}))


@main.group()
def runs() -> None:
    """Runs: list them, cancel an active one."""


@runs.command("list")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
def runs_list(limit: int) -> None:
    """The latest runs, newest first, one JSON object per line."""
    from opus.db.queries import Queries

    with _database() as database, database.connection() as conn:
        rows = conn.execute(Queries("api_analytics").runs, {"limit": limit, "offset": 0, "status": None}).fetchall()
    for row in rows:
        click.echo(json.dumps(row, default=str))


@runs.command("cancel")
@click.argument("run_id")
def runs_cancel(run_id: str) -> None:
    """Cancel an active run (planning, running or consolidating): it fails now and frees its feed."""
    import getpass

    with _runtime(_settings()) as runtime:
        runtime.control.cancel_run(run_id, by=f"cli:{getpass.getuser()}")
    click.echo(json.dumps({"run_id": run_id, "status": "failed", "cancelled": True}))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Serve the API and dashboard, with queue consumers and the nightly schedule, until interrupted."""
    from opus.local.serve import serve as serve_all

    serve_all(_settings(), host=host, port=port,
              on_ready=lambda url: click.echo(f"serving {url}/api/v2 (docs {url}/api/v2/docs)", err=True))


@main.group()
def keys() -> None:
    """API keys: only a digest is stored; the key is shown once, when created."""


@keys.command("create")
@click.option("--name", required=True, help="Who or what the key is for.")
@click.option("--scope", type=click.Choice(["read", "trade", "admin"]), default="read", show_default=True)
def keys_create(name: str, scope: str) -> None:
    """Create a key and print it, once, as the last line."""
    from opus.api.keys import create_key

    with _database() as database:
        key = create_key(database, name, scope)
    click.echo(f"created {scope} key for {name!r}; store it now, it is not shown again:", err=True)
    click.echo(key)


@keys.command("list")
def keys_list() -> None:
    """List keys (prefix, name, scope, dates), never the keys themselves."""
    from opus.api.keys import list_keys

    with _database() as database:
        rows = list_keys(database)
    for row in rows:
        click.echo(json.dumps(row, default=str))


@keys.command("revoke")
@click.argument("key")
def keys_revoke(key: str) -> None:
    """Revoke a key by its prefix or id."""
    from opus.api.keys import revoke_key

    with _database() as database:
        ok = revoke_key(database, int(key) if key.isdigit() else key)
    if not ok:
        raise click.ClickException(f"no active key {key!r}")
    click.echo(f"revoked {key}")


@main.command()
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default="openapi.json",
              show_default=True)
def openapi(output: str) -> None:
    """Write the API's OpenAPI document to a file."""
    from pathlib import Path

    from opus.api.app import create_app

    class _NoDatabase:
        """The document is built from the routes alone; nothing touches the database."""

    app = create_app(db=_NoDatabase(), settings=_settings(), feed=None, control=None)  # type: ignore[arg-type]
    Path(output).write_text(json.dumps(app.openapi(), indent=2) + "\n", encoding="utf-8")
    click.echo(f"wrote {output}")


@contextmanager
def _database() -> Iterator[Any]:
    from contextlib import ExitStack

    from opus.db.connect import open_database

    with ExitStack() as stack:
        yield open_database(_settings(), stack)


def run_cli() -> None:
    """Entry point with errors turned into one clear line and a non-zero exit."""
    try:
        main(standalone_mode=True)
    except OpusError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
