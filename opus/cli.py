"""The `opus` command line."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from opus.config import Settings, load_settings
from opus.domain.models import RunType
from opus.errors import OpusError

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
    logging.basicConfig(
        level=log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


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


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=4000, show_default=True, type=int)
@click.option("--diamonds", default=20_000, show_default=True, type=click.IntRange(0))
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--token-ttl", default=21_600.0, show_default=True, type=float, help="Token lifetime, seconds.")
def sandbox(host: str, port: int, diamonds: int, seed: int, token_ttl: float) -> None:
    """Serve the Nivoda sandbox: a local GraphQL stand-in for the Nivoda API."""
    from opus.sandbox.server import serve

    serve(host=host, port=port, diamonds=diamonds, seed=seed, token_ttl_s=token_ttl)


def _run_type_option(fn: F) -> F:
    return click.option(
        "--full/--incremental", "full", default=False, show_default=True,
        help="Full run (all stones, soft-deletes the missing) or incremental (changes since the watermark).",
    )(fn)


@main.command()
@_run_type_option
@click.option("--workers", default=None, type=click.IntRange(1, 64), help="Worker threads [MAX_WORKERS].")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object, last.")
def run(full: bool, workers: int | None, as_json: bool) -> None:
    """Plan and work one whole run in this process; exit 0 only if it completed."""
    from opus.local.progress import progress_reporter
    from opus.local.run_once import run_once

    settings = _settings()
    with _runtime(settings) as runtime, progress_reporter(quiet=False) as report:
        result = run_once(
            runtime, RunType.FULL if full else RunType.INCREMENTAL,
            workers=workers or settings.max_workers, on_progress=report,
        )
    if as_json:
        click.echo(json.dumps(result))
    else:
        for key, value in result.items():
            click.echo(f"{key:>14}: {value}")
    sys.exit(0 if result["status"] == "completed" else 1)


@main.command()
@_run_type_option
def schedule(full: bool) -> None:
    """Plan a run and enqueue its work, then exit (as the nightly timer does)."""
    from opus.pipeline.scheduler import schedule_run

    with _runtime(_settings()) as runtime:
        plan = schedule_run(runtime.deps, RunType.FULL if full else RunType.INCREMENTAL, trigger="cli")
    click.echo(json.dumps({"run_id": plan.run_id, "type": plan.run_type.value, "partitions": len(plan.partitions)}))


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
        status = consolidate_run(runtime.deps, run_id, force=force)
    click.echo(json.dumps({"run_id": run_id, "status": status}))


@main.command()
@click.option("--run", "run_id", required=True, help="Run id of a failed run.")
def retry(run_id: str) -> None:
    """Re-enqueue the failed partitions of a run from where they stopped."""
    with _runtime(_settings()) as runtime:
        count = runtime.control.retry_partitions(run_id)
    click.echo(json.dumps({"run_id": run_id, "partitions": count}))


def run_cli() -> None:
    """Entry point with errors turned into one clear line and a non-zero exit."""
    try:
        main(standalone_mode=True)
    except OpusError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
