"""The runaway cap of a partition scales with its estimate unless set outright."""

from __future__ import annotations

from opus.config import load_settings
from opus.pipeline.worker import page_cap


def test_the_default_cap_is_three_times_the_estimated_pages_plus_slack() -> None:
    settings = load_settings(worker_page_size=50)
    assert page_cap(settings, 0) == 100
    assert page_cap(settings, 1) == 103
    assert page_cap(settings, 130_000) == 3 * 2_600 + 100


def test_a_configured_cap_wins() -> None:
    assert page_cap(load_settings(partition_page_cap=7), 1_000_000) == 7
