"""Micro-benchmarks (pytest-benchmark) of the per-record CPU work, on one 50-item page of sandbox items.

    .venv/bin/pytest bench/test_micro_bench.py --benchmark-only -p no:cacheprovider \
        --benchmark-storage=bench/.benchmarks

Not part of the test suite (pytest's testpaths is tests/); nothing here asserts a time. The storage option keeps
pytest-benchmark's (empty unless saving) folder inside bench/.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bench.common import sandbox_items
from bench.mapping import RULES, RUN_ID, map_all
from opus.domain.pricing import PricingEngine
from opus.pipeline.diamond_rows import to_staging_row
from opus.pipeline.raw_store import payload_hash

Page = list[dict[str, Any]]


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    with sandbox_items(50) as fetched:
        yield fetched.items


@pytest.fixture(scope="module")
def engine() -> PricingEngine:
    return PricingEngine(RULES)


def test_map_page(benchmark: Any, page: Page) -> None:
    benchmark(map_all, page)


def test_map_and_price_page(benchmark: Any, page: Page, engine: PricingEngine) -> None:
    benchmark(lambda: [engine.price(d) for d in map_all(page)])


def test_staging_rows_page(benchmark: Any, page: Page, engine: PricingEngine) -> None:
    benchmark(lambda: [to_staging_row(d, engine, RUN_ID) for d in map_all(page)])


def test_payload_hash_page(benchmark: Any, page: Page) -> None:
    benchmark(lambda: [payload_hash(item) for item in page])
