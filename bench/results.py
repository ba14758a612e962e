"""What a benchmark returns to the runner, and how `bench/RESULTS.md` is written from it.

A benchmark module's `run(scale)` returns a `Result`: plain, JSON-able dicts, so that the runner can take them
from a child process. `bench/README.md` describes the interface; `render_section` turns one result into its
section of RESULTS.md, and `merge_sections` puts the sections into the file: a benchmark's section replaces the
one it wrote last time, sections of benchmarks that did not run are kept as they are, and the text outside the
markers (the introduction, hand-written sections) is never touched.
"""

from __future__ import annotations

import re
from typing import Any, NotRequired, TypedDict


class Figure(TypedDict):
    """One measured figure, and what it is judged against."""

    name: str  # what was measured, e.g. "PricingEngine.price, 50 rules"
    value: float
    unit: str  # e.g. "diamonds/s", "ms"
    higher_is_better: bool
    target: NotRequired[float | None]  # the figure the issue asks for; None: no target, the figure is informative
    baseline: NotRequired[float | None]  # the same work done the old or the simplest way, measured in the same run
    baseline_name: NotRequired[str]  # what the baseline is, e.g. "linear engine"
    limit: NotRequired[str]  # what holds the figure back (the cause, not the symptom)


class Result(TypedDict):
    key: str  # the module's name: one section of RESULTS.md per key
    title: str
    command: str  # how to run it alone, from the repository root
    scale: dict[str, Any]
    figures: list[Figure]
    notes: NotRequired[list[str]]  # Markdown paragraphs under the table
    details: NotRequired[dict[str, Any]]  # everything else the benchmark measured (kept in the JSON only)


BEGIN = "<!-- bench:{key} begin -->"
END = "<!-- bench:{key} end -->"
_BLOCK = re.compile(r"<!-- bench:(?P<key>[\w-]+) begin -->\n.*?<!-- bench:(?P=key) end -->\n?", re.DOTALL)
RUN_KEY = "run"  # the block describing the last `make bench`: machine, load, summary


def fmt(value: float | None) -> str:
    """A figure as a reader wants it: thousands separated, three significant digits below 100."""
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def ratio(figure: Figure) -> float | None:
    """How many times better than its baseline (>1 is better, whichever way the unit points)."""
    baseline = figure.get("baseline")
    if not baseline or not figure["value"]:
        return None
    return figure["value"] / baseline if figure["higher_is_better"] else baseline / figure["value"]


def margin(figure: Figure) -> float | None:
    """How far past its target, as a fraction (0.25: 25 % better than the target; negative: missed)."""
    target = figure.get("target")
    if not target or not figure["value"]:
        return None
    return (figure["value"] / target if figure["higher_is_better"] else target / figure["value"]) - 1


def verdict(figure: Figure) -> str:
    m = margin(figure)
    if m is None:
        return "no target"
    return f"**met**, by {100 * m:.0f} %" if m >= 0 else f"**missed**, by {-100 * m:.0f} %"


def figure_rows(figures: list[Figure]) -> list[str]:
    rows = ["| figure | value | baseline (same run) | × baseline | target | verdict | what limits it |",
            "|---|---|---|---|---|---|---|"]
    for f in figures:
        baseline = f.get("baseline")
        base = f"{fmt(baseline)} ({f.get('baseline_name', 'baseline')})" if baseline else "—"
        r = ratio(f)
        rows.append(
            f"| {f['name']} | **{fmt(f['value'])}** {f['unit']} | {base} | {f'{r:.2f}×' if r else '—'} "
            f"| {fmt(f.get('target'))} | {verdict(f)} | {f.get('limit', '')} |"
        )
    return rows


def render_section(result: Result, environment: dict[str, Any]) -> str:
    """The section of RESULTS.md for one benchmark run, between its markers."""
    scale = ", ".join(f"{k} {fmt(v) if isinstance(v, int | float) else v}" for k, v in result["scale"].items())
    lines = [
        BEGIN.format(key=result["key"]),
        f"## {result['title']}",
        "",
        f"`{result['command']}` at {environment['source']}, {environment['date']}; scale: {scale}; load "
        f"{environment.get('load_before', '?')} before, {environment.get('load_after', '?')} after.",
        "",
        *figure_rows(result["figures"]),
    ]
    for note in result.get("notes", []):
        lines += ["", note]
    lines.append(END.format(key=result["key"]))
    return "\n".join(lines) + "\n"


def render_failure(key: str, command: str, error: str, environment: dict[str, Any]) -> str:
    return "\n".join([
        BEGIN.format(key=key), f"## {key}", "",
        f"`{command}` **failed** at {environment['source']}, {environment['date']}:", "", "```", error.strip()[-2000:],
        "```", END.format(key=key),
    ]) + "\n"


def merge_sections(text: str, sections: dict[str, str]) -> str:
    """`text` with each block in `sections` replaced, or inserted after the last block if it is new.

    The run block (RUN_KEY) goes first among the blocks; new benchmark sections are appended in the order given.
    """
    pending = dict(sections)

    def replace(match: re.Match[str]) -> str:
        return pending.pop(match.group("key"), match.group(0))

    merged = _BLOCK.sub(replace, text)
    if not pending:
        return merged
    run_block = pending.pop(RUN_KEY, "")
    blocks = list(_BLOCK.finditer(merged))
    if blocks:
        at = blocks[-1].end()
        merged = merged[:at] + "".join(f"\n{s}" for s in pending.values()) + merged[at:]
        if run_block:
            first = blocks[0].start()
            merged = merged[:first] + run_block + "\n" + merged[first:]
        return merged
    tail = "".join(f"\n{s}" for s in (run_block, *pending.values()) if s)
    return merged.rstrip("\n") + "\n" + tail


def section_keys(text: str) -> list[str]:
    return [m.group("key") for m in _BLOCK.finditer(text)]
