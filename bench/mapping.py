"""Mapping and pricing throughput on raw items fetched from the Nivoda sandbox through the Nivoda client.

    .venv/bin/python -m bench.mapping [--items 5000] [--repeats 7]

The items are fetched once (that time is reported apart), then mapped again and again in this process: the
figure is pure CPU in one thread, the per-record cost the consolidator pays before it touches the database.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from bench.common import DEFAULT_SERVER, base_parser, log, report, sandbox_items, summarize, time_repeated
from opus.domain.mapping import MappingError, map_nivoda_item
from opus.domain.models import Diamond, PricingRule
from opus.domain.pricing import DEFAULT_RULE, PricingEngine
from opus.pipeline.diamond_rows import to_staging_row
from opus.pipeline.raw_store import payload_hash

RUN_ID = "00000000-0000-0000-0000-000000000001"

# A realistic rule set: three specific rules tried before the seeded catch-all (as in the end-to-end tests).
RULES = [
    PricingRule(id=1, priority=10, markup_ratio=Decimal("1.45"), lab_grown=True, shapes=frozenset({"ROUND"})),
    PricingRule(id=2, priority=20, markup_ratio=Decimal("1.60"), lab_grown=True),
    PricingRule(id=3, priority=30, markup_ratio=Decimal("1.10"), lab_grown=False, carat_min=Decimal("2.00")),
    DEFAULT_RULE,
]


def map_all(items: list[dict[str, Any]]) -> list[Diamond]:
    out = []
    for item in items:
        mapped = map_nivoda_item(item)
        if isinstance(mapped, MappingError):
            raise RuntimeError(f"a sandbox item did not map: {mapped}")
        out.append(mapped)
    return out


def measure(count: int, repeats: int) -> dict[str, Any]:
    log(f"fetching {count} items from a sandbox through the Nivoda client")
    with sandbox_items(count) as fetched:
        items = fetched.items
    engine = PricingEngine(RULES)
    diamonds = map_all(items)
    n = len(items)

    def map_and_price() -> None:
        for d in map_all(items):
            engine.price(d)

    def consolidator_cpu() -> None:
        # Everything the consolidator does per row in Python: map, price, content hash, COPY tuple.
        for d in map_all(items):
            to_staging_row(d, engine, RUN_ID)

    cases: dict[str, Callable[[], object]] = {
        "map": lambda: map_all(items),
        "price (already mapped)": lambda: [engine.price(d) for d in diamonds],
        "map + price": map_and_price,
        CONSOLIDATOR_CPU: consolidator_cpu,
        "payload hash (store_page, per item)": lambda: [payload_hash(i) for i in items],
    }
    figures: dict[str, Any] = {
        "items": n, "fetch_pages": fetched.pages, "fetch_seconds": round(fetched.seconds, 2),
        "fetch_ms_per_page": round(fetched.ms_per_page, 1), "cases": {},
    }
    for name, fn in cases.items():
        log(f"timing {name}")
        fn()  # warm-up
        seconds = summarize(time_repeated(fn, repeats))
        figures["cases"][name] = {
            "records_per_s_median": round(n / seconds["median"]),
            "records_per_s_best": round(n / seconds["min"]),
            "us_per_record_median": round(1e6 * seconds["median"] / n, 1),
            "repeats": repeats,
        }
    return figures


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    report("mapping", measure(args.items, args.repeats), args.json_out)


# The interface of bench/run_all.py (bench/README.md).
SMOKE_SCALE: dict[str, int] = {"items": 100, "repeats": 1}
FULL_SCALE: dict[str, int] = {"items": 5_000, "repeats": 7}
CONSOLIDATOR_CPU = "map + price + staging row (content hash)"


def run(scale: dict[str, int], server: str = DEFAULT_SERVER) -> dict[str, Any]:
    """Pure CPU in one thread: `server` is not used."""
    figures = measure(scale["items"], scale["repeats"])
    mapped = figures["cases"]["map"]["records_per_s_median"]
    return {
        "key": "mapping", "title": "Mapping and pricing, one thread", "command": ".venv/bin/python -m bench.mapping",
        "scale": dict(scale),
        "figures": [
            {"name": f"{name}, median of {case['repeats']}", "value": case["records_per_s_median"],
             "unit": "records/s", "higher_is_better": True,
             **({"baseline": mapped, "baseline_name": "map alone"} if name != "map" else {}),
             "limit": "Python per record in one interpreter: building the Diamond, Decimal arithmetic"}
            for name, case in figures["cases"].items()
        ],
        "notes": ["The consolidator's Python work per row before it touches the database is the "
                  f"`{CONSOLIDATOR_CPU}` case; raw JSON parsing is left out (the items are dicts already)."],
        "details": figures,
    }


if __name__ == "__main__":
    main()
