"""Live matrix reload in real processes (issue 14): webhooks.server (master + 2 web processes) and the worker
(`escalation worker` with the fake helpdesk, tests/support/worker_entry.py). SIGHUP with a broken
MATRIX_PATH is refused (the web processes' /readyz says why and stays 200, the worker logs the
FILE:LINE:COL lines and is not re-executed by huey), webhooks keep being accepted and processed with the
last good matrix; SIGHUP with a valid file makes new tickets take the new version without a restart."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from matrix_config.loader import load_matrix
from tests.conftest import REPO_ROOT
from tests.support.fake_connector import FakeConnector, FileStore
from tests.test_e2e_processes import SECRET, _event, _free_port, _signed_post, _wait, worker_entry

pytestmark = pytest.mark.slow

BASE = Path(__file__).resolve().parent / "matrix" / "replay" / "base.yaml"
BIN = Path(sys.executable).parent


def _readyz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return 0, {}


def _pin(db_path: Path, ticket_id: str) -> str | None:
    with sqlite3.connect(db_path, timeout=10) as conn:
        row = conn.execute("SELECT matrix_version FROM ticket_state WHERE ticket_id = ?", (ticket_id,)).fetchone()
    return row[0] if row else None


def test_sighup_reloads_the_web_and_worker_processes_and_a_broken_file_keeps_the_last_good(tmp_path: Path) -> None:
    matrix_path = tmp_path / "matrix.yaml"
    matrix_path.write_text(BASE.read_text())
    v1 = load_matrix(BASE).version
    fake = FakeConnector("zendesk", store=FileStore(tmp_path / "vendor"))
    for ticket_id in ("8001", "8002", "8003"):
        fake.put(ticket_id)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "DATABASE_URL": f"sqlite:///{tmp_path}/var/escalation.db",
           "QUEUE_URL": f"sqlite:///{tmp_path}/var/queue.db", "MATRIX_PATH": str(matrix_path),
           "ZENDESK_WEBHOOK_SECRET": SECRET, "DRY_RUN": "false", "MATRIX_WATCH_SECONDS": "3600",
           "RECONCILE_INTERVAL_SECONDS": "1", "SHUTDOWN_TIMEOUT_SECONDS": "2", "LOG_LEVEL": "INFO"}
    subprocess.run([str(BIN / "escalation"), "migrate"], env=env, cwd=tmp_path, check=True, capture_output=True)
    port = _free_port()
    procs = []
    for args, log_name in (([sys.executable, "-m", "webhooks.server", "--host", "127.0.0.1", "--port", str(port),
                             "--processes", "2"], "web.log"), (worker_entry(fake), "worker.log")):
        procs.append(subprocess.Popen(args, env=env, cwd=tmp_path, stdout=open(tmp_path / log_name, "ab"),
                                      stderr=subprocess.STDOUT, start_new_session=True))
    web, worker = procs
    db_path = tmp_path / "var" / "escalation.db"
    try:
        _wait(lambda: _readyz(port)[0] == 200, 30, "the web processes to be ready", interval=0.2)
        assert _signed_post(port, _event("8001", "ticket.created", 1), "inv-8001") == 202
        _wait(lambda: _pin(db_path, "8001"), 30, "ticket 8001 to be decided", interval=0.2)
        assert _pin(db_path, "8001") == v1

        matrix_path.write_text(BASE.read_text().replace("sla: {acknowledge: 1h, resolve: 1d}",
                                                        "sla: {acknowledge: 1h, resolv: 1d}"))
        web.send_signal(signal.SIGHUP)
        worker.send_signal(signal.SIGHUP)
        refused = f"ok, reload refused: {matrix_path}:37:"

        def both_web_processes_refused() -> bool:
            answers = [_readyz(port) for _ in range(8)]
            return all(status == 200 and body["checks"]["matrix"].startswith(refused) for status, body in answers)

        _wait(both_web_processes_refused, 30, "/readyz to show the refused reload", interval=0.2)
        assert _signed_post(port, _event("8002", "ticket.created", 1), "inv-8002") == 202
        _wait(lambda: _pin(db_path, "8002"), 30, "ticket 8002 to be decided", interval=0.2)
        assert _pin(db_path, "8002") == v1  # processed with the last good matrix
        worker_log = (tmp_path / "worker.log").read_text()
        assert f"{matrix_path}:37:" in worker_log and "refused" in worker_log
        assert worker.poll() is None and web.poll() is None
        assert "Consumer will restart" not in worker_log

        matrix_path.write_text(BASE.read_text().replace("sla: {acknowledge: 1h, resolve: 1d}",
                                                        "sla: {acknowledge: 30m, resolve: 1d}"))
        v2 = load_matrix(matrix_path).version
        web.send_signal(signal.SIGHUP)
        worker.send_signal(signal.SIGHUP)
        _wait(lambda: all(_readyz(port)[1].get("checks", {}).get("matrix") == "ok" for _ in range(8)), 30,
              "/readyz to show the reloaded matrix", interval=0.2)
        assert _signed_post(port, _event("8003", "ticket.created", 1), "inv-8003") == 202
        _wait(lambda: _pin(db_path, "8003"), 30, "ticket 8003 to be decided", interval=0.2)
        assert _pin(db_path, "8003") == v2
        assert _pin(db_path, "8001") == v1  # MATRIX_REPIN=none: tickets in flight keep their version
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
