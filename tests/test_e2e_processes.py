"""End to end with real processes, as the Procfile runs them: webhooks.server (web) + the worker (the
product's `escalation worker` built with a fake helpdesk by tests/support/worker_entry.py), on SQLite
(database and queue files in a temp dir); the fake helpdesk records every write in a file. Signed Zendesk webhooks go in over HTTP; the worker is killed with SIGKILL in the middle of a
pass (after its write reached the "vendor", before its final commit), restarted, and every event must
end processed with exactly one customer reply per ticket."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.support.fake_connector import FakeConnector, FileStore

pytestmark = pytest.mark.slow

SECRET = "e2e-webhook-secret"
TICKETS = ["7001", "7002", "7003", "7004"]
BIN = Path(sys.executable).parent


def worker_entry(fake: FakeConnector, *options: str, command: str = "worker") -> list[str]:
    """`escalation worker` (or `serve`) whose every vendor is a FakeConnector over `fake`'s FileStore."""
    return [sys.executable, "-m", "tests.support.worker_entry", "--vendor-dir", str(fake.store.directory), *options,
            command]


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _signed_post(port: int, body: dict, invocation_id: str) -> int:
    raw = json.dumps(body).encode()
    timestamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    signature = base64.b64encode(hmac.new(SECRET.encode(), timestamp.encode() + raw, hashlib.sha256).digest()).decode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/webhooks/zendesk", data=raw, method="POST",
        headers={"Content-Type": "application/json", "X-Zendesk-Webhook-Signature": signature,
                 "X-Zendesk-Webhook-Signature-Timestamp": timestamp, "X-Zendesk-Webhook-Invocation-Id": invocation_id})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _event(ticket_id: str, event_type: str, n: int) -> dict:
    return {
        "account_id": 22129848,
        "detail": {"actor_id": "900", "id": ticket_id, "priority": "NORMAL", "status": "OPEN",
                   "subject": f"Ticket {ticket_id}", "tags": [], "requester_id": "900",
                   "created_at": "2026-11-27T09:00:00Z", "updated_at": f"2026-11-27T09:00:0{n}Z"},
        "event": {},
        "id": f"evt-{ticket_id}-{n}",
        "subject": f"zen:ticket:{ticket_id}",
        "time": f"2026-11-27T09:00:0{n}Z",
        "type": f"zen:event-type:{event_type}",
        "zendesk_event_version": "2022-11-06",
    }


def _query(db_path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db_path, timeout=10) as conn:
        return conn.execute(sql).fetchall()


def _wait(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def environment(tmp_path, enterprise_matrix_path):
    vendor_dir = tmp_path / "vendor"
    fake = FakeConnector("zendesk", store=FileStore(vendor_dir))
    for ticket_id in TICKETS:
        fake.put(ticket_id)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "DATABASE_URL": f"sqlite:///{tmp_path}/var/escalation.db",
        "QUEUE_URL": f"sqlite:///{tmp_path}/var/queue.db",
        "MATRIX_PATH": str(enterprise_matrix_path),
        "ZENDESK_WEBHOOK_SECRET": SECRET,
        "DRY_RUN": "false",
        "LEASE_SECONDS": "3",
        "RECONCILE_INTERVAL_SECONDS": "1",
        "WORKER_CONCURRENCY": "2",
        "SHUTDOWN_TIMEOUT_SECONDS": "2",
        "LOG_LEVEL": "INFO",
    }
    subprocess.run([str(BIN / "escalation"), "migrate"], env=env, cwd=tmp_path, check=True, capture_output=True)
    procs: list[subprocess.Popen] = []

    def start(args: list[str], log_name: str, **env_overrides: str) -> subprocess.Popen:
        log = open(tmp_path / log_name, "ab")
        proc = subprocess.Popen(args, env={**env, **env_overrides}, cwd=tmp_path, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(proc)
        return proc

    yield tmp_path, fake, start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_worker_killed_mid_pass_loses_nothing_and_writes_no_reply_twice(environment):
    tmp_path, fake, start = environment
    db_path = tmp_path / "var" / "escalation.db"
    port = _free_port()
    start([sys.executable, "-m", "webhooks.server", "--host", "127.0.0.1", "--port", str(port)], "web.log")
    # A window between each vendor write and the pass's final commit.
    worker = start(worker_entry(fake, "--apply-delay", "1.0"), "worker-1.log")

    _wait(lambda: _ready(port), 30, "the web process to be ready", interval=0.2)

    accepted = 0
    for ticket_id in TICKETS:
        assert _signed_post(port, _event(ticket_id, "ticket.created", 1), f"inv-{ticket_id}-1") == 202
        assert _signed_post(port, _event(ticket_id, "ticket.priority_changed", 2), f"inv-{ticket_id}-2") == 202
        accepted += 2
    # A redelivery of the first webhook: acknowledged, not stored twice.
    assert _signed_post(port, _event(TICKETS[0], "ticket.created", 1), f"inv-{TICKETS[0]}-1") == 200

    # Kill the worker right after a write reached the vendor and before the pass committed.
    in_window = _wait(
        lambda: fake.writes() and _query(db_path, "SELECT ticket_id FROM decisions WHERE status = 'applying'"),
        30, "a pass between its vendor write and its commit")
    killed_ticket = in_window[0][0]
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    writes_at_kill = len(fake.writes())
    assert _query(db_path, "SELECT COUNT(*) FROM events WHERE status = 'processing'")[0][0] >= 1

    start(worker_entry(fake, "--apply-delay", "1.0"), "worker-2.log")
    _wait(lambda: _query(db_path, "SELECT COUNT(*) FROM events WHERE status = 'done'")[0][0] == accepted,
          45, "every event to be processed after the restart", interval=0.2)

    assert _query(db_path, "SELECT COUNT(*) FROM events")[0][0] == accepted
    replies: dict[str, int] = {}
    for write in fake.writes():
        if write["public_reply"]:
            replies[write["ticket_id"]] = replies.get(write["ticket_id"], 0) + 1
    assert replies == {ticket_id: 1 for ticket_id in TICKETS}, (replies, writes_at_kill)
    statuses = dict(_query(db_path, f"SELECT status, COUNT(*) FROM decisions WHERE ticket_id = '{killed_ticket}' GROUP BY status"))
    assert statuses == {"recovered": 1}
    levels = dict(_query(db_path, "SELECT ticket_id, level FROM ticket_state"))
    assert levels == {ticket_id: "L1" for ticket_id in TICKETS}



def test_sigterm_hands_interrupted_work_back_without_waiting_for_the_lease(environment):
    tmp_path, fake, start = environment
    db_path = tmp_path / "var" / "escalation.db"
    from integration.store.db import Database
    from integration.store.events import DatabaseEventSink
    from tests.support.fake_connector import neutral_event

    database = Database(f"sqlite:///{db_path}")
    sink = DatabaseEventSink(database, None)  # no queue: the worker's reconciler finds the rows
    sink.accept(neutral_event(TICKETS[0], "term-1"), b'{"n": 1}', datetime.now(timezone.utc))
    database.dispose()
    # Passes slower than the shutdown grace, and a lease far longer than the test: only the SIGTERM
    # hand-back can explain a quick recovery.
    worker = start(worker_entry(fake, "--fetch-delay", "30"), "worker-1.log", LEASE_SECONDS="600")
    _wait(lambda: _query(db_path, "SELECT COUNT(*) FROM events WHERE status = 'processing'")[0][0] == 1,
          30, "the worker to claim the event", interval=0.1)
    # After huey's "Periodic tasks are disabled.", the worker says which of its own jobs run.
    _wait(lambda: "periodic jobs: reconcile every 1s" in (tmp_path / "worker-1.log").read_text(), 30,
          "the worker's periodic jobs line", interval=0.1)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0
    assert _query(db_path, "SELECT status, lease_owner FROM events") == [("pending", None)]
    assert _query(db_path, "SELECT COUNT(*) FROM leases WHERE name LIKE 'ticket:%'") == [(0,)]

    start(worker_entry(fake), "worker-2.log")
    _wait(lambda: _query(db_path, "SELECT status FROM events") == [("done",)], 30, "the event to be processed")
    assert fake.replies(TICKETS[0]) and len(fake.replies(TICKETS[0])) == 1


def test_serve_runs_web_and_worker_with_one_command(environment):
    tmp_path, fake, start = environment
    db_path = tmp_path / "var" / "escalation.db"
    port = _free_port()
    serve = start(worker_entry(fake, command="serve") + ["--port", str(port)], "serve.log")

    _wait(lambda: _ready(port), 30, "serve's web process", interval=0.2)
    assert _signed_post(port, _event(TICKETS[1], "ticket.created", 1), "serve-1") == 202
    _wait(lambda: _query(db_path, "SELECT status FROM events") == [("done",)], 30, "serve's worker to process it")
    assert len(fake.replies(TICKETS[1])) == 1
    serve.send_signal(signal.SIGTERM)
    assert serve.wait(timeout=20) == 0
