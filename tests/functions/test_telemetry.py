"""Telemetry set-up of the Functions app, and the log formatter that keeps each record's `extra`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from azure.identity import ManagedIdentityCredential
from click.testing import CliRunner

from opus.azure import telemetry
from opus.cli import main
from opus.config import load_settings
from opus.logs import ExtraFormatter

CONNECTION = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://example.invalid/"


class RecordingConfigure:
    """Stands in for `configure_azure_monitor`, which would install global exporters."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **options: Any) -> None:
        self.calls.append(options)


@pytest.fixture(autouse=True)
def fresh_telemetry() -> Iterator[None]:
    root = logging.getLogger()
    formatters = [(h, h.formatter) for h in root.handlers]
    yield
    for handler, formatter in formatters:
        handler.setFormatter(formatter)


def record(message: str = "page stored", **extra: Any) -> logging.LogRecord:
    logger = logging.getLogger("opus.pipeline.worker")
    return logger.makeRecord(logger.name, logging.INFO, __file__, 1, message, None, None, extra=extra)


def test_application_insights_gets_the_connection_string_and_only_the_opus_loggers() -> None:
    configure = RecordingConfigure()

    assert telemetry.configure_telemetry(
        load_settings(applicationinsights_connection_string=CONNECTION), configure=configure) is True

    assert configure.calls == [{"connection_string": CONNECTION, "logger_name": "opus"}]


@pytest.mark.parametrize(("authentication", "client_id"), [
    ("Authorization=AAD", None),
    ("Authorization=AAD;ClientId=11111111-2222-3333-4444-555555555555", "11111111-2222-3333-4444-555555555555"),
    (" authorization = aad ; clientid = abc ", "abc"),
])
def test_entra_id_authentication_uses_a_managed_identity(authentication: str, client_id: str | None) -> None:
    configure = RecordingConfigure()

    telemetry.configure_telemetry(load_settings(
        applicationinsights_connection_string=CONNECTION, applicationinsights_authentication_string=authentication,
    ), configure=configure)

    (options,) = configure.calls
    assert isinstance(options["credential"], ManagedIdentityCredential)
    assert telemetry.aad_client_id(authentication) == (True, client_id)


@pytest.mark.parametrize("authentication", [None, "", "Authorization=Key"])
def test_without_aad_no_credential_is_passed(authentication: str | None) -> None:
    configure = RecordingConfigure()

    telemetry.configure_telemetry(load_settings(
        applicationinsights_connection_string=CONNECTION, applicationinsights_authentication_string=authentication,
    ), configure=configure)

    assert "credential" not in configure.calls[0]


def test_without_application_insights_the_log_lines_carry_the_extras() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    configure = RecordingConfigure()
    try:
        assert telemetry.configure_telemetry(load_settings(), configure=configure) is False
        line = handler.format(record(run_id="r1", partition=3))
    finally:
        root.removeHandler(handler)

    assert configure.calls == []
    assert line == "INFO page stored run_id=r1 partition=3"


def test_the_formatter_appends_extras_in_order_and_quotes_what_needs_it() -> None:
    line = ExtraFormatter("%(message)s").format(record(run_id="r1", partition=0, count=50, error="feed said no"))

    assert line == 'page stored run_id=r1 partition=0 count=50 error="feed said no"'


def test_the_formatter_leaves_a_record_without_extras_alone_and_keeps_tracebacks_last() -> None:
    assert ExtraFormatter("%(message)s").format(record()) == "page stored"
    try:
        raise ValueError("boom")
    except ValueError:
        failing = logging.getLogger("opus").makeRecord(
            "opus", logging.ERROR, __file__, 1, "failed", None, __import__("sys").exc_info(), extra={"run_id": "r"})
    lines = ExtraFormatter("%(message)s").format(failing).splitlines()
    assert lines[0] == "failed run_id=r"
    assert lines[-1] == "ValueError: boom"


def test_the_cli_logs_with_the_extras() -> None:
    # `main` sets up logging; a command that logs shows its extras on stderr.
    @main.command("log-probe")
    def log_probe() -> None:
        logging.getLogger("opus.probe").info("probed", extra={"run_id": "r9", "count": 2})

    root = logging.getLogger()
    # As in a fresh process, the root logger has no handler yet (pytest's own are put back afterwards).
    before, level = list(root.handlers), root.level
    for handler in before:
        root.removeHandler(handler)
    try:
        result = CliRunner().invoke(main, ["log-probe"])
    finally:
        main.commands.pop("log-probe")
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in before:
            root.addHandler(handler)
        root.setLevel(level)

    assert result.exit_code == 0, result.output
    assert "probed run_id=r9 count=2" in result.stderr


# Run in a child interpreter: configure_azure_monitor installs process-wide providers and instrumentation.
_EXPORT_PROBE = """
import json, logging, sys
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
try:
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter as Exporter
except ImportError:
    from opentelemetry.sdk._logs.export import InMemoryLogExporter as Exporter
from opus.azure import telemetry
from opus.config import load_settings

exporter = Exporter()
telemetry.configure_telemetry(load_settings(applicationinsights_connection_string=sys.argv[1]),
                              log_record_processors=[SimpleLogRecordProcessor(exporter)])
logging.getLogger("opus.pipeline.worker").info("page stored", extra={
    "run_id": "r1", "partition": 3, "ids": ["a", "b"], "counts": {"rows": 5}, "pages": [{"n": 1}]})
(record,) = [r for r in exporter.get_finished_logs() if r.log_record.body == "page stored"]
print(json.dumps({k: (list(v) if isinstance(v, tuple) else v) for k, v in record.log_record.attributes.items()}))
"""


def test_the_extras_arrive_as_attributes_of_the_exported_record_dicts_as_json() -> None:
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _EXPORT_PROBE, CONNECTION], capture_output=True, text=True,
                          timeout=120, check=False)

    assert done.returncode == 0, done.stderr
    attributes = json.loads(done.stdout.strip().splitlines()[-1])
    assert {k: attributes[k] for k in ("run_id", "partition", "ids", "counts", "pages")} == {
        "run_id": "r1", "partition": 3, "ids": ["a", "b"], "counts": '{"rows": 5}', "pages": '[{"n": 1}]'}
