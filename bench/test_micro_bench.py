"""Micro-benchmarks (pytest-benchmark) of the per-record CPU work, on one 50-item page of sandbox items.

    .venv/bin/pytest bench/test_micro_bench.py --benchmark-only -p no:cacheprovider \
        --benchmark-storage=bench/.benchmarks

Not part of the test suite (pytest's testpaths is tests/), but tests/integration/test_bench_smoke.py runs each case
once with `--benchmark-disable`; nothing here asserts a time. The storage option keeps pytest-benchmark's (empty
unless saving) folder inside bench/.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bench.common import sandbox_items
from bench.mapping import RULES, RUN_ID, map_all
from bench.pricing import LinearPricingEngine, make_rules, make_stones
from opus.domain.models import Diamond
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


@pytest.fixture(scope="module")
def priced_stones() -> list[Diamond]:
    return make_stones(2_000)


@pytest.mark.parametrize("engine_kind", ["indexed", "linear"])
def test_price_50_rules(benchmark: Any, priced_stones: list[Diamond], engine_kind: str) -> None:
    # bench/pricing.py's rule set and stones; "linear" is the engine before the candidate index.
    rules = make_rules(50)
    engine = PricingEngine(rules) if engine_kind == "indexed" else LinearPricingEngine(rules)
    benchmark(lambda: [engine.price(d) for d in priced_stones])
