"""Counts as unreliable as production's (pitfalls 3 and 4), and as repeatable as the seed.

A stone is "not counted" by a query when a hash of (seed, normalised query, stone id) falls below the
query's undercount rate, so the same query always reports the same number and a different bucket leaves
out different stones. Only counts lie: every stone is still returned by paging, so a range keeps
returning rows past its count.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

DOLLAR_VALUE_UNDERCOUNT = 0.02
DOLLAR_PER_CARAT_UNDERCOUNT = 0.0015
_SCALE = 1 << 64
_MIX = 0x9E3779B97F4A7C15  # odd 64-bit multiplier (golden ratio): spreads nearby keys apart
_MASK = _SCALE - 1


def undercount_rate(query: Mapping[str, Any], count_noise: bool, rows_past_count: float) -> float:
    """The fraction of matching stones a count leaves out."""
    rate = 0.0
    if count_noise:
        if query.get("dollar_value") is not None:
            rate = DOLLAR_VALUE_UNDERCOUNT
        elif query.get("dollar_per_carat") is not None:
            rate = DOLLAR_PER_CARAT_UNDERCOUNT
    return min(1.0, rate + rows_past_count)


def _normalised(query: Mapping[str, Any]) -> str:
    """Equal filters give equal text: unset filters dropped, keys sorted."""
    return json.dumps({k: v for k, v in query.items() if v is not None}, sort_keys=True, default=str)


def _u64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def stone_key(stone_id: str) -> int:
    return _u64(stone_id)


def reported_count(keys: Iterable[int], query: Mapping[str, Any], seed: int, rate: float) -> int:
    """How many of the stones with these keys the count reports."""
    if rate <= 0:
        return sum(1 for _ in keys)
    salt = _u64(f"{seed}:{_normalised(query)}")
    threshold = int(rate * _SCALE)
    return sum(1 for k in keys if (((k ^ salt) * _MIX) & _MASK) >= threshold)
