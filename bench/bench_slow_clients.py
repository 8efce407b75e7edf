"""Slow-client probe: do connections that trickle their headers stall signed webhooks or /healthz?

    .venv/bin/python bench/bench_slow_clients.py [--seconds 30] [--slow 50] [--rate 20] [--server procfile|gunicorn-sync]

Starts the web server as the Procfile runs it (`--server procfile`, default: `python -m webhooks.server`)
or the former `gunicorn -w 2` sync setup (`--server gunicorn-sync`, for comparison) on 127.0.0.1 at a free
port, with a temporary SQLite database. Then, twice for --seconds each:
  1. without slow clients, 2. with --slow connections that send a request line and then one header byte
  per second, never finishing their request (reconnecting if the server drops them),
it sends freshly signed Zendesk webhooks at --rate per second (open loop: a stalled request does not
delay the next one) and probes GET /healthz 5 times a second, and prints p50/p99/max side by side.
Goal: signed p99 < 100 ms and /healthz p99 < 100 ms with the slow clients. Loopback only; every loop is
bounded by --seconds and every request by a timeout; the server is stopped at the end.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

SECRET = "bench-slow-clients-secret"
HOST = "127.0.0.1"
GOAL_MS = 100.0
SERVERS = {
    "procfile": lambda port: [sys.executable, "-m", "webhooks.server", "--host", HOST, "--port", str(port)],
    "gunicorn-sync": lambda port: [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"{HOST}:{port}",
                                   "webhooks.wsgi:app"],
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _signed_webhook() -> tuple[bytes, dict[str, str]]:
    from webhooks.signatures import zendesk_signature

    body = json.loads((REPO_ROOT / "tests" / "fixtures" / "zendesk" / "ticket_priority_changed.json").read_text())
    body["id"] = str(uuid.uuid4())
    raw = json.dumps(body).encode()
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return raw, {"Content-Type": "application/json", "X-Zendesk-Webhook-Signature-Timestamp": stamp,
                 "X-Zendesk-Webhook-Signature": zendesk_signature(SECRET, stamp, raw),
                 "X-Zendesk-Webhook-Invocation-Id": str(uuid.uuid4())}


def _timed(port: int, method: str, path: str, body: bytes | None, headers: dict, timeout: float) -> tuple[int, float]:
    started = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        status = response.status
    except OSError:
        status = 0  # refused, reset or timed out: counted, and its wait is still a latency
    finally:
        conn.close()
    return status, time.perf_counter() - started


def _open_loop(port: int, rate: float, seconds: float, make_request, timeout: float) -> dict:
    """Requests scheduled at `rate`/s for `seconds`; up to 64 in flight, so a stalled one never delays the
    schedule of the next."""
    total = max(1, int(rate * seconds))
    start = time.perf_counter() + 0.05
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    next_index = 0

    def worker() -> None:
        nonlocal next_index
        while True:
            with lock:
                index, next_index = next_index, next_index + 1
            if index >= total:
                return
            delay = start + index / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            method, path, body, headers = make_request()
            status, latency = _timed(port, method, path, body, headers, timeout)
            with lock:
                latencies.append(latency)
                statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(64, total))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + timeout + 5)
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    return {"n": len(latencies), "p50": pct(0.5), "p99": pct(0.99),
            "max": latencies[-1] * 1000 if latencies else float("nan"), "statuses": statuses}


def _slow_clients(port: int, count: int, seconds: float, stop: threading.Event) -> list[threading.Thread]:
    """`count` connections sending a request line, then one header byte a second, until `stop`."""

    def trickle() -> None:
        deadline = time.monotonic() + seconds
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                with socket.create_connection((HOST, port), timeout=5) as sock:
                    sock.sendall(b"POST /webhooks/zendesk HTTP/1.1\r\nHost: bench\r\nX-Trickle: ")
                    while not stop.wait(1.0) and time.monotonic() < deadline:
                        sock.sendall(b"a")
            except OSError:
                stop.wait(0.2)  # dropped by the server: come back, as an attacker would

    threads = [threading.Thread(target=trickle, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def _phase(port: int, seconds: float, rate: float, slow: int) -> tuple[dict, dict]:
    stop = threading.Event()
    slow_threads = _slow_clients(port, slow, seconds + 2, stop) if slow else []
    if slow:
        time.sleep(1.0)  # let every slow connection be accepted and start trickling
    timeout = seconds + 30
    results: dict[str, dict] = {}

    def signed() -> None:
        results["signed"] = _open_loop(port, rate, seconds, lambda: ("POST", "/webhooks/zendesk", *_signed_webhook()),
                                       timeout)

    def health() -> None:
        results["healthz"] = _open_loop(port, 5, seconds, lambda: ("GET", "/healthz", None, {}), timeout)

    runners = [threading.Thread(target=signed), threading.Thread(target=health)]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join()
    stop.set()
    for thread in slow_threads:
        thread.join(timeout=5)
    return results["signed"], results["healthz"]


def _row(label: str, signed: dict, health: dict) -> str:
    return (f"  {label:<24} signed p50 {signed['p50']:8.1f}  p99 {signed['p99']:8.1f}  max {signed['max']:8.1f} ms "
            f"n={signed['n']} {signed['statuses']} | /healthz p99 {health['p99']:8.1f}  max {health['max']:8.1f} ms "
            f"n={health['n']} {health['statuses']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    parser.add_argument("--slow", type=int, default=50, help="slow connections in the second phase")
    parser.add_argument("--rate", type=float, default=20.0, help="signed webhooks per second")
    parser.add_argument("--server", choices=sorted(SERVERS), default="procfile")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-slow-") as tmp:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("ZENDESK_", "JIRA_", "WEBHOOK_"))}
        env.update(ZENDESK_WEBHOOK_SECRET=SECRET, DATABASE_URL=f"sqlite:///{tmp}/escalation.db",
                   QUEUE_URL=f"sqlite:///{tmp}/queue.db", DRY_RUN="true", LOG_LEVEL="WARNING",
                   PYTHONPATH=str(REPO_ROOT))
        port = _free_port()
        command = SERVERS[args.server](port)
        log = open(f"{tmp}/server.log", "w")
        server = subprocess.Popen(command, env=env, cwd=tmp, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 30
            while _timed(port, "GET", "/readyz", None, {}, 2)[0] != 200:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the server did not become ready:\n" + Path(tmp, "server.log").read_text()[-2000:])
                time.sleep(0.2)
            print(f"server: {args.server}: {' '.join(command[1:])}")
            print(f"{args.rate:.0f} signed webhooks/s and 5 /healthz/s for {args.seconds:.0f} s per phase (open loop):")
            calm = _phase(port, args.seconds, args.rate, 0)
            print(_row("without slow clients", *calm), flush=True)
            loaded = _phase(port, args.seconds, args.rate, args.slow)
            print(_row(f"with {args.slow} slow clients", *loaded))
            signed, health = loaded
            ok = (signed["p99"] < GOAL_MS and health["p99"] < GOAL_MS and set(signed["statuses"]) == {202}
                  and set(health["statuses"]) == {200})
            print(f"goal: with {args.slow} slow clients signed p99 < {GOAL_MS:.0f} ms, /healthz p99 < {GOAL_MS:.0f} ms, "
                  f"no failed request")
            load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
            print(f"machine: {os.cpu_count()} CPUs, load average {load} (other processes skew these numbers)")
            print("RESULT:", "goals met" if ok else "goals NOT met")
            return 0 if ok else 1
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            log.close()


if __name__ == "__main__":
    sys.exit(main())
