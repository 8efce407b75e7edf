"""SLA timer benchmark.

    .venv/bin/python bench/bench_timers.py [--timers 1000] [--horizon 60] [--restart-at 20] [--compute-only]

1. Compute (in process): how fast `integration.clocks` plans timers and business-time due dates for
   tickets on the example matrix (Europe/Berlin business calendar) — the cost a pass adds per ticket.
2. Lateness (real processes): schedules `--timers` durable timers due over the next `--horizon` seconds
   (one pre-breach warning per ticket, on the fake helpdesk of tests/support/fake_connector.py), runs
   `escalation worker` on a temporary SQLite database and queue, SIGKILLs it at `--restart-at` seconds and
   starts it again; reports fired/expected, duplicates, and lateness (fired_at - due_at) p50/p99/max.
   Goal: every timer fires exactly once, p99 <= 5 s.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, int(round(p / 100.0 * (len(ordered) - 1)))))
    return ordered[index]


# --------------------------------------------------------------------------------------- compute
def bench_compute(tickets: int = 2000) -> None:
    from integration.calendar import add_business_time
    from integration.clocks import plan_timers, track
    from integration.engine import decide, next_state
    from integration.model import Person, Ticket
    from matrix_config.loader import load_matrix

    matrix = load_matrix(REPO_ROOT / "matrix_config" / "examples" / "enterprise.yaml").matrix
    start = datetime(2026, 11, 23, 7, 0, tzinfo=timezone.utc)
    rng = random.Random(7)
    prepared = []
    for i in range(tickets):
        now = start + timedelta(minutes=rng.randrange(0, 60 * 24 * 60))
        ticket = Ticket(vendor="zendesk", id=str(i), subject="bench", status="open", priority="normal",
                        requester=Person(name="C"), fields={"issue_type": "bug"})
        decision = decide(ticket, None, matrix, now)
        state = track(next_state(None, ticket, decision), ticket, matrix, now)
        prepared.append((state, decision, ticket, now))
    began = time.perf_counter()
    planned = 0
    for state, decision, ticket, now in prepared:
        planned += len(plan_timers(None, state, decision, ticket, matrix, now))
    elapsed = time.perf_counter() - began
    calendar = matrix.calendars["business"]
    began = time.perf_counter()
    for _, _, _, now in prepared:
        add_business_time(calendar, now, 5 * 24 * 3600)  # a 5-day business target: ~17 calendar days
    due_elapsed = time.perf_counter() - began
    print(f"compute: planned {planned} timers for {tickets} tickets in {elapsed:.3f} s "
          f"({planned / elapsed:,.0f} timers/s, {tickets / elapsed:,.0f} tickets/s)")
    print(f"compute: {tickets} five-business-day due dates in {due_elapsed:.3f} s ({tickets / due_elapsed:,.0f}/s)")


# --------------------------------------------------------------------------------------- lateness
BENCH_MATRIX = """
name: Timer bench
issue_types: [bug]
groups:
  frontline: {label: Frontline support}
levels:
  - id: L1
    name: Frontline
    priority: normal
    owner: {default: frontline}
    sla: {acknowledge: 10m}
clocks:
  warn_at: [0.5]
  pause_statuses: [pending]
"""


def _escalation_cmd() -> list[str]:
    exe = REPO_ROOT / ".venv" / "bin" / "escalation"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "cli.main"]


def worker_available() -> bool:
    result = subprocess.run(_escalation_cmd() + ["worker", "--help"], capture_output=True, text=True, cwd=REPO_ROOT)
    return result.returncode == 0


def bench_lateness(count: int, horizon: float, restart_at: float, lead: float = 8.0) -> dict:
    from tests.support.timer_rig import TimerRig

    workdir = Path(tempfile.mkdtemp(prefix="bench-timers-"))
    try:
        rig = TimerRig(workdir, BENCH_MATRIX)
        first_due = datetime.now(timezone.utc) + timedelta(seconds=lead)
        rig.seed(count, first_due, horizon)
        print(f"lateness: {count} timers due {lead:.0f}..{lead + horizon:.0f} s from now; worker killed at "
              f"{restart_at:.0f} s, restarted 3 s later")
        started = time.monotonic()
        worker = rig.start_worker("w1")
        time.sleep(max(0.0, lead + restart_at - (time.monotonic() - started)))
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        fired_before_kill = rig.fired_count()
        time.sleep(3.0)
        worker = rig.start_worker("w2")
        deadline = time.monotonic() + lead + horizon + 60
        while time.monotonic() < deadline and rig.fired_count() < count:
            time.sleep(0.5)
        time.sleep(2.0)  # any duplicate would show up now
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        result = rig.report()
        result["fired_before_kill"] = fired_before_kill
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timers", type=int, default=int(os.environ.get("BENCH_TIMERS", 1000)))
    parser.add_argument("--horizon", type=float, default=float(os.environ.get("BENCH_TIMER_HORIZON", 60)))
    parser.add_argument("--restart-at", type=float, default=None, help="seconds into the horizon (default: 1/3)")
    parser.add_argument("--compute-only", action="store_true")
    args = parser.parse_args()
    bench_compute()
    if args.compute_only:
        return 0
    if not worker_available():
        print("lateness: `escalation worker` is not available; only the compute part ran")
        return 0
    restart_at = args.restart_at if args.restart_at is not None else args.horizon / 3
    result = bench_lateness(args.timers, args.horizon, restart_at)
    late = result["lateness"]
    print(f"lateness: fired {result['fired']}/{result['expected']} (before the kill: {result['fired_before_kill']}), "
          f"notes written {result['notes']}, duplicates {result['duplicates']}, failed {result['failed']}")
    print(f"lateness: p50 {percentile(late, 50):.2f} s, p99 {percentile(late, 99):.2f} s, max {max(late) if late else float('nan'):.2f} s "
          f"(goal p99 <= 5 s: {'met' if late and percentile(late, 99) <= 5 else 'NOT met'})")
    print(json.dumps({k: v for k, v in result.items() if k != "lateness"}, sort_keys=True))
    ok = result["fired"] == result["expected"] and result["duplicates"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
