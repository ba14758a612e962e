"""Partitions of the price-per-carat axis: tiling, sizing and balance, by example and by property."""

from __future__ import annotations

import bisect
import itertools
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opus.domain.heatmap import (
    AXIS_MAX,
    AXIS_MIN,
    Bucket,
    build_partitions,
    partition_count,
    partition_of,
)
from opus.domain.models import Partition


def buckets_from_edges(edges: list[int], counts: list[int]) -> list[Bucket]:
    return [Bucket(a, b, n) for (a, b), n in zip(itertools.pairwise(edges), counts, strict=True)]


def bucketize(ppcs: list[int], edges: list[int]) -> list[Bucket]:
    """Count stones per bucket the way the density scan's count function would, exactly."""
    counts = Counter(bisect.bisect_right(edges, p) - 1 for p in ppcs)
    return buckets_from_edges(edges, [counts.get(i, 0) for i in range(len(edges) - 1)])


def assert_tiles(parts: list[Partition]) -> None:
    assert parts[0].ppc_from == AXIS_MIN
    assert parts[-1].ppc_to == AXIS_MAX
    for i, p in enumerate(parts):
        assert p.index == i
        assert type(p.ppc_from) is int
        assert type(p.ppc_to) is int
        assert p.ppc_from < p.ppc_to, "no empty partition"
    for left, right in itertools.pairwise(parts):
        assert left.ppc_to == right.ppc_from, "no gap, no overlap"


# -- examples ------------------------------------------------------------------------------------------------


def test_even_density_splits_into_max_workers_equal_parts() -> None:
    edges = [*range(0, 1001, 100), AXIS_MAX]
    buckets = buckets_from_edges(edges, [100] * 10 + [0])
    parts = build_partitions(buckets, max_workers=5, min_records_per_worker=10)
    assert [p.estimated for p in parts] == [200] * 5
    assert [(p.ppc_from, p.ppc_to) for p in parts][:2] == [(0, 200), (200, 400)]
    assert_tiles(parts)


def test_the_minimum_per_worker_limits_the_number_of_partitions() -> None:
    edges = [*range(0, 1001, 100), AXIS_MAX]
    buckets = buckets_from_edges(edges, [100] * 10 + [0])
    parts = build_partitions(buckets, max_workers=50, min_records_per_worker=300)
    assert len(parts) == 3 == partition_count(1000, max_workers=50, min_records_per_worker=300)
    assert all(p.estimated >= 300 for p in parts)


def test_too_few_stones_give_one_partition_over_the_whole_axis() -> None:
    buckets = [Bucket(0, 1000, 3), Bucket(1000, AXIS_MAX, 1)]
    assert build_partitions(buckets, max_workers=8, min_records_per_worker=100) == [
        Partition(0, AXIS_MIN, AXIS_MAX, 4)
    ]
    empty = [Bucket(AXIS_MIN, AXIS_MAX, 0)]
    assert build_partitions(empty, max_workers=8, min_records_per_worker=1) == [
        Partition(0, AXIS_MIN, AXIS_MAX, 0)
    ]


def test_a_bucket_denser_than_a_share_becomes_its_own_partition() -> None:
    buckets = [Bucket(0, 1000, 10), Bucket(1000, 1001, 1000), Bucket(1001, 5000, 10), Bucket(5000, AXIS_MAX, 10)]
    parts = build_partitions(buckets, max_workers=4, min_records_per_worker=5)
    assert any(p.ppc_from <= 1000 < p.ppc_to and p.estimated >= 1000 for p in parts)
    assert all(p.estimated >= 5 for p in parts)
    assert sum(p.estimated for p in parts) == 1030
    assert_tiles(parts)


def test_coarse_buckets_give_fewer_partitions_rather_than_a_short_one() -> None:
    # k = 2, but no bucket boundary gives two shares of at least 100.
    buckets = [Bucket(0, 10, 60), Bucket(10, 20, 100), Bucket(20, AXIS_MAX, 40)]
    parts = build_partitions(buckets, max_workers=4, min_records_per_worker=100)
    assert parts == [Partition(0, AXIS_MIN, AXIS_MAX, 200)]


def test_partition_of_finds_the_holder_and_rejects_outsiders() -> None:
    parts = [Partition(0, 0, 100, 1), Partition(1, 100, AXIS_MAX, 1)]
    assert partition_of(0, parts).index == 0
    assert partition_of(99, parts).index == 0
    assert partition_of(100, parts).index == 1
    assert partition_of(AXIS_MAX - 1, parts).index == 1
    for outside in (-1, AXIS_MAX):
        with pytest.raises(ValueError, match="outside"):
            partition_of(outside, parts)


@pytest.mark.parametrize(
    ("buckets", "message"),
    [
        ([], "no buckets"),
        ([Bucket(1, AXIS_MAX, 1)], "first bucket"),
        ([Bucket(0, 100, 1)], "last bucket"),
        ([Bucket(0, 100, 1), Bucket(101, AXIS_MAX, 1)], "gap"),
        ([Bucket(0, 100, 1), Bucket(90, AXIS_MAX, 1)], "overlap"),
        ([Bucket(0, 100, 1), Bucket(100, 100, 1), Bucket(100, AXIS_MAX, 1)], "empty or reversed"),
        ([Bucket(0, 100, -1), Bucket(100, AXIS_MAX, 1)], "negative"),
        ([Bucket(100, AXIS_MAX, 1), Bucket(0, 100, 1)], "first bucket"),
        ([Bucket(0, 100, 1), Bucket(100, 50, 1), Bucket(50, AXIS_MAX, 1)], "empty or reversed"),
        ([Bucket(0, 100, 1.5), Bucket(100, AXIS_MAX, 1)], "integers"),  # type: ignore[arg-type]
    ],
)
def test_invalid_buckets_are_rejected(buckets: list[Bucket], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_partitions(buckets, max_workers=4, min_records_per_worker=1)


def test_invalid_sizes_are_rejected() -> None:
    buckets = [Bucket(AXIS_MIN, AXIS_MAX, 10)]
    with pytest.raises(ValueError, match="max_workers"):
        build_partitions(buckets, max_workers=0, min_records_per_worker=1)
    with pytest.raises(ValueError, match="min_records_per_worker"):
        build_partitions(buckets, max_workers=1, min_records_per_worker=0)


# -- properties ------------------------------------------------------------------------------------------------


@st.composite
def edges_strategy(draw: st.DrawFn) -> list[int]:
    inner = draw(st.lists(st.integers(AXIS_MIN + 1, AXIS_MAX - 1), max_size=60, unique=True))
    return [AXIS_MIN, *sorted(inner), AXIS_MAX]


@st.composite
def buckets_strategy(draw: st.DrawFn) -> list[Bucket]:
    edges = draw(edges_strategy())
    counts = draw(st.lists(st.integers(0, 5000), min_size=len(edges) - 1, max_size=len(edges) - 1))
    return buckets_from_edges(edges, counts)


sizes = st.tuples(st.integers(1, 64), st.integers(1, 3000))


@settings(max_examples=400)
@given(buckets_strategy(), sizes)
def test_partitions_satisfy_every_invariant(buckets: list[Bucket], size: tuple[int, int]) -> None:
    max_workers, min_records = size
    parts = build_partitions(buckets, max_workers=max_workers, min_records_per_worker=min_records)
    total = sum(b.count for b in buckets)
    k = partition_count(total, max_workers=max_workers, min_records_per_worker=min_records)
    assert_tiles(parts)
    assert 1 <= len(parts) <= min(k, max_workers)
    assert sum(p.estimated for p in parts) == total
    edges = {b.ppc_from for b in buckets}
    assert all(p.ppc_from in edges for p in parts), "cuts only on bucket boundaries"
    if len(parts) > 1:
        assert all(p.estimated >= min_records for p in parts)
    largest = max(b.count for b in buckets)
    assert max(p.estimated for p in parts) <= total / len(parts) + largest


@settings(max_examples=200)
@given(
    st.lists(st.integers(AXIS_MIN, 60_000), min_size=0, max_size=3000),
    st.lists(st.integers(AXIS_MIN, AXIS_MAX - 1), max_size=20),
    st.integers(1, 40),
    st.integers(1, 200),
)
def test_each_stone_of_a_synthetic_density_falls_in_exactly_one_partition(
    dense: list[int], tail: list[int], max_workers: int, min_records: int
) -> None:
    ppcs = dense + tail
    edges = [*range(AXIS_MIN, 60_001, 250), AXIS_MAX]
    parts = build_partitions(bucketize(ppcs, edges), max_workers=max_workers, min_records_per_worker=min_records)
    holders: Counter[int] = Counter()
    for ppc in ppcs:
        containing = [p for p in parts if p.ppc_from <= ppc < p.ppc_to]
        assert len(containing) == 1
        assert partition_of(ppc, parts) == containing[0]
        holders[containing[0].index] += 1
    assert all(holders[p.index] == p.estimated for p in parts), "estimates are exact counts here"


@given(st.integers(2, 32), st.integers(1, 50))
def test_fine_buckets_give_the_full_number_of_balanced_partitions(max_workers: int, min_records: int) -> None:
    # A scan with target = min / 4 yields buckets no larger than a quarter of the minimum share.
    per_bucket = max(1, min_records // 4)
    n_buckets = max_workers * 40
    edges = [*range(0, n_buckets * 10 + 1, 10), AXIS_MAX]
    buckets = buckets_from_edges(edges, [per_bucket] * n_buckets + [0])
    total = per_bucket * n_buckets
    parts = build_partitions(buckets, max_workers=max_workers, min_records_per_worker=min_records)
    k = partition_count(total, max_workers=max_workers, min_records_per_worker=min_records)
    assert len(parts) == k
    assert max(p.estimated for p in parts) <= total / k + per_bucket
    assert min(p.estimated for p in parts) >= min_records
