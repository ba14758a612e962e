"""The Alerts contract, for the recording fake and PostgreSQL's `alerts` table."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from opus.adapters.postgres_state import PostgresAlerts
from opus.db.pool import Database
from opus.ports import Alerts
from opus.testing.fakes import RaisedAlert, RecordingAlerts


@dataclass
class AlertsUnderTest:
    alerts: Alerts
    recorded: Callable[[], list[RaisedAlert]]


def _postgres(db: Database) -> AlertsUnderTest:
    def recorded() -> list[RaisedAlert]:
        with db.connection() as conn:
            rows = conn.execute(
                "SELECT kind, message, severity, run_id::text AS run_id, details FROM alerts ORDER BY id"
            ).fetchall()
        return [RaisedAlert(**row) for row in rows]

    return AlertsUnderTest(PostgresAlerts(db), recorded)


@pytest.fixture(params=["recording", "postgres"])
def subject(request: pytest.FixtureRequest) -> AlertsUnderTest:
    if request.param == "recording":
        fake = RecordingAlerts()
        return AlertsUnderTest(fake, lambda: fake.raised)
    return _postgres(request.getfixturevalue("db"))


def test_an_alert_is_recorded_with_the_defaults(subject: AlertsUnderTest) -> None:
    subject.alerts.raise_alert("run_failed", "run r1 failed: 2 partitions failed")
    assert subject.recorded() == [
        RaisedAlert("run_failed", "run r1 failed: 2 partitions failed", "error", None, None)
    ]


def test_an_alert_keeps_its_severity_run_and_details(subject: AlertsUnderTest) -> None:
    run_id = str(uuid.uuid4())
    details: dict[str, Any] = {"failed": [1, 4], "reason": "feed 503", "nested": {"ok": False}}
    subject.alerts.raise_alert("run_deadline", "run exceeded its deadline", severity="critical", run_id=run_id,
                               details=details)
    assert subject.recorded() == [RaisedAlert("run_deadline", "run exceeded its deadline", "critical", run_id, details)]


def test_every_alert_is_kept_in_order(subject: AlertsUnderTest) -> None:
    for i, severity in enumerate(["info", "warning", "error", "critical"]):
        subject.alerts.raise_alert(f"kind-{i}", f"message {i}", severity=severity)
    assert [(a.kind, a.severity) for a in subject.recorded()] == [
        ("kind-0", "info"), ("kind-1", "warning"), ("kind-2", "error"), ("kind-3", "critical")
    ]


def test_empty_details_are_no_details(subject: AlertsUnderTest) -> None:
    subject.alerts.raise_alert("k", "m", details={})
    assert subject.recorded()[0].details is None


def test_an_unknown_severity_is_refused(subject: AlertsUnderTest) -> None:
    with pytest.raises(Exception) as caught:  # noqa: PT011 - each sink refuses it in its own words
        subject.alerts.raise_alert("k", "m", severity="catastrophic")
    assert "severity" in str(caught.value)
    assert subject.recorded() == []
