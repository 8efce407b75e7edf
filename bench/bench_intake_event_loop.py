"""Research prototype, not the service: would an event-loop web server lift signed, durable intake towards
bare 204s? bench_intake.py finds the signed path's extra CPU is mostly waitress holding each request open
(a worker thread and a scan of every open connection per I/O-loop wake-up) while its group commit
completes, not the delivery's own work. This serves the same two endpoints from asyncio instead, and runs
the same closed-loop rounds side by side.

    .venv/bin/python bench/bench_intake_event_loop.py [--databases sqlite,postgresql] [--rounds 5] [--clients 64]

The server (2 processes sharing one listening socket, as webhooks.server): HTTP parsed by h11 on the event
loop; `POST /bare` answers 204; `POST /webhooks/zendesk` runs the real edge's pieces (signature check,
JSON decode, the Zendesk parser, the store's length checks) on the loop, then queues the delivery; one
commit at a time per process runs in one executor thread with the web sink's own batch code
(`_store_batch` under the processes' turn, then `_enqueue_tasks`), and when it returns the loop answers
every member 202 — one thread hand-off per batch instead of a sleeping thread per delivery. Everything
production does on the way (Flask's bare route, the 413/415 checks, logs, counters, readiness) is not here,
so read the result as an upper bound on what replacing waitress could give. Same database set-up, load
generator and loopback as bench_intake.py; 2 cores shared with the load generator.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

import h11  # noqa: E402
from werkzeug.datastructures import Headers  # noqa: E402

from bench_intake import (  # noqa: E402
    HOST, _cpu_per_request, _free_port, _line, _loadgen_process, _server_cpu_seconds, bench_database, server_env,
)
from webhooks.delivery import _check_storable  # noqa: E402
from webhooks.errors import Rejected  # noqa: E402
from webhooks.parsing import decode_json_object  # noqa: E402


# ----------------------------------------------------------------------------------------- server
class _Intake:
    """One process's edge: the Zendesk route's checks on the loop, batches committed off it."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        from integration.store import events as events_module
        from service.settings import Settings
        from service.sink import build_event_sink
        from webhooks.app import create_app

        settings = Settings()
        self.events = events_module
        self.sink = build_event_sink(settings)
        self.route = create_app(settings, sink=self.sink).extensions["webhook_edge"].routes["zendesk"]
        self.loop = loop
        self.committer = ThreadPoolExecutor(max_workers=1)
        self.queued: list[tuple[object, asyncio.Future]] = []
        self.committing = False

    def accept(self, headers, body: bytes) -> asyncio.Future | tuple[int, bytes]:
        try:
            self.route.authenticate(headers, body)
            payload = decode_json_object(body)
            event = self.route.parse(payload, (headers.get(self.route.delivery_header) or "").strip() or None)
            _check_storable(event)
        except Rejected as rejection:
            return rejection.status, json.dumps({"error": rejection.message}).encode()
        delivery = self.events._Delivery(event, body, datetime.now(timezone.utc), self.events.content_hash(body))
        future = self.loop.create_future()
        self.queued.append((delivery, future))
        if not self.committing:
            self._commit_next()
        return future

    def _commit_next(self) -> None:
        batch, self.queued = self.queued, []
        self.committing = True
        done = self.loop.run_in_executor(self.committer, self._commit, [delivery for delivery, _ in batch])
        done.add_done_callback(lambda outcome: self._answer(batch, outcome))

    def _commit(self, deliveries: list) -> None:
        with self.sink._writers.turn():
            self.sink._store_batch(deliveries)
        self.sink._enqueue_tasks(deliveries)

    def _answer(self, batch, outcome: asyncio.Future) -> None:
        for delivery, future in batch:
            if outcome.exception() is not None or delivery.result is None:
                future.set_result((503, b'{"error":"event store unavailable, retry later"}'))
            else:
                status = 200 if delivery.result.duplicate else 202
                text = "duplicate" if delivery.result.duplicate else "accepted"
                future.set_result((status, json.dumps({"status": text, "event_id": delivery.result.event_id}).encode()))
        self.committing = False
        if self.queued:
            self._commit_next()


class _Connection(asyncio.Protocol):
    def __init__(self, intake: _Intake):
        self.intake = intake
        self.conn = h11.Connection(h11.SERVER)
        self.transport: asyncio.Transport | None = None
        self.request = None
        self.body: list[bytes] = []

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError:
                self._send(400, b'{"error":"bad request"}')
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self.request, self.body = event, []
            elif isinstance(event, h11.Data):
                self.body.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._dispatch()
                return
            elif isinstance(event, h11.ConnectionClosed):
                return

    def _dispatch(self) -> None:
        target = self.request.target
        if target == b"/bare":
            self._send(204, b"")
        elif target == b"/healthz":
            self._send(200, b'{"status":"ok"}')
        elif target == b"/webhooks/zendesk":
            headers = Headers([(name.decode("latin-1"), value.decode("latin-1")) for name, value in self.request.headers])
            answer = self.intake.accept(headers, b"".join(self.body))
            if isinstance(answer, tuple):
                self._send(*answer)
            else:
                answer.add_done_callback(lambda future: self._send(*future.result()))
        else:
            self._send(404, b'{"error":"not found"}')

    def _send(self, status: int, body: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        headers = [("Content-Length", str(len(body))), ("Connection", "close")]
        if body:
            headers.append(("Content-Type", "application/json"))
        data = self.conn.send(h11.Response(status_code=status, headers=headers))
        if body:
            data += self.conn.send(h11.Data(data=body))
        data += self.conn.send(h11.EndOfMessage())
        self.transport.write(data)
        self.transport.close()


def serve(port: int, processes: int) -> None:
    listener = socket.create_server((HOST, port), backlog=1024)
    listener.setblocking(False)
    children = []
    for _ in range(processes):
        pid = os.fork()
        if pid == 0:
            loop = asyncio.new_event_loop()
            intake = _Intake(loop)
            loop.run_until_complete(loop.create_server(lambda: _Connection(intake), sock=listener))
            loop.add_signal_handler(signal.SIGTERM, loop.stop)
            loop.run_forever()
            os._exit(0)
        children.append(pid)
    signal.signal(signal.SIGTERM, lambda *_: [os.kill(child, signal.SIGTERM) for child in children])
    for _ in children:
        os.wait()


# ------------------------------------------------------------------------------------------ bench
def run_database(database: str, args: argparse.Namespace, tmp: str) -> float | None:
    fresh = bench_database(database, args.postgres_url, tmp)
    if fresh is None:
        return None
    database_url, drop = fresh
    from integration.store.db import get_database, reset_databases

    get_database(database_url)  # the schema, before the processes would race to create it
    env = server_env(database_url, f"sqlite:///{tmp}/queue-{database}.db")
    port = _free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), str(args.processes)], env=env, cwd=tmp,
                              stdout=subprocess.DEVNULL, stderr=open(Path(tmp, f"server-{database}.log"), "w"))
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit(f"the prototype server did not start: {Path(tmp, f'server-{database}.log').read_text()[-2000:]}")
                time.sleep(0.1)
        _loadgen_process(port, "/bare", 50, 1, 4)
        _loadgen_process(port, "/webhooks/zendesk", 50, 1, 4)
        print(f"{database}: event-loop prototype ({args.processes} processes) on {HOST}:{port}, "
              f"{args.rounds} rounds of bare then signed at {args.clients} clients, {args.seconds:.0f} s each:")
        ratios = []
        for round_number in range(1, args.rounds + 1):
            results = {}
            for label, path in (("bare 204", "/bare"), ("signed", "/webhooks/zendesk")):
                before = _server_cpu_seconds(server.pid)
                result = _loadgen_process(port, path, None, args.seconds, args.clients)
                results[label] = result
                print(_line(f"{round_number}: {label} x{args.clients}", result)
                      + _cpu_per_request(_server_cpu_seconds(server.pid) - before, result))
            ratios.append(results["signed"]["rps"] / results["bare 204"]["rps"])
            if set(results["signed"]["statuses"]) != {202}:
                print(f"  signed statuses {results['signed']['statuses']}: not every webhook was accepted")
        median = statistics.median(ratios)
        print(f"  ratio signed/bare = {median:.3f} (median of {', '.join(f'{ratio:.3f}' for ratio in ratios)})")
        return median
    finally:
        server.terminate()
        server.wait(timeout=15)
        reset_databases()
        if drop is not None:
            drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--postgres-url", default=os.environ.get(
        "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-intake-loop-") as tmp:
        medians = {database: run_database(database, args, tmp) for database in args.databases.split(",")}
    print(f"machine: {os.cpu_count()} CPUs, load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("prototype ratio signed/bare: " + ", ".join(f"{db} {m:.3f}" for db, m in medians.items() if m is not None)
          + "  (compare bench_intake.py's headline on the production server)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), int(sys.argv[3]))
        sys.exit(0)
    main()
