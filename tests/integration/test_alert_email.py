"""Alerts are recorded and, when Resend is configured, e-mailed; a failed delivery never fails the caller.

The mail service is a boundary we do not own: a recording HTTP server on loopback stands in for it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from opus.config import load_settings
from opus.db.pool import Database
from opus.local.runtime import LocalRuntime


class MailServer(ThreadingHTTPServer):
    status = 200
    received: list[tuple[dict[str, str], dict[str, Any]]]


class Handler(BaseHTTPRequestHandler):
    server: MailServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.received.append((dict(self.headers), body))
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"id": "email-1"}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def mail() -> Iterator[MailServer]:
    server = MailServer(("127.0.0.1", 0), Handler)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def runtime(db: Database, url: str, mail: MailServer) -> LocalRuntime:
    settings = load_settings(
        database_url=url, resend_api_key="re_test_key", alert_email_to="ops@example.com, cto@example.com",
        alert_email_from="opus@example.com", resend_endpoint=f"http://127.0.0.1:{mail.server_port}/emails",
    )
    return LocalRuntime(settings, db=db)


def delivered(db: Database) -> list[Any]:
    with db.connection() as conn:
        return [r["delivered_at"] for r in conn.execute("SELECT delivered_at FROM alerts ORDER BY id")]


def test_an_alert_is_recorded_and_mailed(db: Database, database_url: str, mail: MailServer) -> None:
    with runtime(db, database_url, mail) as rt:
        rt.deps.alerts.raise_alert("run_failed", "Run r1 failed: feed down", run_id=None)
    [(headers, body)] = mail.received
    assert headers["Authorization"] == "Bearer re_test_key"
    assert body == {"from": "opus@example.com", "to": ["ops@example.com", "cto@example.com"],
                    "subject": "[Opus error] run_failed", "text": "Run r1 failed: feed down"}
    [when] = delivered(db)
    assert when is not None


def test_a_failed_delivery_is_recorded_as_undelivered(db: Database, database_url: str, mail: MailServer) -> None:
    mail.status = 503
    with runtime(db, database_url, mail) as rt:
        rt.deps.alerts.raise_alert("run_failed", "Run r2 failed")
    assert len(mail.received) == 1
    assert delivered(db) == [None]
