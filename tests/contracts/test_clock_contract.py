"""The Clock contract, for the steppable fake and the system clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from opus.adapters.postgres_state import SystemClock
from opus.ports import Clock
from opus.testing.fakes import SteppableClock


@pytest.fixture(params=["steppable", "system"])
def clock(request: pytest.FixtureRequest) -> Clock:
    return SteppableClock() if request.param == "steppable" else SystemClock()


def test_now_is_timezone_aware_utc(clock: Clock) -> None:
    now = clock.now()
    assert now.utcoffset() == timedelta(0)


def test_now_never_goes_back(clock: Clock) -> None:
    readings = [clock.now() for _ in range(1000)]
    assert readings == sorted(readings)
