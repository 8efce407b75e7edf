"""Durable timers with real worker processes: timers are scheduled, the worker is killed with SIGKILL
before they come due and started again after; every timer fires exactly once (one fired row, one
decision, one warning note on the fake helpdesk per timer)."""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent
TIMERS = 30


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_timers", REPO_ROOT / "bench" / "bench_timers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stop(process: subprocess.Popen, sig: int) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_every_timer_fires_exactly_once_across_a_sigkilled_worker(tmp_path):
    bench = _bench_module()
    if not bench.worker_available():
        pytest.fail("`escalation worker` is not available")
    rig = bench.TimerRig(tmp_path, bench.BENCH_MATRIX)

    first_due = datetime.now(timezone.utc) + timedelta(seconds=8)
    rig.seed(TIMERS, first_due, horizon=4)
    last_due = max(due for _, due in rig.expected.values())
    assert len(rig.expected) == TIMERS

    worker = rig.start_worker("first")
    try:
        time.sleep(3)  # up and waiting on the scheduled tasks
        assert worker.poll() is None, (tmp_path / "worker-first.log").read_text()
        assert rig.fired_count() == 0
    finally:
        _stop(worker, signal.SIGKILL)

    # all timers come due while no worker runs
    time.sleep(max(0.0, (last_due - datetime.now(timezone.utc)).total_seconds()) + 1)
    assert rig.fired_count() == 0

    worker = rig.start_worker("second")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and rig.fired_count() < TIMERS:
            time.sleep(0.3)
        time.sleep(2)  # a second firing of any timer would show up now
    finally:
        _stop(worker, signal.SIGTERM)

    result = rig.report()
    logs = "\n".join(p.read_text() for p in rig.logs if p.exists())
    assert result["fired"] == TIMERS, logs
    assert result["pending"] == 0 and result["failed"] == 0
    assert rig.warning_notes() == {ticket_id: 1 for ticket_id, _ in rig.expected.values()}
    decisions = rig.decisions_per_timer()
    assert decisions == {f"timer:{timer_id}": 1 for timer_id in rig.expected}
    assert all(late >= 0 for late in result["lateness"])  # none fired before it was due
