"""`python -m webhooks.server` (waitress) as the Procfile runs it: refuses to start on bad configuration,
and serves health and authenticated webhook routes on good configuration, from every process."""
from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent


def _env(tmp_path: Path, **changes: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ZENDESK_", "JIRA_", "WEBHOOK_"))}
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        DATABASE_URL=f"sqlite:///{tmp_path}/escalation.db",
        QUEUE_URL=f"sqlite:///{tmp_path}/queue.db",
        DRY_RUN="true",
    )
    env.update(changes)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server(port: int) -> list[str]:
    return [sys.executable, "-m", "webhooks.server", "--host", "127.0.0.1", "--port", str(port), "--processes", "2"]


def test_server_refuses_to_start_on_bad_config(tmp_path):
    done = subprocess.run(
        _server(_free_port()), cwd=tmp_path, env=_env(tmp_path, WEBHOOK_MAX_AGE_SECONDS="0"),
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode != 0
    assert "ConfigurationError: invalid configuration" in done.stderr
    assert "WEBHOOK_MAX_AGE_SECONDS: Input should be greater than 0" in done.stderr


def _request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    return response.status, response.read()


def test_server_serves_the_edge(tmp_path):
    port = _free_port()
    server = subprocess.Popen(
        _server(port), cwd=tmp_path, env=_env(tmp_path, ZENDESK_WEBHOOK_SECRET="e2e-secret"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.time() + 30
        while True:
            try:
                status, body = _request(port, "GET", "/healthz")
                break
            except OSError:
                assert server.poll() is None, server.stderr.read()
                assert time.time() < deadline, "the server did not start"
                time.sleep(0.1)
        assert (status, body) == (200, b'{"status":"ok"}\n')
        status, body = _request(port, "POST", "/webhooks/zendesk", b"{}", {"Content-Type": "application/json"})
        assert (status, body) == (401, b'{"error":"missing X-Zendesk-Webhook-Signature header"}\n')
        status, body = _request(port, "POST", "/webhooks/jira", b"{}", {"Content-Type": "application/json"})
        assert (status, body) == (503, b'{"error":"JIRA_WEBHOOK_SECRET or JIRA_SHARED_SECRET is not configured"}\n')
        # Both processes answer (new connections land on either): none failed to boot.
        for _ in range(20):
            assert _request(port, "GET", "/healthz")[0] == 200
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=15)
    assert "e2e-secret" not in stderr


def test_a_burst_beyond_the_worker_threads_does_not_write_a_log_line_per_request(tmp_path):
    """Deliveries wait for their group commit, so all worker threads being busy is normal under load:
    waitress's "Task queue depth is N" warning, one line per queued request, must not flood the log."""
    port = _free_port()
    command = [sys.executable, "-m", "webhooks.server", "--host", "127.0.0.1", "--port", str(port),
               "--processes", "1", "--threads", "1"]
    server = subprocess.Popen(command, cwd=tmp_path, env=_env(tmp_path, ZENDESK_WEBHOOK_SECRET="e2e-secret"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        while True:
            try:
                assert _request(port, "GET", "/healthz")[0] == 200
                break
            except OSError:
                assert server.poll() is None, server.stderr.read()
                assert time.time() < deadline, "the server did not start"
                time.sleep(0.1)
        # Every connection's request sent before any answer is read: one thread, so they queue.
        connections = []
        for _ in range(40):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/webhooks/zendesk", body=b"{}", headers={"Content-Type": "application/json"})
            connections.append(conn)
        statuses = [conn.getresponse().status for conn in connections]
        assert statuses == [401] * 40
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=15)
    assert "Task queue depth" not in stderr
    assert stderr.count("result=rejected status=401") == 40  # the server logged, and logged each delivery
