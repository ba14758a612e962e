"""Where `prepare_staging` runs: in the consolidating thread, or in a pool of worker processes.

Parsing and mapping are pure Python and hold the interpreter lock; consolidating threads alone leave all but one
core idle while PostgreSQL waits for them. With a pool, a claimant hands a batch to the processes (split so that
each takes a part) and, while they work, claims the next batch and writes the previous one.

The pool is started on first use and shut down by the runtime that owns it. Its processes are not forked from
the consolidating process, which would copy its threads' locks and open connections into every child: they are
forked from a fork server (a fresh, single-threaded process, started once per process, that has imported the
preparing code), so that a pool starts in milliseconds rather than an interpreter start and its imports per
worker, which matters to every runtime that consolidates once and to a pool restarted after a worker died.
Where there is no fork server (Windows), they are spawned.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Protocol

from opus.pipeline.staging_rows import PreparedBatch, StagingTask, prepare_staging

logger = logging.getLogger(__name__)

# Fewer rows than this per process cost more to ship than they save.
_MIN_ROWS_PER_PART = 100
# A pool that breaks this often in a row (e.g. its processes cannot start) is given up: batches stay in-thread.
_BREAKS_TOLERATED = 3


class PendingBatch(Protocol):
    def result(self) -> PreparedBatch: ...


class Preparer(Protocol):
    """Starts preparing a task; `result()` of what it returns waits for the lines."""

    def submit(self, task: StagingTask) -> PendingBatch: ...

    def start(self) -> None:
        """Start the workers now rather than on first use (benchmarks, to time the work alone)."""

    def close(self) -> None: ...


class _Done:
    def __init__(self, batch: PreparedBatch) -> None:
        self._batch = batch

    def result(self) -> PreparedBatch:
        return self._batch


class InThreadPreparer:
    """Prepares in the calling thread, at once: the path of a Functions instance, where chains on several
    instances are the parallelism."""

    def submit(self, task: StagingTask) -> PendingBatch:
        return _Done(prepare_staging(task))

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass


def _start_method() -> multiprocessing.context.BaseContext:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([prepare_staging.__module__])  # read when the server starts, once
    return context


class ProcessPreparer:
    """Prepares in `processes` spawned worker processes, each batch split among them."""

    def __init__(self, processes: int) -> None:
        if processes < 1:
            raise ValueError("a process pool needs at least one process")
        self.processes = processes
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False
        self._breaks = 0

    def submit(self, task: StagingTask) -> PendingBatch:
        if self._breaks >= _BREAKS_TOLERATED:
            return _Done(prepare_staging(task))
        parts = task.split(min(self.processes, max(1, len(task.rows) // _MIN_ROWS_PER_PART)))
        pool = self._executor()
        try:
            futures = [pool.submit(prepare_staging, part) for part in parts]
        except BrokenProcessPool:
            return self.recover(pool, task)
        return _InPool(self, pool, task, futures)

    def start(self) -> None:
        pool = self._executor()
        empty = StagingTask((), "", "", (), 0)
        for future in [pool.submit(prepare_staging, empty) for _ in range(self.processes)]:
            future.result()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise RuntimeError("the preparer was closed")
            if self._pool is None:
                self._pool = ProcessPoolExecutor(self.processes, mp_context=_start_method())
            return self._pool

    def worked(self) -> None:
        self._breaks = 0

    def recover(self, broken: ProcessPoolExecutor, task: StagingTask) -> PendingBatch:
        """A worker died (killed, out of memory): the batch is prepared here, and the next one in a new pool."""
        with self._lock:
            if self._pool is broken:
                self._pool = None
                self._breaks += 1
        logger.warning("a consolidation worker process died; batch prepared in-thread, pool restarted",
                       extra={"rows": len(task.rows), "breaks_in_a_row": self._breaks})
        broken.shutdown(wait=False, cancel_futures=True)
        return _Done(prepare_staging(task))


class _InPool:
    def __init__(self, owner: ProcessPreparer, pool: ProcessPoolExecutor, task: StagingTask,
                 futures: list[Future[PreparedBatch]]) -> None:
        self._owner, self._pool, self._task, self._futures = owner, pool, task, futures

    def result(self) -> PreparedBatch:
        try:
            parts = [f.result() for f in self._futures]
        except BrokenProcessPool:
            return self._owner.recover(self._pool, self._task).result()
        self._owner.worked()
        batch = PreparedBatch(self._task.rules_version)
        for part in parts:  # in claim order: a stone twice in the batch keeps its later row
            batch.absorb(part)
        return batch


def preparer_for(processes: int) -> Preparer:
    """A pool of `processes` worker processes, or the in-thread preparer for 0."""
    return ProcessPreparer(processes) if processes > 0 else InThreadPreparer()
