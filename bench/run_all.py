"""Run every benchmark of `bench/` and write its section of `bench/RESULTS.md` (what `make bench` does).

    .venv/bin/python -m bench.run_all [--only pricing,consolidation] [--smoke] [--no-write] [--server URL]

A benchmark is any module of `bench/` that has `run`, `SMOKE_SCALE` and `FULL_SCALE` (see bench/README.md).
Each one runs in a child process of its own, one after the other, so that one's threads, memory or crash do
not touch the next. Around the whole set the machine is described (cores, memory, CPU, PostgreSQL) and its
load is taken before and after, with the processes that were busy meanwhile: on a shared machine that is
what says how far a figure can be trusted. Every result is also kept as JSON in `bench/.results/`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import re
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from types import ModuleType
from typing import Any

import bench
from bench import machine
from bench.common import DEFAULT_SERVER, SOURCE_AT_START, log
from bench.results import (
    BEGIN,
    END,
    RUN_KEY,
    Result,
    fmt,
    margin,
    merge_sections,
    ratio,
    render_failure,
    render_section,
    verdict,
)

BENCH_DIR = Path(__file__).parent
RESULTS_MD = BENCH_DIR / "RESULTS.md"
JSON_DIR = BENCH_DIR / ".results"
# Helpers of the benchmarks, and `profile_pipeline`: a profiler that explains figures, with none of its own.
NOT_BENCHMARKS = {"common", "machine", "results", "run_all", "search_data", "profile_pipeline"}
CHILD_TIMEOUT_S = 3600


def benchmark_names(*, following: bool = True) -> list[str]:
    """The modules of bench/ that follow the interface (or, `following=False`, those that do not yet)."""
    names = []
    for info in pkgutil.iter_modules(bench.__path__):
        if info.name in NOT_BENCHMARKS or info.name.startswith("test_"):
            continue
        if is_benchmark(importlib.import_module(f"bench.{info.name}")) is following:
            names.append(info.name)
    return sorted(names)


def is_benchmark(module: ModuleType) -> bool:
    return callable(getattr(module, "run", None)) and all(
        isinstance(getattr(module, name, None), dict) for name in ("SMOKE_SCALE", "FULL_SCALE")
    )


def run_benchmark(name: str, smoke: bool, server: str) -> Result:
    """`bench.<name>.run` at its smoke or full scale, in this process."""
    module = importlib.import_module(f"bench.{name}")
    scale = module.SMOKE_SCALE if smoke else module.FULL_SCALE
    result: Result = module.run(dict(scale), server=server)
    return result


def run_child(name: str, smoke: bool, server: str) -> tuple[Result | None, str, float]:
    """(result or None, error text, wall seconds) of `name` run in a child process."""
    with tempfile.TemporaryDirectory(prefix="opus-bench-") as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, "-m", "bench.run_all", "--child", name, "--out", str(out), "--server", server]
        if smoke:
            command.append("--smoke")
        started = time.perf_counter()
        # The child's progress (stderr) is passed on as it comes; its tail is kept to explain a failure.
        tail: deque[str] = deque(maxlen=40)
        with subprocess.Popen(command, cwd=BENCH_DIR.parent, stdout=subprocess.DEVNULL,  # noqa: S603
                              stderr=subprocess.PIPE, text=True) as child:
            assert child.stderr is not None
            for line in child.stderr:
                sys.stderr.write(line)
                tail.append(line)
            returncode = child.wait(timeout=CHILD_TIMEOUT_S)
        seconds = time.perf_counter() - started
        if returncode == 0 and out.exists():
            return json.loads(out.read_text()), "", seconds
        return None, "".join(tail) or f"exit status {returncode}", seconds


def earlier_rows(current: str, ran: list[str]) -> list[str]:
    """The summary rows of the last run block for benchmarks this run left out, marked as earlier."""
    match = re.search(BEGIN.format(key=RUN_KEY) + r"\n(.*?)" + END.format(key=RUN_KEY), current, re.DOTALL)
    rows = []
    for line in match.group(1).splitlines() if match else []:
        cells = line.split(" | ")
        key = cells[0].removeprefix("| ").split(" (")[0]
        if len(cells) > 1 and key not in ran and key not in ("benchmark", "|---"):
            date = re.search(r"\*\*When:\*\* ([^,]+),", match.group(1)) if match else None
            label = cells[0] if " (" in cells[0] else f"{cells[0]} (run of {date.group(1) if date else 'before'})"
            rows.append(" | ".join([label, *cells[1:]]))
    return rows


def run_block(environment: dict[str, Any], results: dict[str, Result], failed: list[str], earlier: list[str]) -> str:
    """The block at the top of RESULTS.md: the machine, its load, and every target of this run."""
    m = environment["machine"]
    lines = [
        BEGIN.format(key=RUN_KEY),
        "## Last run of the benchmarks",
        "",
        f"**When:** {environment['date']}, {environment['minutes']:.1f} min. **Code:** {environment['source']}. "
        f"**Scale:** {environment['scale']}.",
        f"**Machine:** {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, {m['os']}, Python {m['python']}, "
        f"PostgreSQL {m['postgresql']}.",
        f"**Load** (1, 5, 15 min): {environment['load_before']} before, {environment['load_after']} after. "
        f"Busy other processes (share of one core over 2 s): before: {environment['busy_before']}; "
        f"after: {environment['busy_after']}. On {m['cores']} cores a load above {m['cores']} means the "
        "benchmarks shared the CPU: read a missed target against the baseline ratio, taken in the same run.",
        "",
        "| benchmark | figure | value | × baseline | target | verdict | what limits it |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, result in results.items():
        for f in result["figures"]:
            r = ratio(f)
            limit = f.get("limit", "") if (margin(f) or 0) < 0 or f.get("target") is None else ""
            lines.append(f"| {key} | {f['name']} | **{fmt(f['value'])}** {f['unit']} | "
                         f"{f'{r:.2f}×' if r else '—'} | {fmt(f.get('target'))} | {verdict(f)} | {limit} |")
    lines += [f"| {key} | — | **failed** | — | — | — | see its section |" for key in failed]
    lines += earlier
    others = benchmark_names(following=False)
    if others:
        lines += ["", "Not on the interface yet, so not run (each runs alone, see README.md): "
                  + ", ".join(f"`bench.{name}`" for name in others) + "."]
    lines.append(END.format(key=RUN_KEY))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default="", help="comma-separated benchmark names (default: all)")
    parser.add_argument("--smoke", action="store_true", help="the tiny SMOKE_SCALE of each benchmark")
    parser.add_argument("--no-write", action="store_true", help="print the sections, leave RESULTS.md alone")
    parser.add_argument("--server", default=DEFAULT_SERVER, help="PostgreSQL server for the scratch databases")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = run_benchmark(args.child, args.smoke, args.server)
        Path(args.out).write_text(json.dumps(result, default=str))
        return

    names = [n for n in args.only.split(",") if n] or benchmark_names()
    started = time.perf_counter()
    log(f"benchmarks: {', '.join(names)}; describing the machine")
    environment: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "source": SOURCE_AT_START,
        "scale": "smoke (tiny, figures meaningless)" if args.smoke else "full",
        "machine": machine.describe(args.server), "load_before": machine.load_average(),
        "busy_before": machine.busy_summary(machine.busy_processes()),
    }
    results: dict[str, Result] = {}
    errors: dict[str, str] = {}
    per_benchmark: dict[str, dict[str, Any]] = {}
    for name in names:
        load = machine.load_average()
        log(f"{name}: running (load {load})")
        outcome, error, seconds = run_child(name, args.smoke, args.server)
        per_benchmark[name] = {"load_before": load, "load_after": machine.load_average(), "seconds": seconds}
        if outcome is None:
            log(f"{name}: FAILED after {seconds:.0f} s")
            errors[name] = error
        else:
            log(f"{name}: done in {seconds:.0f} s")
            results[name] = outcome
    environment |= {"load_after": machine.load_average(), "minutes": (time.perf_counter() - started) / 60,
                    "busy_after": machine.busy_summary(machine.busy_processes())}

    current = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Benchmark results\n"
    sections = {RUN_KEY: run_block(environment, results, list(errors), earlier_rows(current, names))}
    for name, result in results.items():
        sections[name] = render_section(result, environment | per_benchmark[name])
    for name, error in errors.items():
        sections[name] = render_failure(name, f".venv/bin/python -m bench.{name}", error, environment)
    JSON_DIR.mkdir(exist_ok=True)
    (JSON_DIR / "last_run.json").write_text(json.dumps(
        {"environment": environment, "per_benchmark": per_benchmark, "results": results, "errors": errors},
        indent=2, default=str))
    if args.no_write:
        print("\n".join(sections.values()))
    else:
        RESULTS_MD.write_text(merge_sections(current, sections))
        log(f"wrote {RESULTS_MD.relative_to(BENCH_DIR.parent)}")
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
