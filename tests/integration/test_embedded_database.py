"""With DATABASE_URL unset, Opus starts a private PostgreSQL of its own, migrates it, and stops it."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import psycopg
import pytest

from opus.config import load_settings
from opus.db.connect import open_database
from opus.db.migrate import discover


def test_the_embedded_database_starts_migrates_and_stops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DATABASE_HOST", raising=False)
    settings = load_settings(state_dir=tmp_path / "state")
    assert settings.configured_database_url is None
    pid_file = tmp_path / "state" / "pgdata" / "postmaster.pid"
    with ExitStack() as stack:
        db = open_database(settings, stack)
        assert pid_file.exists(), "a server runs from the state folder"
        with db.connection() as conn:
            version = conn.execute("SHOW server_version").fetchone()
            applied = conn.execute("SELECT count(*) AS n FROM schema_migrations").fetchone()
        assert version is not None
        assert applied == {"n": len(discover())}
        url = db.url
    assert not pid_file.exists(), "the server stopped with the last user"
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2).close()
    # Its data survives: a second start finds the schema in place and applies nothing.
    with ExitStack() as stack:
        db = open_database(settings, stack)
        with db.connection() as conn:
            assert conn.execute("SELECT count(*) AS n FROM pricing_rules").fetchone() == {"n": 1}
