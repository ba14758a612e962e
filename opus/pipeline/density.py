"""The adaptive density scan: how many stones lie in each price-per-carat bucket, fine where stones are dense.

Stones crowd into a few thousand dollars per carat and thin out into a long tail up to the axis ceiling, so
fixed buckets are either too coarse where it matters or far too many. The scan starts from a few coarse edges
and halves every bucket that holds more than `target_bucket` stones, counting both halves, until each bucket
is at most the target or one dollar wide. The cost is about `2 * (dense buckets) * depth` count calls, a few
hundred for a real feed, against the axis's two billion dollars.

Choosing `target_bucket`: the scheduler passes about `min_records_per_worker / 4` (`target_bucket_for`).
Partitions are cut on bucket boundaries only, so a bucket a quarter of the smallest share lets the cut land
within a quarter share of the ideal; finer buckets would buy little balance for many more count calls.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Final

from opus.domain.heatmap import AXIS_MAX, AXIS_MIN, Bucket, validate_buckets
from opus.errors import PermanentError

logger = logging.getLogger(__name__)

# Coarse starting edges: most stones sit below 25,000 $/ct, so the first cut already separates the dense
# region from the tail and the scan splits from there instead of from one axis-wide bucket.
DEFAULT_EDGES: Final[tuple[int, ...]] = (
    AXIS_MIN, 250, 500, 1000, 2000, 3000, 5000, 7500, 10000, 15000, 25000, 50000, 100000, AXIS_MAX,
)

# A real feed needs a few hundred calls. Far more means the counts do not shrink with the range (a feed that
# ignores the price-per-carat filter would split every bucket down to one dollar: billions of calls).
DEFAULT_MAX_CALLS: Final = 20_000

CountFn = Callable[[int, int], int]


class DensityScanTooLarge(PermanentError):
    """The scan needed more count calls than allowed: the counts do not behave like counts of a range."""


@dataclass(frozen=True, slots=True)
class DensityScan:
    """The buckets (sorted, tiling the axis) and how many count calls it took to find them."""

    buckets: list[Bucket]
    calls: int

    @property
    def total(self) -> int:
        return sum(b.count for b in self.buckets)


def target_bucket_for(min_records_per_worker: int, *, total: int = 0, max_workers: int = 0) -> int:
    """The bucket size the scheduler asks for: a quarter of the smallest worker's share (see module doc).

    Given the feed's total and the worker limit, the share may be larger than the minimum (a big feed with
    few workers); a quarter of that share is then enough and saves most of the count calls.
    """
    share = max(min_records_per_worker, total // max_workers if max_workers > 0 else 0)
    return max(1, share // 4)


def scan_density(
    count: CountFn,
    *,
    target_bucket: int,
    parallelism: int = 4,
    initial_edges: Sequence[int] = DEFAULT_EDGES,
    max_calls: int = DEFAULT_MAX_CALLS,
) -> DensityScan:
    """Count stones per bucket, halving any bucket above `target_bucket` until it is small or one dollar wide.

    `count(ppc_from, ppc_to)` returns how many stones have `floor(price per carat)` in `[ppc_from, ppc_to)`.
    It is called from up to `parallelism` threads at once; an exception from it aborts the scan and is raised.
    """
    if target_bucket < 1:
        raise ValueError(f"target_bucket must be at least 1, not {target_bucket}")
    if parallelism < 1:
        raise ValueError(f"parallelism must be at least 1, not {parallelism}")
    ranges = _initial_ranges(initial_edges)
    done: list[Bucket] = []
    calls = 0
    with ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="density") as pool:
        pending: dict[Future[int], tuple[int, int]] = {}

        def submit(lo: int, hi: int) -> None:
            nonlocal calls
            if calls >= max_calls:
                raise DensityScanTooLarge(
                    f"density scan stopped after {calls} count calls; does the count honour its range?"
                )
            calls += 1
            pending[pool.submit(count, lo, hi)] = (lo, hi)

        for lo, hi in ranges:
            submit(lo, hi)
        try:
            # Children are submitted as soon as their parent's count arrives, so one slow call does not hold
            # up the rest of the scan the way a level-by-level sweep would.
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    lo, hi = pending.pop(future)
                    n = _checked(future.result(), lo, hi)
                    if n > target_bucket and hi - lo > 1:
                        mid = lo + (hi - lo) // 2
                        # Count both halves: the feed's counts need not add up exactly to the parent's.
                        submit(lo, mid)
                        submit(mid, hi)
                    else:
                        done.append(Bucket(lo, hi, n))
        finally:
            for future in pending:
                future.cancel()
    done.sort(key=lambda b: b.ppc_from)
    validate_buckets(done)
    logger.info(
        "density scan finished",
        extra={"buckets": len(done), "calls": calls, "stones": sum(b.count for b in done)},
    )
    return DensityScan(done, calls)


def _initial_ranges(edges: Sequence[int]) -> list[tuple[int, int]]:
    if len(edges) < 2 or edges[0] != AXIS_MIN or edges[-1] != AXIS_MAX:
        raise ValueError(f"initial edges must run from {AXIS_MIN} to {AXIS_MAX}")
    if any(type(e) is not int for e in edges):
        raise ValueError("initial edges must be integers")
    if any(a >= b for a, b in itertools.pairwise(edges)):
        raise ValueError("initial edges must be strictly increasing")
    return list(itertools.pairwise(edges))


def _checked(n: int, lo: int, hi: int) -> int:
    if type(n) is not int or n < 0:
        raise ValueError(f"count({lo}, {hi}) returned {n!r}; expected a non-negative integer")
    return n
