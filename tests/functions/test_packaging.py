"""The Function App's package: requirements.txt, host.json, local.settings.example.json and .funcignore."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from opus.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
# The embedded PostgreSQL serves one machine; on Azure the database is a server. `opus serve`'s HTTP parser and
# event loop too: on Azure the Functions host speaks HTTP.
ONE_MACHINE_ONLY = {"pgserver", "httptools", "uvloop"}
# Settings left out of the example on purpose: their absence means something no placeholder can say.
LEFT_UNSET = {"PARTITION_PAGE_CAP": "unset, the runaway cap scales with each partition's estimate"}
# Read by the Functions host and function_app.py (timer schedules, the task hub), not by Settings.
HOST_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME", "OPUS_SCHEDULE", "OPUS_HOUSEKEEPING_SCHEDULE", "OPUS_TASK_HUB",
}


def _json(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ROOT / name).read_text())
    return loaded


def _requirement_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return match.group(0).lower().replace("_", "-")


def _environment_name(field: str) -> str:
    alias = Settings.model_fields[field].validation_alias
    assert alias is None or isinstance(alias, str), f"{field}: one environment name per setting"
    return alias or field.upper()


def test_requirements_are_the_core_dependencies_without_pgserver_plus_the_azure_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = [r for r in project["dependencies"] if _name(r) not in ONE_MACHINE_ONLY]
    expected = core + project["optional-dependencies"]["azure"]
    assert _requirement_lines((ROOT / "requirements.txt").read_text()) == expected
    assert {_name(r) for r in project["dependencies"]} >= ONE_MACHINE_ONLY, "still a core dependency"


def test_host_json_configures_the_runtime() -> None:
    host = _json("host.json")
    assert host["version"] == "2.0"
    assert host["extensionBundle"] == {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}
    service_bus = host["extensions"]["serviceBus"]
    assert service_bus["autoCompleteMessages"] is True
    assert 1 <= service_bus["maxConcurrentCalls"] <= 16
    assert service_bus["prefetchCount"] == 0
    # A page may take 45 s at Nivoda plus its upsert; the lock must outlive the slowest the timeout allows.
    assert _seconds(service_bus["maxAutoLockRenewalDuration"]) >= _seconds(host["functionTimeout"]) >= 120
    assert host["extensions"]["durableTask"]["hubName"] == "%OPUS_TASK_HUB%"
    # A retried run reuses its run id while its first orchestration may still wait (for the partitions whose
    # messages the failure dropped, until its deadline): the extension's default refuses a running instance.
    assert host["extensions"]["durableTask"]["overridableExistingInstanceStates"] == "AnyState"
    assert host["extensions"]["http"]["routePrefix"] == ""
    sampling = host["logging"]["applicationInsights"]["samplingSettings"]
    assert sampling["isEnabled"] is True
    assert "Exception" in sampling["excludedTypes"].split(";")


def test_the_example_local_settings_name_every_setting_the_app_reads() -> None:
    example = _json("local.settings.example.json")
    assert example["IsEncrypted"] is False
    values = example["Values"]
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["OPUS_SCHEDULE"] == "0 0 2 * * *"
    assert values["OPUS_HOUSEKEEPING_SCHEDULE"] == "0 */5 * * * *"
    read_by_settings = {_environment_name(f) for f in Settings.model_fields}
    assert set(LEFT_UNSET) <= read_by_settings, "each exemption is a real setting"
    missing = read_by_settings - set(LEFT_UNSET) - set(values)
    assert missing == set()
    unknown = set(values) - read_by_settings - HOST_SETTINGS
    assert unknown == set(), "a value nothing reads"
    assert not set(LEFT_UNSET) & set(values)


def test_the_example_local_settings_load(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    for name, value in _json("local.settings.example.json")["Values"].items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.configured_database_url == "postgresql://postgres@127.0.0.1:5432/opus"
    assert settings.azure_storage_connection is not None
    assert settings.azure_storage_connection.get_secret_value() == "UseDevelopmentStorage=true"
    assert settings.watermark_container == "watermarks"


def test_the_example_holds_placeholders_not_secrets() -> None:
    values = _json("local.settings.example.json")["Values"]
    for name in ("NIVODA_PASSWORD", "RESEND_API_KEY", "DATABASE_PASSWORD", "APPLICATIONINSIGHTS_CONNECTION_STRING"):
        assert values[name] == "" or values[name].startswith("<"), name
    assert "SharedAccessKey=<key>" in values["ServiceBusConnection"]
    assert all(secret.startswith("<") for secret in json.loads(values["HMAC_SECRETS"]).values())


def test_funcignore_leaves_out_what_the_app_does_not_run() -> None:
    ignored = set(_requirement_lines((ROOT / ".funcignore").read_text()))
    wanted = {"tests/", "bench/", ".state/", ".venv/", "venv/", "node_modules/", "__pycache__/", ".mypy_cache/",
              ".ruff_cache/", ".pytest_cache/", "infra/", "docs/", "local.settings.json"}
    assert wanted <= ignored
    assert not {"opus/", "function_app.py", "host.json", "requirements.txt"} & ignored


def _seconds(timespan: str) -> int:
    hours, minutes, seconds = (int(part) for part in timespan.split(":"))
    return hours * 3600 + minutes * 60 + seconds


def test_the_package_ships_the_feeds_file_the_app_settings_name() -> None:
    from opus.feeds.catalog import load_feeds

    example = json.loads((ROOT / "local.settings.example.json").read_text(encoding="utf-8"))["Values"]
    path = ROOT / example["FEEDS_FILE"]
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".funcignore").read_text(encoding="utf-8").splitlines()
               if line.strip() and not line.startswith("#")}
    assert path.parts[len(ROOT.parts)] not in ignored, ".funcignore must not leave the feeds file out"
    names = [feed.name for feed in load_feeds(path)]
    assert names == ["nivoda-natural", "nivoda-labgrown"]
