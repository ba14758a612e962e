"""The adaptive density scan against an exact count function over synthetic price-per-carat values."""

from __future__ import annotations

import bisect
import itertools
import random
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opus.domain.heatmap import AXIS_MAX, AXIS_MIN, Bucket, build_partitions
from opus.pipeline.density import (
    DEFAULT_EDGES,
    DensityScan,
    DensityScanTooLarge,
    scan_density,
    target_bucket_for,
)


class ExactCount:
    """count(lo, hi) over a fixed list of prices per carat, recording how many calls run at once."""

    def __init__(self, ppcs: list[int], delay_s: float = 0.0) -> None:
        self.sorted = sorted(ppcs)
        self.delay_s = delay_s
        self.calls: list[tuple[int, int]] = []
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def __call__(self, lo: int, hi: int) -> int:
        with self._lock:
            self.calls.append((lo, hi))
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            if self.delay_s:
                time.sleep(self.delay_s)
            return bisect.bisect_left(self.sorted, hi) - bisect.bisect_left(self.sorted, lo)
        finally:
            with self._lock:
                self.running -= 1


def realistic_ppcs(n: int, seed: int = 7) -> list[int]:
    """Most stones between 1,000 and 8,000 $/ct, a thin tail of expensive ones, a few absurd outliers."""
    rng = random.Random(seed)
    values = [int(rng.lognormvariate(8.2, 0.6)) for _ in range(n)]
    values += [rng.randrange(50_000, 2_000_000) for _ in range(n // 200)]
    values += [AXIS_MAX - 1, 0]
    return values


def assert_valid_scan(scan: DensityScan, ppcs: list[int], target: int) -> None:
    buckets = scan.buckets
    assert buckets[0].ppc_from == AXIS_MIN
    assert buckets[-1].ppc_to == AXIS_MAX
    for left, right in itertools.pairwise(buckets):
        assert left.ppc_to == right.ppc_from
    for b in buckets:
        assert b.ppc_from < b.ppc_to
        assert b.count <= target or b.ppc_to - b.ppc_from == 1
    assert sum(b.count for b in buckets) == len(ppcs) == scan.total


def test_a_realistic_density_is_scanned_fine_where_dense_and_coarse_where_sparse() -> None:
    ppcs = realistic_ppcs(50_000)
    count = ExactCount(ppcs)
    target = target_bucket_for(2_000)
    scan = scan_density(count, target_bucket=target)
    assert_valid_scan(scan, ppcs, target)
    assert scan.calls == len(count.calls)
    assert scan.calls < 2_000, "a few hundred calls, not one per dollar"

    def width_at(ppc: int) -> int:
        [b] = [b for b in scan.buckets if b.ppc_from <= ppc < b.ppc_to]
        return b.ppc_to - b.ppc_from

    assert width_at(3_500) < 200
    assert width_at(1_000_000) > 100_000
    assert width_at(3_500) * 100 < width_at(20_000)


def test_a_pile_of_identical_prices_stops_at_one_dollar_wide() -> None:
    ppcs = [4_321] * 500 + list(range(0, 10_000, 7))
    count = ExactCount(ppcs)
    scan = scan_density(count, target_bucket=50)
    assert_valid_scan(scan, ppcs, 50)
    assert Bucket(4_321, 4_322, 500 + (4_321 % 7 == 0)) in scan.buckets


def test_no_stones_takes_one_call_per_initial_bucket() -> None:
    count = ExactCount([])
    scan = scan_density(count, target_bucket=10)
    assert scan.calls == len(DEFAULT_EDGES) - 1
    assert [(b.ppc_from, b.ppc_to) for b in scan.buckets] == list(itertools.pairwise(DEFAULT_EDGES))


def test_counts_run_in_parallel_but_no_more_than_asked() -> None:
    count = ExactCount(realistic_ppcs(5_000), delay_s=0.01)
    scan_density(count, target_bucket=100, parallelism=3)
    assert count.most_at_once == 3
    serial = ExactCount(realistic_ppcs(500))
    scan_density(serial, target_bucket=100, parallelism=1)
    assert serial.most_at_once == 1


def test_the_buckets_feed_balanced_partitions() -> None:
    ppcs = realistic_ppcs(40_000)
    min_records = 2_000
    scan = scan_density(ExactCount(ppcs), target_bucket=target_bucket_for(min_records))
    parts = build_partitions(scan.buckets, max_workers=16, min_records_per_worker=min_records)
    assert len(parts) == 16
    share = len(ppcs) / 16
    assert max(p.estimated for p in parts) <= share + min_records / 4


def test_custom_edges_and_non_additive_counts_are_respected() -> None:
    # A feed whose counts of the halves do not add up to the parent's: the halves' own counts are kept.
    def fuzzy(lo: int, hi: int) -> int:
        if lo >= 8_000:
            return 3
        return 100 if hi - lo > 1000 else 3

    scan = scan_density(fuzzy, target_bucket=50, initial_edges=[AXIS_MIN, 4_000, AXIS_MAX])
    assert scan.buckets[1] == Bucket(1000, 2000, 3)
    assert all(b.count == 3 for b in scan.buckets)
    assert all(b.ppc_to - b.ppc_from <= 1000 for b in scan.buckets if b.ppc_from < 8_000)
    assert scan.total == 3 * len(scan.buckets) < 100


def test_a_failing_count_aborts_the_scan() -> None:
    def broken(lo: int, hi: int) -> int:
        if lo >= 5_000:
            raise RuntimeError("feed down")
        return 1

    with pytest.raises(RuntimeError, match="feed down"):
        scan_density(broken, target_bucket=10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target_bucket": 0}, "target_bucket"),
        ({"target_bucket": 1, "parallelism": 0}, "parallelism"),
        ({"target_bucket": 1, "initial_edges": [0, 100]}, "initial edges"),
        ({"target_bucket": 1, "initial_edges": [0, 100, 100, AXIS_MAX]}, "increasing"),
    ],
)
def test_invalid_arguments_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        scan_density(ExactCount([1]), **kwargs)  # type: ignore[arg-type]


def test_the_target_is_a_quarter_of_the_smallest_share() -> None:
    assert target_bucket_for(2_000) == 500
    assert target_bucket_for(2_000, total=1_000_000, max_workers=16) == 15_625
    assert target_bucket_for(2_000, total=10_000, max_workers=16) == 500
    assert target_bucket_for(2) == 1


def test_a_count_that_ignores_its_range_stops_at_the_call_limit() -> None:
    with pytest.raises(DensityScanTooLarge, match="500 count calls"):
        scan_density(lambda lo, hi: 1_000, target_bucket=10, max_calls=500)


def test_a_negative_count_is_rejected() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        scan_density(lambda lo, hi: -1, target_bucket=5)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(AXIS_MIN, 30_000), max_size=2_000),
    st.lists(st.integers(AXIS_MIN, AXIS_MAX - 1), max_size=30),
    st.integers(1, 300),
)
def test_any_density_gives_valid_buckets_with_few_calls(dense: list[int], tail: list[int], target: int) -> None:
    ppcs = dense + tail
    count = ExactCount(ppcs)
    scan = scan_density(count, target_bucket=target, parallelism=2)
    assert_valid_scan(scan, ppcs, target)
    # Buckets at one depth are disjoint, so at most n / (target + 1) of them split, each into two calls; and
    # halving the widest initial bucket reaches one dollar within 31 levels.
    assert scan.calls <= len(DEFAULT_EDGES) - 1 + 2 * 31 * (len(ppcs) // (target + 1))
