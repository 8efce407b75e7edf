"""Where a signed webhook's store cost goes: the web sink's group commit reached by concurrent request
threads, against the same batches committed by one thread, side by side in one run, on SQLite and
PostgreSQL.

    .venv/bin/python bench/bench_group_commit.py [--threads 16] [--deliveries 400] [--rounds 3]
        [--databases sqlite,postgresql] [--postgres-url URL]

"threaded": --threads threads each call the web process's sink (`service.sink.build_event_sink`:
`accept`, which returns once the commit holding the delivery is durable) --deliveries times, as waitress's
request threads do; mean batch from the sink's own counts. "one thread": the same number of deliveries,
in batches of that mean size, stored and enqueued by one thread through the same code
(`_store_batch`, `_enqueue_tasks`) with no thread waiting or waking. Both print the process's CPU per
delivery (user + system, all threads); the difference is what the hand-offs cost: each delivery's
thread sleeping until its commit and waking after it, and the GIL changing hands for each. bench_intake's
"server CPU per request" minus this file's numbers is the HTTP server's share. Rounds alternate the two
modes; each prints its median. Loopback PostgreSQL runs in a temporary schema (skipped with a note when
unreachable); the queue is a SqliteHuey file, as in the embedded default.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from bench_intake import bench_database  # noqa: E402
from integration.model import NeutralEvent  # noqa: E402
from integration.store import events as events_module  # noqa: E402

_next_ticket = 1


def _events(count: int) -> list[tuple[NeutralEvent, bytes]]:
    """`count` distinct deliveries (tickets no earlier one named), with a payload of a webhook's size."""
    global _next_ticket
    first, _next_ticket = _next_ticket, _next_ticket + count
    return [(NeutralEvent(vendor="zendesk", ticket_id=str(ticket), event_type="ticket.priority_changed",
                          delivery_id=f"bench-{time.time_ns()}-{ticket}", actor_id="agent-1"),
             b'{"type": "zen:event-type:ticket.priority_changed", "detail": {"id": "%d"}}' % ticket * 12)
            for ticket in range(first, first + count)]


def _threaded(sink, threads: int, per_thread: int) -> tuple[float, float]:
    """CPU ms per delivery and mean batch, `threads` threads calling `sink.accept`."""
    work = [_events(per_thread) for _ in range(threads)]
    now = datetime.now(timezone.utc)
    batches_before, deliveries_before = sink.group_commit_counts()

    def run(items) -> None:
        for event, payload in items:
            sink.accept(event, payload, now)

    workers = [threading.Thread(target=run, args=(items,)) for items in work]
    started = time.process_time()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    cpu = time.process_time() - started
    batches, deliveries = sink.group_commit_counts()
    return cpu * 1000 / (threads * per_thread), (deliveries - deliveries_before) / max(1, batches - batches_before)


def _one_thread(sink, total: int, batch_size: int) -> float:
    """CPU ms per delivery, the same deliveries stored and enqueued in batches of `batch_size` by one thread."""
    now = datetime.now(timezone.utc)
    deliveries = [events_module._Delivery(event, payload, now, events_module.content_hash(payload))
                  for event, payload in _events(total)]
    batches = [deliveries[i:i + batch_size] for i in range(0, total, batch_size)]
    started = time.process_time()
    for batch in batches:
        with sink._writers.turn():
            sink._store_batch(batch)
        sink._enqueue_tasks(batch)
    cpu = time.process_time() - started
    assert all(delivery.result is not None for delivery in deliveries), "a delivery was not stored"
    return cpu * 1000 / total


def measure(database_url: str, queue_url: str, args: argparse.Namespace) -> None:
    from integration.store.db import reset_databases
    from service.settings import Settings
    from service.sink import build_event_sink

    os.environ.update(DATABASE_URL=database_url, QUEUE_URL=queue_url, DRY_RUN="true")
    sink = build_event_sink(Settings())
    _threaded(sink, args.threads, 20)  # warm: connection, prepared statements, pages
    threaded_cpu, one_cpu, batch_sizes = [], [], []
    for round_number in range(1, args.rounds + 1):
        cpu, batch = _threaded(sink, args.threads, args.deliveries)
        size = max(1, round(batch))
        alone = _one_thread(sink, args.threads * args.deliveries, size)
        threaded_cpu.append(cpu)
        one_cpu.append(alone)
        batch_sizes.append(batch)
        print(f"  {round_number}: threaded x{args.threads} {cpu:.3f} ms/delivery (mean batch {batch:.1f});"
              f"  one thread, batches of {size}: {alone:.3f} ms/delivery")
    threaded, alone = statistics.median(threaded_cpu), statistics.median(one_cpu)
    print(f"  median: threaded {threaded:.3f}, one thread {alone:.3f} ms/delivery: ratio {threaded / alone:.2f}; "
          f"hand-offs {threaded - alone:.3f} ms/delivery ({100 * (threaded - alone) / threaded:.0f}% of the threaded cost)")
    reset_databases()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=16, help="request threads (WEB_THREADS' default)")
    parser.add_argument("--deliveries", type=int, default=400, help="deliveries per thread per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default=os.environ.get(
        "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-group-commit-") as tmp:
        for database in args.databases.split(","):
            fresh = bench_database(database, args.postgres_url, tmp)
            if fresh is None:
                continue
            url, drop = fresh
            print(f"sqlite (a file in {tmp}):" if database == "sqlite" else "postgresql (a temporary schema):")
            try:
                measure(url, f"sqlite:///{tmp}/queue-{database}.db", args)
            finally:
                if drop is not None:
                    drop()
    print(f"machine: {os.cpu_count()} CPUs, load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
