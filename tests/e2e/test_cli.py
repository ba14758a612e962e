"""The `opus` command line against a real PostgreSQL and the sandbox: migrate, keys, run --json, openapi."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from opus.cli import main
from opus.db.pool import Database
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
