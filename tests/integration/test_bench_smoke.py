"""Every benchmark of bench/ runs at its tiny SMOKE_SCALE and returns figures the runner can write.

Nothing here asserts a time: the point is that `make bench` keeps working as the code under it changes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from bench.results import render_section
from bench.run_all import benchmark_names, run_benchmark

ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENT = {"source": "test", "date": "today", "load_before": "0 0 0", "load_after": "0 0 0"}


@pytest.fixture(scope="module")
def server(database_url: str) -> str:
    """The test session's PostgreSQL server; each benchmark makes (and drops) its own scratch database on it."""
    return urlunsplit(urlsplit(database_url)._replace(path="/postgres"))


def test_the_runner_finds_the_benchmarks() -> None:
    assert {"pricing", "consolidation", "api_search"} <= set(benchmark_names())


@pytest.mark.parametrize("name", benchmark_names())
def test_benchmark_runs_at_smoke_scale(name: str, server: str) -> None:
    result = run_benchmark(name, smoke=True, server=server)
    assert result["key"] == name
    assert result["figures"]
    for figure in result["figures"]:
        assert isinstance(figure["value"], int | float)
        assert figure["unit"]
    section = render_section(result, ENVIRONMENT)
    assert all(f["name"] in section for f in result["figures"])


def test_the_runner_runs_a_benchmark_in_a_child_process(server: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.run_all", "--smoke", "--only", "pricing", "--no-write", "--server", server],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "<!-- bench:run begin -->" in done.stdout
    assert "<!-- bench:pricing begin -->" in done.stdout
    assert "PostgreSQL 15" in done.stdout


def test_the_profiler_runs_on_a_few_items(server: str, tmp_path: Path) -> None:
    # Not a benchmark (no figures for RESULTS.md), but a tool of the same kind: it must keep running too.
    out = tmp_path / "profile.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.profile_pipeline", "--items", "200", "--top", "3", "--server", server,
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.stat().st_size > 0


def test_the_micro_benchmarks_run_once_each() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "bench/test_micro_bench.py", "--benchmark-disable", "-q",
         "-p", "no:cacheprovider", "--benchmark-storage=bench/.benchmarks"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert "6 passed" in done.stdout
