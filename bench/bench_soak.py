"""Scale-out soak (issue 15): PostgreSQL + Redis, `--webs` x `python -m webhooks.server` and `--workers` x
`escalation worker` (the Procfile's processes), `--events` signed Zendesk event webhooks over `--tickets`
tickets, against a Zendesk double over HTTP that answers 429 (Retry-After) and 5xx at the set rates and
counts every request against the budget; workers are SIGKILLed about every `--kill-every` seconds and
restarted. Then the same load, smaller (`--scaling-events`), with 1, 2 and 4 workers side by side in this
run (no kills), for the scaling ratio, once per `--scaling-latencies-ms`.

Every API call at the double takes `--vendor-latency-ms` in the soak and each of `--scaling-latencies-ms`
in the scaling runs (Zendesk answers in tens to hundreds of ms; a worker spends that time waiting, which
is what more workers buy throughput against). With 0 the double answers at once and the run measures the
machine's CPU: on 2 cores, web, workers, the double and the load generator share them and 4 workers
cannot give much more than 2. The scaling runs use `--scaling-budget`
so the vendor's per-minute limit does not cap what the worker count measures (the soak keeps `--budget`).

Asserts, for every run: 0 lost (every accepted event done, every ticket at the level / priority / group
`integration.engine.decide` gives its final state), 0 duplicate customer messages, 0 requests over the
budget in any 60 s. The machinery is tests/support/soak_harness.py (also tests/test_soak_small.py), the
double tests/support/soak_zendesk_double.py.

    .venv/bin/python bench/bench_soak.py                       # 10,000 events, 2 web + 4 workers, then 1/2/4
    .venv/bin/python bench/bench_soak.py --events 2000 --tickets 400 --scaling ""   # quicker, no scaling runs
    .venv/bin/python bench/bench_soak.py --events 0                                 # only the scaling runs

Needs PostgreSQL (`--postgres-url`, a schema of its own is created and dropped) and Redis (`--redis-url`,
its database is the run's own and is flushed).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.soak_harness import SoakConfig, SoakResult, run_soak  # noqa: E402


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _describe(result: SoakResult) -> str:
    c = result.config
    counts = result.double_counts
    api_per_event = result.api_requests / result.accepted if result.accepted else 0.0
    return (f"{c.webs} web + {c.workers} workers: {result.accepted} events accepted ({result.redeliveries} "
            f"redeliveries answered duplicate), all done in {result.total_seconds:.1f} s (sent in "
            f"{result.send_seconds:.1f} s) = {result.events_per_second:.1f} events/s end to end; "
            f"kills {result.kills}; vendor: {result.api_requests} API requests ({api_per_event:.2f}/event), "
            f"429 served {counts.get('429 served', 0)}, 5xx served {counts.get('5xx served', 0)} "
            f"({counts.get('5xx after storing', 0)} after storing), 409 {counts.get('status 409', 0)}, "
            f"peak {result.peak_in_window} in 60 s of a budget of {c.budget}, over budget {result.over_budget}; "
            f"decisions {result.decisions}; customer messages {result.public_messages}; "
            f"lost {len(result.lost_events)}, wrong final state {len(result.wrong_tickets)}, "
            f"duplicate messages {len(result.duplicate_messages)} (internal notes repeated: "
            f"{len(result.repeated_internal_notes)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--tickets", type=int, default=2_000)
    parser.add_argument("--webs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--worker-concurrency", type=int, default=2, help="WORKER_CONCURRENCY of each worker")
    parser.add_argument("--kill-every", type=float, default=20.0, help="seconds between SIGKILLs (0: none)")
    parser.add_argument("--error-rate", type=float, default=0.02, help="share of API calls answered 5xx")
    parser.add_argument("--rate-limited-rate", type=float, default=0.02, help="share answered 429 + Retry-After")
    parser.add_argument("--budget", type=int, default=3000, help="ZENDESK_REQUESTS_PER_MINUTE = the double's limit")
    parser.add_argument("--vendor-latency-ms", type=float, default=0.0, help="each API call's time at the double")
    parser.add_argument("--reconcile-interval", type=int, default=30, help="RECONCILE_INTERVAL_SECONDS")
    parser.add_argument("--senders", type=int, default=8, help="load generator threads")
    parser.add_argument("--scaling", default="1,2,4", help="worker counts for the scaling runs ('' = none)")
    parser.add_argument("--scaling-events", type=int, default=2_000)
    parser.add_argument("--scaling-tickets", type=int, default=400)
    parser.add_argument("--scaling-latencies-ms", default="0,100",
                        help="vendor latencies for the scaling runs, comma-separated (e.g. 0,100)")
    parser.add_argument("--scaling-budget", type=int, default=20_000, help="the budget of the scaling runs")
    parser.add_argument("--timeout", type=float, default=600.0, help="per run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--postgres-url", default=os.environ.get("TEST_POSTGRES_URL",
                                                                 "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args()
    # SIGTERM ends the run like Ctrl-C: the harness stops its processes and drops its schema.
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    def progress(text: str) -> None:
        print(f"  {text}", flush=True)

    def config(**overrides) -> SoakConfig:
        values = dict(postgres_url=args.postgres_url, redis_url=args.redis_url, events=args.events,
                      tickets=args.tickets, webs=args.webs, workers=args.workers,
                      worker_concurrency=args.worker_concurrency, kill_every=args.kill_every,
                      error_rate=args.error_rate, rate_limited_rate=args.rate_limited_rate, budget=args.budget,
                      vendor_latency_ms=args.vendor_latency_ms,
                      senders=args.senders, reconcile_interval=args.reconcile_interval, timeout=args.timeout,
                      seed=args.seed, keep_logs=args.keep_logs,
                      progress=progress)
        return SoakConfig(**{**values, **overrides})

    print(f"load average before: {_loadavg()} ({os.cpu_count()} cores)", flush=True)
    failures: list[str] = []
    started = time.monotonic()
    soak: SoakResult | None = None
    if args.events > 0:
        print(f"soak: {args.events} events / {args.tickets} tickets, {args.webs} web + {args.workers} workers, "
              f"kill every ~{args.kill_every:g} s, 5xx {args.error_rate:.0%}, 429 {args.rate_limited_rate:.0%}, "
              f"budget {args.budget}/min, vendor latency {args.vendor_latency_ms:g} ms", flush=True)
        soak = run_soak(config())
        print(_describe(soak), flush=True)
        failures += [f"soak: {f}" for f in soak.failures()]
        for line in (soak.lost_events[:5] + soak.wrong_tickets[:5] + soak.duplicate_messages[:5]):
            print(f"    {line}")
        print(f"load average: {_loadavg()}", flush=True)

    scaling: dict[float, dict[int, SoakResult]] = {}
    worker_counts = [int(n) for n in args.scaling.split(",") if n.strip()]
    for latency in [float(ms) for ms in args.scaling_latencies_ms.split(",") if ms.strip()] if worker_counts else []:
        runs = scaling.setdefault(latency, {})
        for workers in worker_counts:
            print(f"scaling: {args.scaling_events} events / {args.scaling_tickets} tickets, {args.webs} web + "
                  f"{workers} workers, no kills, vendor latency {latency:g} ms, budget {args.scaling_budget}/min",
                  flush=True)
            result = run_soak(config(events=args.scaling_events, tickets=args.scaling_tickets, workers=workers,
                                     kill_every=0.0, vendor_latency_ms=latency, budget=args.scaling_budget))
            runs[workers] = result
            print(_describe(result), flush=True)
            failures += [f"scaling {workers} workers, {latency:g} ms: {f}" for f in result.failures()]
            print(f"load average: {_loadavg()}", flush=True)

    ratios = []
    for latency, runs in scaling.items():
        base = runs[min(runs)].events_per_second or 1.0
        print(f"scaling at {latency:g} ms vendor latency, events/s end to end: " + ", ".join(
            f"{n} workers {r.events_per_second:.1f} ({r.events_per_second / base:.2f}x)" for n, r in runs.items()))
        if len(runs) > 1:
            ratios.append(f"{max(runs)} vs {min(runs)} workers {runs[max(runs)].events_per_second / base:.2f}x "
                          f"at {latency:g} ms")
    ratio = "".join(f", {text}" for text in ratios)
    summary = "no soak (--events 0)" if soak is None else (
        f"soak {soak.events_per_second:.1f} events/s end to end "
        f"({soak.accepted} events, {args.webs} web + {args.workers} workers, {soak.kills} kills, "
        f"429 {soak.double_counts.get('429 served', 0)}, 5xx {soak.double_counts.get('5xx served', 0)}); "
        f"lost {len(soak.lost_events) + len(soak.wrong_tickets)}, duplicate messages "
        f"{len(soak.duplicate_messages)}, over budget {soak.over_budget} (peak {soak.peak_in_window}/"
        f"{args.budget} in 60 s)")
    print(f"RESULT {'PASS' if not failures else 'FAIL'}: {summary}{ratio}; {time.monotonic() - started:.0f} s in all",
          flush=True)
    for failure in failures:
        print(f"  FAIL {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
