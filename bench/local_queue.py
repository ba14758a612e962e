"""Local queue throughput (`PostgresQueue`): messages/s with 1 and 4 consumers.

    .venv/bin/python -m bench.local_queue [--messages 5000] [--consumers 1,4]

For each consumer count, in a fresh scratch database, with work-item-like bodies:
- cycle: each consumer thread loops send (its own transaction, as a page worker sends its continuation),
  receive, complete: one message through the whole queue per loop;
- send one by one, then receive+complete a full queue (drain) with plain threads;
- the same drain through `QueueConsumer` (the runtime's worker threads) with a handler that does nothing.
The database pool has as many connections as consumers (at least 4), so that the pool is not the limit.
The queue table is emptied (TRUNCATE) before each case.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import DEFAULT_SERVER, base_parser, load_now, log, report, scratch_database
from opus.adapters.postgres_queue import PostgresQueue
from opus.db.pool import Database
from opus.local.consumers import QueueConsumer
from opus.pipeline.outcomes import Outcome

RUN_ID = str(uuid.uuid4())


def body(i: int) -> dict[str, Any]:
    return {"run_id": RUN_ID, "partition": i % 10, "offset": 50 * i}


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if p < total % parts else 0) for p in range(parts)]


def timed_threads(threads: int, fn: Any, shares: list[int]) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(fn, range(threads), shares))
    return time.perf_counter() - started


def cycle(queue: PostgresQueue, name: str, total: int, threads: int) -> float:
    def work(t: int, n: int) -> None:
        for i in range(n):
            queue.send(name, body(i), message_id=f"{t}:{i}")
            got: list[Any] = []
            while not got:  # another thread may have taken the message just sent: take the next one
                got = queue.receive(name, max_messages=1, visibility_timeout_s=60)
            queue.complete(got[0])

    return timed_threads(threads, work, split(total, threads))


def send_singly(queue: PostgresQueue, name: str, total: int, threads: int) -> float:
    def work(t: int, n: int) -> None:
        for i in range(n):
            queue.send(name, body(i), message_id=f"{t}:{i}")

    return timed_threads(threads, work, split(total, threads))


def drain_plain(queue: PostgresQueue, name: str, threads: int) -> tuple[float, int]:
    done = [0] * threads

    def work(t: int, _: int) -> None:
        while got := queue.receive(name, max_messages=1, visibility_timeout_s=60):
            queue.complete(got[0])
            done[t] += 1

    seconds = timed_threads(threads, work, [0] * threads)
    return seconds, sum(done)


def drain_consumer(queue: PostgresQueue, name: str, total: int, threads: int) -> float:
    finished = threading.Event()
    consumer = QueueConsumer(queue, name, lambda body: Outcome.done(), concurrency=threads, visibility_timeout_s=60,
                             wait_s=0.2, name="bench")
    started = time.perf_counter()
    consumer.start()
    while consumer.processed < total:
        finished.wait(0.005)
    seconds = time.perf_counter() - started
    consumer.stop()
    return seconds


def empty_queue_table(db: Database) -> None:
    """Each case starts on an empty table: finished messages and dead index entries of a case slow the next."""
    with db.transaction() as conn:
        conn.execute("TRUNCATE queue_messages")


def rate(n: int, seconds: float) -> dict[str, Any]:
    return {"messages": n, "seconds": round(seconds, 2), "messages_per_s": round(n / seconds)}


def bench_consumers(server: str, total: int, threads: int) -> dict[str, Any]:
    out: dict[str, Any] = {"load_at_start": load_now()}
    with scratch_database(server, f"queue_{threads}") as url, Database(url, max_size=max(4, threads)) as db:
        queue = PostgresQueue(db)
        try:
            log(f"{threads} consumer(s): send + receive + complete cycle")
            out["cycle: send + receive + complete"] = rate(total, cycle(queue, "cycle", total, threads))
            empty_queue_table(db)
            log(f"{threads} consumer(s): send one by one")
            out["send (one per transaction)"] = rate(total, send_singly(queue, "drain", total, threads))
            log(f"{threads} consumer(s): drain, receive + complete")
            seconds, n = drain_plain(queue, "drain", threads)
            out["drain: receive + complete"] = rate(n, seconds)
            empty_queue_table(db)
            send_singly(queue, "consumer", total, threads)
            log(f"{threads} consumer(s): drain through QueueConsumer")
            out["drain through QueueConsumer (no-op handler)"] = rate(
                total, drain_consumer(queue, "consumer", total, threads))
        finally:
            queue.close()
    return out


def measure(server: str, messages: int, consumer_counts: list[int]) -> dict[str, Any]:
    figures: dict[str, Any] = {"messages": messages, "consumers": {}}
    for threads in consumer_counts:
        figures["consumers"][str(threads)] = bench_consumers(server, messages, threads)
    return figures


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument("--consumers", default="1,4")
    args = parser.parse_args()
    report("queue", measure(args.server, args.messages, [int(c) for c in args.consumers.split(",")]),
           args.json_out)


# The interface of bench/run_all.py (bench/README.md): one consumer, then `consumers` consumers.
SMOKE_SCALE: dict[str, int] = {"messages": 50, "consumers": 1}
FULL_SCALE: dict[str, int] = {"messages": 5_000, "consumers": 4}
PLAIN = "drain: receive + complete"
CONSUMER = "drain through QueueConsumer (no-op handler)"


def run(scale: dict[str, int], server: str = DEFAULT_SERVER) -> dict[str, Any]:
    figures = measure(server, scale["messages"], sorted({1, scale["consumers"]}))
    rows: list[dict[str, Any]] = []
    for threads, cases in figures["consumers"].items():
        for name, case in cases.items():
            if not isinstance(case, dict):
                continue  # the load at the start
            rows.append({
                "name": f"{name}, {threads} consumer(s)", "value": case["messages_per_s"], "unit": "messages/s",
                "higher_is_better": True,
                **({"baseline": cases[PLAIN]["messages_per_s"], "baseline_name": "plain receive + complete"}
                   if name == CONSUMER else {}),
                "limit": "a transaction per receive and per complete (SKIP LOCKED select, update, commit)"})
    return {"key": "local_queue", "title": "Local queue (PostgreSQL)",
            "command": ".venv/bin/python -m bench.local_queue", "scale": dict(scale), "figures": rows,
            "details": figures}


if __name__ == "__main__":
    main()
