"""Counts per price-per-carat bucket -> partitions of the price-per-carat axis for parallel workers.

The axis is whole US dollars per carat, `[AXIS_MIN, AXIS_MAX)`. A stone belongs to the bucket or partition
whose half-open range holds `floor(price / carats)`.

Invariants of `build_partitions` (the property tests check each one):
1. The partitions tile `[AXIS_MIN, AXIS_MAX)`: the first starts at AXIS_MIN, the last ends at AXIS_MAX, each
   starts where the previous one ends, and every one is non-empty (`ppc_from < ppc_to`). So every stone is in
   exactly one partition and nothing is fetched twice.
2. Bounds are bucket boundaries, hence integers: a partition's estimate is an exact sum of bucket counts,
   and the estimates add up to the buckets' total.
3. `1 <= len(partitions) <= k`, where `k = max(1, min(max_workers, total // min_records_per_worker))`.
   Fewer than `k` only when the buckets are too coarse to give `k` shares that each reach the minimum.
4. With two or more partitions, each estimate is at least `min_records_per_worker`: a worker is worth its
   start-up cost. A single partition holds everything, however little.
5. Balance: no estimate exceeds `total / len(partitions) + largest bucket count`. A bucket is never split,
   so a bucket denser than a share may end up (nearly) alone in its partition; with fine buckets the shares
   are even.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from opus.domain.models import Partition

AXIS_MIN: Final = 0
# Exclusive. The 32-bit signed ceiling: every real stone's price per carat is far below it, and it still fits
# the `integer` columns of `partition_progress`.
AXIS_MAX: Final = 2_147_483_647


@dataclass(frozen=True, slots=True)
class Bucket:
    """How many stones have a price per carat in `[ppc_from, ppc_to)`."""

    ppc_from: int
    ppc_to: int
    count: int


def validate_buckets(buckets: Sequence[Bucket]) -> None:
    """Raise ValueError unless the buckets are sorted, contiguous and tile `[AXIS_MIN, AXIS_MAX)` exactly."""
    if not buckets:
        raise ValueError("no buckets: they must tile the whole price-per-carat axis")
    if buckets[0].ppc_from != AXIS_MIN:
        raise ValueError(f"the first bucket must start at {AXIS_MIN}, not {buckets[0].ppc_from}")
    if buckets[-1].ppc_to != AXIS_MAX:
        raise ValueError(f"the last bucket must end at {AXIS_MAX}, not {buckets[-1].ppc_to}")
    previous_to = AXIS_MIN
    for b in buckets:
        if not all(type(v) is int for v in (b.ppc_from, b.ppc_to, b.count)):
            raise ValueError(f"bucket bounds and counts must be integers: {b!r}")
        if b.ppc_from != previous_to:
            kind = "gap" if b.ppc_from > previous_to else "overlap"
            raise ValueError(f"{kind} before bucket {b!r}: the previous bucket ends at {previous_to}")
        if b.ppc_from >= b.ppc_to:
            raise ValueError(f"empty or reversed bucket {b!r}")
        if b.count < 0:
            raise ValueError(f"negative count in bucket {b!r}")
        previous_to = b.ppc_to


def partition_count(total: int, *, max_workers: int, min_records_per_worker: int) -> int:
    """The number of partitions aimed for: as many workers as allowed, each with at least the minimum."""
    return max(1, min(max_workers, total // min_records_per_worker))


def build_partitions(
    buckets: Sequence[Bucket], *, max_workers: int, min_records_per_worker: int
) -> list[Partition]:
    """Cut the axis into balanced partitions on bucket boundaries; the module docstring lists invariants."""
    if max_workers < 1:
        raise ValueError(f"max_workers must be at least 1, not {max_workers}")
    if min_records_per_worker < 1:
        raise ValueError(f"min_records_per_worker must be at least 1, not {min_records_per_worker}")
    validate_buckets(buckets)
    total = sum(b.count for b in buckets)
    k = partition_count(total, max_workers=max_workers, min_records_per_worker=min_records_per_worker)
    # Coarse buckets can make k shares impossible (the last share comes out short); then try one fewer.
    # k == 1 always succeeds, so the loop ends.
    for parts in range(k, 0, -1):
        groups = _cut(buckets, parts, min_records_per_worker)
        if groups is not None:
            return _to_partitions(groups)
    raise AssertionError("unreachable: one partition always fits")  # pragma: no cover


def _cut(buckets: Sequence[Bucket], parts: int, minimum: int) -> list[list[Bucket]] | None:
    """Greedy cumulative cut into at most `parts` groups, each reaching the minimum; None if impossible.

    A group closes as soon as it reaches the fair share of what remains (never less than the minimum). The
    fair share is recomputed after each cut so that one group's overshoot is taken from the later shares
    instead of piling up in the last one.
    """
    remaining = sum(b.count for b in buckets)
    groups: list[list[Bucket]] = []
    current: list[Bucket] = []
    current_count = 0
    for b in buckets:
        current.append(b)
        current_count += b.count
        groups_left = parts - len(groups)
        if groups_left > 1 and current_count >= max(minimum, remaining / groups_left):
            groups.append(current)
            remaining -= current_count
            current, current_count = [], 0
    if current:
        groups.append(current)
    last_count = sum(b.count for b in groups[-1])
    if len(groups) > 1 and last_count < minimum:
        return None
    return groups


def _to_partitions(groups: list[list[Bucket]]) -> list[Partition]:
    return [
        Partition(
            index=i,
            ppc_from=group[0].ppc_from,
            ppc_to=group[-1].ppc_to,
            estimated=sum(b.count for b in group),
        )
        for i, group in enumerate(groups)
    ]


def partition_of(ppc: int, partitions: Sequence[Partition]) -> Partition:
    """The partition holding a price per carat (partitions sorted and tiling, as `build_partitions` gives)."""
    if not partitions or not partitions[0].ppc_from <= ppc < partitions[-1].ppc_to:
        raise ValueError(f"price per carat {ppc} is outside the partitioned axis")
    i = bisect.bisect_right([p.ppc_from for p in partitions], ppc) - 1
    found = partitions[i]
    if not found.ppc_from <= ppc < found.ppc_to:
        raise ValueError(f"partitions do not tile the axis around {ppc}")
    return found
