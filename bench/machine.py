"""The machine the figures were taken on, and how busy it was: the context every figure needs to be read.

Linux only (`/proc`); on anything else the fields read "unknown" and the benchmarks still run.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import psycopg

PROC = Path("/proc")
# A process counts as busy when it used at least this share of one core while we watched.
BUSY_SHARE = 0.10


def cpu_model() -> str:
    try:
        for line in (PROC / "cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float | None:
    try:
        for line in (PROC / "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def postgres_version(server: str) -> str:
    try:
        with psycopg.connect(server, connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "unknown"
    except psycopg.Error as exc:
        return f"unreachable ({type(exc).__name__})"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _cpu_ticks() -> dict[int, tuple[str, int]]:
    """(command name, user + system clock ticks) of every process we may read."""
    out: dict[int, tuple[str, int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone, or not ours to read
        # The command name is in parentheses and may itself hold spaces or parentheses.
        name = stat[stat.index("(") + 1: stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(entry.name)] = (name, int(fields[11]) + int(fields[12]))
    return out


def busy_processes(seconds: float = 2.0) -> list[dict[str, Any]]:
    """Processes other than this one that used at least BUSY_SHARE of a core over `seconds`, busiest first.

    Only the command name is kept (never the command line, which may carry a password).
    """
    if not PROC.is_dir():
        return []
    hz = os.sysconf("SC_CLK_TCK")
    before = _cpu_ticks()
    time.sleep(seconds)
    after = _cpu_ticks()
    ours = os.getpid()
    busy = []
    for pid, (name, ticks) in after.items():
        if pid == ours or pid not in before:
            continue
        share = (ticks - before[pid][1]) / hz / seconds
        if share >= BUSY_SHARE:
            busy.append({"pid": pid, "name": name, "cpu_share": round(share, 2)})
    return sorted(busy, key=lambda p: -p["cpu_share"])


def describe(server: str) -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "memory_gib": memory_gib(),
        "cpu": cpu_model(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "postgresql": postgres_version(server),
    }


def busy_summary(processes: list[dict[str, Any]]) -> str:
    if not processes:
        return "none"
    return ", ".join(f"{p['name']} {100 * p['cpu_share']:.0f} %" for p in processes[:8])
