"""Progress display for `opus run`: a live bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from opus.local.run_once import PlainProgress
from opus.local.run_once import Progress as RunProgress

Reporter = Callable[[RunProgress], None]


@contextmanager
def progress_reporter(*, quiet: bool = False) -> Iterator[Reporter]:
    if quiet:
        yield lambda _p: None
        return
    if not sys.stderr.isatty():
        yield PlainProgress()
        return
    console = Console(stderr=True)
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("planning", total=None, detail="")

        def report(p: RunProgress) -> None:
            bar.update(
                task, description=p.status, total=p.partitions or None, completed=p.partitions_done,
                detail=f"pages {p.pages}  raw {p.raw_rows}  consolidated {p.consolidated}  {p.rate:,.0f}/s",
            )

        yield report
