"""The reading of a client's rate from the sandbox's counts: sustained windows even out a stall's bunching,
and a fleet sending twice its limit fails either way."""

from __future__ import annotations

import pytest

from opus.testing.traffic import assert_rate_held, busiest_window


def test_the_busiest_window_sums_consecutive_seconds_with_gaps_as_zero() -> None:
    per_second = {"100": 10, "101": 12, "103": 30, "104": 1}
    assert busiest_window(per_second, 1) == 30
    assert busiest_window(per_second, 2) == 31
    assert busiest_window(per_second, 5) == 53
    assert busiest_window({}, 5) == 0


def test_a_stall_bunching_a_few_requests_into_one_second_passes() -> None:
    per_second = {str(1000 + i): 25 for i in range(10)} | {"1004": 28, "1005": 22}
    assert_rate_held({"per_second": per_second, "max_per_second": 28}, 25)


def test_a_fleet_sending_twice_its_limit_fails() -> None:
    per_second = {str(1000 + i): 50 for i in range(10)}
    with pytest.raises(AssertionError, match="in 5 s"):
        assert_rate_held({"per_second": per_second, "max_per_second": 50}, 25)
    with pytest.raises(AssertionError, match="one sliding second"):
        assert_rate_held({"per_second": {"1": 25, "2": 25}, "max_per_second": 40}, 25)
