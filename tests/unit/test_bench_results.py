"""The RESULTS.md writer: one section per benchmark, replaced in place, the rest of the file untouched."""

from __future__ import annotations

from bench.results import Figure, margin, merge_sections, ratio, section_keys, verdict
from bench.run_all import earlier_rows


def block(key: str, body: str) -> str:
    return f"<!-- bench:{key} begin -->\n{body}\n<!-- bench:{key} end -->\n"


FILE = "# Benchmark results\n\nintro\n\n" + block("run", "old run") + "\n" + block("pricing", "old pricing") + \
    "\n## Earlier, by hand\n\nkept\n"


def test_a_section_is_replaced_where_it_stands_and_the_rest_is_kept() -> None:
    merged = merge_sections(FILE, {"pricing": block("pricing", "new pricing")})
    assert merged == FILE.replace("old pricing", "new pricing")


def test_a_new_section_goes_after_the_last_section_and_sections_not_run_stay() -> None:
    merged = merge_sections(FILE, {"consolidation": block("consolidation", "fresh"), "run": block("run", "new")})
    assert section_keys(merged) == ["run", "pricing", "consolidation"]
    assert "old pricing" in merged
    assert "new" in merged
    assert "old run" not in merged
    assert merged.endswith("## Earlier, by hand\n\nkept\n")


def test_an_empty_file_gets_the_run_block_first() -> None:
    merged = merge_sections("# Benchmark results\n", {"pricing": block("pricing", "p"), "run": block("run", "r")})
    assert section_keys(merged) == ["run", "pricing"]
    assert merged.startswith("# Benchmark results\n")


def test_merging_twice_gives_the_same_file() -> None:
    sections = {"run": block("run", "r"), "api_search": block("api_search", "a")}
    once = merge_sections(FILE, sections)
    assert merge_sections(once, sections) == once


def figure(value: float, *, higher: bool = True, target: float | None = None, baseline: float | None = None
           ) -> Figure:
    return {"name": "f", "value": value, "unit": "u", "higher_is_better": higher, "target": target,
            "baseline": baseline}


def test_targets_and_baselines_count_the_right_way_for_either_direction() -> None:
    assert margin(figure(450_000, target=300_000)) == 0.5
    assert verdict(figure(450_000, target=300_000)) == "**met**, by 50 %"
    assert verdict(figure(150_000, target=300_000)) == "**missed**, by 50 %"
    assert verdict(figure(4, higher=False, target=5)) == "**met**, by 25 %"
    assert verdict(figure(10, higher=False, target=5)) == "**missed**, by 50 %"
    assert verdict(figure(1)) == "no target"
    assert ratio(figure(300, baseline=100)) == 3
    assert ratio(figure(2, higher=False, baseline=6)) == 3
    assert ratio(figure(2)) is None


def test_a_partial_run_keeps_the_summary_rows_of_the_benchmarks_it_left_out() -> None:
    run = block("run", "**When:** 2026-12-01 09:14 UTC, 10 min.\n\n| benchmark | figure |\n|---|---|\n"
                       "| pricing | engine | **432,573** |\n| api_search | — | **failed** |")
    kept = earlier_rows(run, ["api_search"])
    assert kept == ["| pricing (run of 2026-12-01 09:14 UTC) | engine | **432,573** |"]
    assert earlier_rows(block("run", "\n".join(kept)), ["api_search"]) == kept  # marked once, not twice
