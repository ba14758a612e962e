"""An `opus serve` API helper process (API_PROCESSES > 1) logs as the CLI does: INFO records, with their extras."""

from __future__ import annotations

import logging
import re

import httpx
import pytest

from opus.config import load_settings
from opus.local.api_processes import api_helpers, listening_socket

pytestmark = pytest.mark.integration


def test_an_api_helper_process_logs_its_info_records_with_their_extras(
    database_url: str, capfd: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)  # as `opus serve --log-level INFO` leaves the main process
    try:
        with listening_socket("127.0.0.1", 0) as sock:
            sock.listen()  # connections wait in the backlog until the helper accepts them
            port = sock.getsockname()[1]
            with api_helpers(load_settings(database_url=database_url), sock, 1):
                # Only the helper accepts on this socket, and it logs before it serves.
                assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=120).status_code == 200
    finally:
        root.setLevel(level)

    err = capfd.readouterr().err
    assert re.search(r" INFO opus\.local\.api_processes: api helper process serving pid=\d+", err), err
