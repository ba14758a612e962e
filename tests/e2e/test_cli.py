"""The `opus` command line against a real PostgreSQL and the sandbox: migrate, keys, run --json, openapi, cancelling
a run, and the refusals an operator sees (one `error:` line, exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from opus.cli import main
from opus.db.pool import Database
from opus.errors import ConflictError
from opus.sandbox.runner import RunningSandbox, run_sandbox


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    with run_sandbox(diamonds=2_000, seed=7) as sb:
        yield sb


@pytest.fixture
def cli_env(db: Database, database_url: str, sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name, value in {
        "DATABASE_URL": database_url, "NIVODA_ENDPOINT": sandbox.endpoint, "NIVODA_RATE_LIMIT_PER_S": "10000",
        "MIN_RECORDS_PER_WORKER": "300", "MAX_WORKERS": "4",
    }.items():
        monkeypatch.setenv(name, value)
    return CliRunner()


def test_db_migrate_applies_nothing_on_a_migrated_database(cli_env: CliRunner) -> None:
    result = cli_env.invoke(main, ["db", "migrate"])
    assert result.exit_code == 0, result.output
    assert "applied 0 migration(s)" in result.output


def test_keys_create_list_revoke(cli_env: CliRunner, db: Database) -> None:
    created = cli_env.invoke(main, ["keys", "create", "--name", "shop", "--scope", "trade"])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("opus_")
    listed = cli_env.invoke(main, ["keys", "list"])
    [row] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert row["name"] == "shop"
    assert row["scope"] == "trade"
    assert key not in listed.stdout, "the key itself is never listed"
    with db.connection() as conn:
        stored = conn.execute("SELECT digest, prefix FROM api_keys").fetchone()
    assert stored is not None
    assert key not in (stored["digest"], stored["prefix"])
    revoked = cli_env.invoke(main, ["keys", "revoke", row["prefix"]])
    assert revoked.exit_code == 0, revoked.output
    again = cli_env.invoke(main, ["keys", "revoke", row["prefix"]])
    assert again.exit_code != 0


def test_run_full_then_incremental_prints_json_last(cli_env: CliRunner) -> None:
    full = cli_env.invoke(main, ["run", "--full", "--json"])
    assert full.exit_code == 0, full.output
    summary = json.loads(full.stdout.strip().splitlines()[-1])
    assert set(summary) >= {"run_id", "status", "type", "partitions", "pages", "raw_rows", "consolidated",
                            "deleted", "errors", "watermark"}
    assert (summary["status"], summary["type"], summary["consolidated"]) == ("completed", "full", 2_000)
    incremental = cli_env.invoke(main, ["run", "--incremental", "--json"])
    assert incremental.exit_code == 0, incremental.output
    second = json.loads(incremental.stdout.strip().splitlines()[-1])
    assert (second["status"], second["type"]) == ("completed", "incremental")
    assert second["watermark"] > summary["watermark"]


def test_a_run_that_fails_exits_non_zero(cli_env: CliRunner, sandbox: RunningSandbox,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARTITION_PAGE_CAP", "1")
    result = cli_env.invoke(main, ["run", "--full", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout.strip().splitlines()[-1])["status"] == "failed"


def test_openapi_writes_the_document(cli_env: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "openapi.json"
    result = cli_env.invoke(main, ["openapi", "-o", str(out)])
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    assert "/api/v2/diamonds" in document["paths"]


def test_a_bad_setting_stops_the_command_with_its_name() -> None:
    env = os.environ | {"WORKER_PAGE_SIZE": "99"}
    result = subprocess.run([sys.executable, "-m", "opus", "run", "--full"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "WORKER_PAGE_SIZE" in result.stderr
    assert "Traceback" not in result.stderr


def _planning_run(db: Database) -> str:
    """A run whose planner is alive elsewhere (a fresh heartbeat): it holds its feed until it ends or is cancelled."""
    run_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO run_metadata (run_id, feed, run_type, status, updated_to, deadline_at, planner, heartbeat_at)"
            " VALUES (%s, 'nivoda', 'full', 'planning', %s, %s, 'elsewhere', %s)",
            (run_id, now, now + timedelta(hours=6), now))
    return run_id


def _opus(database_url: str, sandbox: RunningSandbox, *args: str) -> subprocess.CompletedProcess[str]:
    """`opus ARGS` as a process: refusals are reported by the entry point, which a CliRunner skips."""
    env = os.environ | {"DATABASE_URL": database_url, "NIVODA_ENDPOINT": sandbox.endpoint}
    return subprocess.run([sys.executable, "-m", "opus", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def _status(db: Database, run_id: str) -> str:
    with db.connection() as conn:
        row = conn.execute("SELECT status FROM run_metadata WHERE run_id = %s", (run_id,)).fetchone()
    assert row is not None
    return str(row["status"])


def test_runs_cancel_frees_the_feed_and_refuses_a_run_that_is_not_active(
    cli_env: CliRunner, db: Database, database_url: str, sandbox: RunningSandbox
) -> None:
    run_id = _planning_run(db)
    blocked = cli_env.invoke(main, ["schedule", "--full"])
    assert isinstance(blocked.exception, ConflictError), "the planning run holds the feed"
    cancelled = cli_env.invoke(main, ["runs", "cancel", run_id])
    assert cancelled.exit_code == 0, cancelled.output
    assert json.loads(cancelled.stdout.strip().splitlines()[-1]) == {"run_id": run_id, "status": "failed",
                                                                     "cancelled": True}
    assert _status(db, run_id) == "failed"
    started = cli_env.invoke(main, ["schedule", "--full"])
    assert started.exit_code == 0, started.output
    assert json.loads(started.stdout.strip().splitlines()[-1])["partitions"] > 0, "a following run starts"
    again = _opus(database_url, sandbox, "runs", "cancel", run_id)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1] == (
        f"error: run {run_id} is failed; only an active run can be cancelled")
    not_due = _opus(database_url, sandbox, "consolidate", "--run", run_id)
    assert not_due.returncode == 2
    assert not_due.stderr.strip().splitlines()[-1].endswith("`--force` consolidates what it has fetched")


def test_consolidating_a_planning_run_is_refused_saying_what_to_do(
    db: Database, database_url: str, sandbox: RunningSandbox
) -> None:
    run_id = _planning_run(db)
    refused = _opus(database_url, sandbox, "consolidate", "--run", run_id, "--force")
    assert refused.returncode == 2, refused.stdout
    line = refused.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: run {run_id} is planning")
    assert "opus run --full" in line
    assert f"opus runs cancel {run_id}" in line
    assert "Traceback" not in refused.stderr
    assert _status(db, run_id) == "planning", "nothing was done to it"
