"""Settings: documented defaults that work on one machine, and bad values named at start."""

from __future__ import annotations

import pytest

from opus.config import DEFAULT_SANDBOX_ENDPOINT, load_settings
from opus.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "DATABASE_HOST", "NIVODA_ENDPOINT", "WORKER_PAGE_SIZE", "HMAC_SECRETS",
                 "SCHEDULE", "MAX_WORKERS", "RESEND_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir("/")  # no .env file


def test_defaults_point_at_the_local_sandbox_and_the_embedded_database() -> None:
    s = load_settings()
    assert s.configured_database_url is None
    assert s.nivoda_endpoint == DEFAULT_SANDBOX_ENDPOINT == "http://127.0.0.1:4000/api/diamonds"
    assert (s.nivoda_username, s.nivoda_password.get_secret_value()) == ("sandbox", "sandbox")
    assert (s.worker_page_size, s.max_workers, s.min_records_per_worker) == (50, 64, 1000)
    assert s.incremental_buffer_minutes == 15


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db.example:5432/opus")
    monkeypatch.setenv("WORKER_PAGE_SIZE", "25")
    monkeypatch.setenv("HMAC_SECRETS", '{"shop": "s3cret"}')
    s = load_settings()
    assert s.configured_database_url == "postgresql://u@db.example:5432/opus"
    assert s.worker_page_size == 25
    assert s.hmac_secrets == {"shop": "s3cret"}


def test_database_parts_build_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_HOST", "db.internal")
    monkeypatch.setenv("DATABASE_PASSWORD", "pw")
    url = load_settings().configured_database_url
    assert url is not None
    assert "host=db.internal" in url
    assert "password=pw" in url


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WORKER_PAGE_SIZE", "51"),
        ("WORKER_PAGE_SIZE", "zero"),
        ("MAX_WORKERS", "0"),
        ("HMAC_SECRETS", "not json"),
        ("HMAC_SECRETS", '{"client": ""}'),
        ("SCHEDULE", "every night"),
        ("DATABASE_URL", "mysql://x"),
    ],
)
def test_a_bad_setting_fails_with_its_name(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()


def test_alert_email_needs_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESEND_API_KEY", "re_123")
    with pytest.raises(ConfigError, match="ALERT_EMAIL_TO"):
        load_settings()
