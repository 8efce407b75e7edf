"""Webhook intake benchmark: signed Zendesk endpoint vs a bare 204 endpoint, same server, same run, on
SQLite and on PostgreSQL.

    .venv/bin/python bench/bench_intake.py [--databases sqlite,postgresql] [--saturation-seconds 5] [--rounds 3]
        [--saturation-clients 16,32,64] [--seconds 5] [--rate 200] [--server procfile|gunicorn-sync] [--workers 2] [--threads 16]

For each database, starts the web server as deployed (`python -m webhooks.server`, waitress; or the
former gunicorn sync workers with --server gunicorn-sync) on 127.0.0.1 at a free port, serving
bench/intake_bench_app.py (the real edge plus `POST /bare`, 204, no work). PostgreSQL runs in a temporary
schema of --postgres-url (skipped with a note when unreachable). A load generator in a separate process
sends, in turn, bare requests and freshly signed, distinct Zendesk webhooks (signature check, parse,
durable insert, its ticket's task queued; nothing is a duplicate and every webhook is for a ticket no
earlier one named, so none is coalesced into an earlier task).

Headline: the saturated ratio, closed loop (clients sending as fast as they can): signed, durable
webhooks/s over bare 204s/s, each endpoint at its capacity. A closed loop saturates an endpoint only with
enough clients: bare 204s reach their rate with 16, while a signed webhook spends part of its time
waiting for its group commit (fsync), so 16 clients leave the CPU partly idle and the signed rate still
grows with 32 and 64. So the headline is measured at the largest --saturation-clients level (64, where
both rates are flat: bare 16 -> 64 and signed 32 -> 64 change less than run-to-run noise), in --rounds
rounds of bare-then-signed (other load on the machine drifts between runs; each round compares
neighbours), reported as the median round; goal >= 0.7 on every database, and RESULT judges it. The
other levels (default: 16) are printed the same way. With each signed run: the mean group
commit batch (deliveries per durable commit, from the web processes' own counts). Each run also prints
the web server's CPU per request (its processes' user + system time from /proc, over the requests
answered): steadier than a rate on a shared machine, and the number that says where the signed path's
cost goes. Also printed: the fixed-rate run (open loop, --rate req/s): achieved rate and p50/p99 (goal p99 < 50 ms).
With --held-bare-ms N, every saturated round also runs `POST /bare-held`: a 204 that waits N ms (no lock,
no work) before answering, the control that says how much of the signed path's cost is the server holding a
request open while its group commit completes rather than the work of the delivery itself.

The bare endpoint is a Flask route of the same app on the same server (`bench/intake_bench_app.py`);
the webhook routes are served by `webhooks.app.WebhookDispatcher`, in front of Flask.
Loopback only; bounded by request count and time.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.support.fake_connector import postgres_schema_url  # noqa: E402

SECRET = "bench-zendesk-signing-secret"
HOST = "127.0.0.1"


# ----------------------------------------------------------------------------------- load generator
def _zendesk_requests(count: int, first_ticket: int) -> list[tuple[bytes, dict[str, str]]]:
    from webhooks.signatures import zendesk_signature

    template = json.loads((REPO_ROOT / "tests" / "fixtures" / "zendesk" / "ticket_priority_changed.json").read_text())
    timestamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    prepared = []
    for i in range(count):
        ticket = str(first_ticket + i)
        template["id"] = str(uuid.uuid4())
        template["detail"]["id"] = ticket
        template["subject"] = f"zen:ticket:{ticket}"
        body = json.dumps(template).encode()
        prepared.append((body, {
            "Content-Type": "application/json",
            "X-Zendesk-Webhook-Signature": zendesk_signature(SECRET, timestamp, body),
            "X-Zendesk-Webhook-Signature-Timestamp": timestamp,
            "X-Zendesk-Webhook-Invocation-Id": str(uuid.uuid4()),
        }))
    return prepared


def _bare_requests(count: int) -> list[tuple[bytes, dict[str, str]]]:
    body = (REPO_ROOT / "tests" / "fixtures" / "zendesk" / "ticket_priority_changed.json").read_bytes()
    return [(body, {"Content-Type": "application/json"})] * count


def _send(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, float]:
    started = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        status = response.status
    except OSError:
        status = 0
    finally:
        conn.close()
    return status, time.perf_counter() - started


def run_load(port: int, path: str, *, rate: float | None, seconds: float, concurrency: int,
             first_ticket: int = 100000) -> dict:
    """Open loop at `rate` req/s, or closed loop (rate None) with `concurrency` clients; at most
    rate*seconds (or 20000) requests and `seconds` (+10 s drain) of wall time. Signed webhooks name
    tickets first_ticket, first_ticket + 1, ..."""
    limit = int(rate * seconds) if rate else 20000
    requests = _zendesk_requests(limit, first_ticket) if path.startswith("/webhooks/") else _bare_requests(limit)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    late_starts = 0
    lock = threading.Lock()
    next_index = 0
    start = time.perf_counter() + 0.05
    deadline = start + seconds

    def worker() -> None:
        nonlocal next_index, late_starts
        while True:
            with lock:
                index = next_index
                next_index += 1
            if index >= limit:
                return
            if rate:
                scheduled = start + index / rate
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -0.005:
                    with lock:
                        late_starts += 1
            if time.perf_counter() > deadline:
                return
            body, headers = requests[index]
            status, latency = _send(port, path, body, headers)
            with lock:
                latencies.append(latency)
                statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 10)
    elapsed = max(time.perf_counter() - start, 1e-9)
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    return {
        "path": path, "requests": len(latencies), "rps": len(latencies) / elapsed,
        "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": latencies[-1] * 1000 if latencies else float("nan"),
        "mean_ms": statistics.fmean(latencies) * 1000 if latencies else float("nan"),
        "statuses": statuses, "late_starts": late_starts,
    }


# ----------------------------------------------------------------------------------- orchestration
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _wait_ready(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the server did not become ready")


def _get_json(port: int, path: str) -> dict:
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    conn.request("GET", path)
    return json.loads(conn.getresponse().read())


_next_first_ticket = 100000


def _loadgen_process(port: int, path: str, rate: float | None, seconds: float, concurrency: int) -> dict:
    global _next_first_ticket
    first_ticket, _next_first_ticket = _next_first_ticket, _next_first_ticket + 100000  # tickets no run shares
    args = [sys.executable, __file__, "--loadgen", str(port), path, str(rate or 0), str(seconds), str(concurrency),
            str(first_ticket)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 120, cwd=REPO_ROOT)
    if done.returncode != 0:
        raise SystemExit(f"load generator failed:\n{done.stderr}")
    result = json.loads(done.stdout)
    result["statuses"] = {int(code): count for code, count in result["statuses"].items()}
    return result


def _server_cpu_seconds(pid: int) -> float:
    """User + system CPU of the server process and its children (the forked web processes), from /proc;
    0.0 where /proc is not there. Less noisy than a rate: what each request costs the server, whatever the
    load generator and other processes on the machine took meanwhile."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0
    pids = [pid]
    try:
        pids += [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return 0.0
    for each in pids:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / ticks


def _group_commit_counts(port: int) -> dict[int, tuple[int, int]]:
    """pid -> (batches, deliveries) of the web processes that answered (asked often enough to reach each)."""
    counts: dict[int, tuple[int, int]] = {}
    for _ in range(12):
        answer = _get_json(port, "/bench/sink")
        if "pid" in answer:
            counts[answer["pid"]] = (answer["batches"], answer["deliveries"])
    return counts


def _mean_batch(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]) -> float:
    batches = sum(after[pid][0] - before.get(pid, (0, 0))[0] for pid in after)
    deliveries = sum(after[pid][1] - before.get(pid, (0, 0))[1] for pid in after)
    return deliveries / batches if batches else float("nan")


def _flush_queue(queue_url: str) -> None:
    """Drop the tasks the bench enqueued (nothing consumes them) from a queue outside the temp dir."""
    try:
        from service.queue import build_huey

        build_huey(queue_url).flush()
    except Exception as exc:  # noqa: BLE001
        print(f"(could not flush the bench's tasks from {queue_url}: {type(exc).__name__})")


def _cpu_per_request(cpu_seconds: float, result: dict) -> str:
    requests = sum(result["statuses"].values())
    return f"  server CPU {cpu_seconds * 1000 / requests:.3f} ms/req" if cpu_seconds and requests else ""


def _line(label: str, result: dict) -> str:
    return (f"  {label:<22} {result['rps']:8.1f} req/s  p50 {result['p50_ms']:6.2f} ms  "
            f"p99 {result['p99_ms']:6.2f} ms  max {result['max_ms']:7.2f} ms  n={result['requests']}  "
            f"statuses={result['statuses']}  late_starts={result['late_starts']}")


def _server_command(args: argparse.Namespace, port: int) -> list[str]:
    if args.server == "gunicorn-sync":  # the setup before webhooks.server, for comparison
        return [sys.executable, "-m", "gunicorn", "--bind", f"{HOST}:{port}", "--workers", str(args.workers),
                "--worker-class", "sync", "--log-level", "warning", "intake_bench_app:app"]
    return [sys.executable, "-m", "webhooks.server", "--host", HOST, "--port", str(port), "--processes",
            str(args.workers), "--threads", str(args.threads), "--app", "intake_bench_app:app"]


def bench_database(database: str, postgres_url: str, tmp: str) -> tuple[str, Callable[[], None] | None] | None:
    """(url, drop) of a fresh database for one run: a SQLite file in `tmp` (drop None), or a temporary schema
    of `postgres_url` (drop removes it); None, with a line saying so, when PostgreSQL cannot be reached."""
    if database == "sqlite":
        return f"sqlite:///{tmp}/escalation.db", None
    try:
        return postgres_schema_url(postgres_url)
    except Exception as exc:  # noqa: BLE001 - reported, the other database still runs
        print(f"postgresql: skipped ({type(exc).__name__}: not reachable at the --postgres-url)")
        return None


def server_env(database_url: str, queue_url: str, **extra: str) -> dict[str, str]:
    """A bench server's environment: this one without vendor or webhook settings, plus the bench's signing
    secret, the database and queue, dry run and quiet logs, and the repository and bench/ on the path."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ZENDESK_", "JIRA_", "WEBHOOK_"))}
    env.update(ZENDESK_WEBHOOK_SECRET=SECRET, DATABASE_URL=database_url, QUEUE_URL=queue_url, DRY_RUN="true",
               LOG_LEVEL="WARNING", PYTHONPATH=os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "bench")]), **extra)
    return env


def run_database(args: argparse.Namespace, database: str, tmp: str) -> dict | None:
    """Both measurements against one server on `database`; None when it cannot be used."""
    fresh = bench_database(database, args.postgres_url, tmp)
    if fresh is None:
        return None
    database_url, drop = fresh
    where = f"SQLite in {tmp}" if database == "sqlite" else "PostgreSQL (a temporary schema)"
    env = server_env(database_url, args.queue_url or f"sqlite:///{tmp}/queue-{database}.db", BENCH_SINK=args.sink)
    try:  # create the schema once, before the server's processes would race to migrate it
        from integration.store.db import get_database

        get_database(database_url)
    except Exception as exc:  # noqa: BLE001
        print(f"(schema not pre-created: {type(exc).__name__})")
    port = _free_port()
    log_path = Path(tmp, f"server-{database}.log")
    server = subprocess.Popen(_server_command(args, port), env=env, cwd=tmp, stdout=subprocess.DEVNULL,
                              stderr=open(log_path, "w"))
    result: dict = {"database": database}
    try:
        _wait_ready(port, server)
        sinks = {_get_json(port, "/bench/sink")["sink"] for _ in range(4)}
        queue = env["QUEUE_URL"] if args.queue_url else "SQLite file"
        print(f"{database}: {args.server} ({args.workers} processes"
              + (f" x {args.threads} threads" if args.server == "procfile" else "")
              + f") on {HOST}:{port}; sink: {', '.join(sorted(sinks))}; database: {where}; queue: {queue}")
        # Warm both paths (imports, connections, pages) so neither pays first-request costs.
        _loadgen_process(port, "/bare", 50, 1, 4)
        _loadgen_process(port, "/webhooks/zendesk", 50, 1, 4)

        if args.saturation_seconds > 0:
            levels = sorted(int(n) for n in str(args.saturation_clients).split(",") if n.strip())
            print(f"  saturation: closed loop at {', '.join(map(str, levels))} clients, "
                  f"{args.saturation_seconds:.0f} s each, {args.rounds} round(s) of bare then signed per level:")
            statuses_ok = True
            by_level: dict[int, list[float]] = {}
            held_ratios: dict[int, list[float]] = {}
            for clients in levels:
                ratios = by_level.setdefault(clients, [])
                for round_number in range(1, args.rounds + 1):
                    cpu_before = _server_cpu_seconds(server.pid)
                    bare_max = _loadgen_process(port, "/bare", None, args.saturation_seconds, clients)
                    bare_cpu = _server_cpu_seconds(server.pid) - cpu_before
                    before = _group_commit_counts(port)
                    cpu_before = _server_cpu_seconds(server.pid)
                    signed_max = _loadgen_process(port, "/webhooks/zendesk", None, args.saturation_seconds, clients)
                    signed_cpu = _server_cpu_seconds(server.pid) - cpu_before
                    mean_batch = _mean_batch(before, _group_commit_counts(port))
                    print(_line(f"{round_number}: bare 204 x{clients}", bare_max) + _cpu_per_request(bare_cpu, bare_max))
                    print(_line(f"{round_number}: signed x{clients}", signed_max) + _cpu_per_request(signed_cpu, signed_max)
                          + f"  mean batch {mean_batch:.1f}")
                    ratios.append(signed_max["rps"] / bare_max["rps"] if bare_max["rps"] else float("nan"))
                    statuses_ok = statuses_ok and set(signed_max["statuses"]) == {202}
                    if args.held_bare_ms > 0:
                        cpu_before = _server_cpu_seconds(server.pid)
                        held = _loadgen_process(port, f"/bare-held?ms={args.held_bare_ms:g}", None,
                                                args.saturation_seconds, clients)
                        held_cpu = _server_cpu_seconds(server.pid) - cpu_before
                        print(_line(f"{round_number}: bare held {args.held_bare_ms:g} ms x{clients}", held)
                              + _cpu_per_request(held_cpu, held))
                        held_ratios.setdefault(clients, []).append(
                            held["rps"] / bare_max["rps"] if bare_max["rps"] else float("nan"))
                print(f"  {clients} clients: ratio signed/bare = {statistics.median(ratios):.3f} (median of "
                      f"{', '.join(f'{ratio:.3f}' for ratio in ratios)})")
                if clients in held_ratios:
                    print(f"  {clients} clients: ratio bare held {args.held_bare_ms:g} ms/bare = "
                          f"{statistics.median(held_ratios[clients]):.3f} (the control: no work, only held open)")
            result["saturated_ratio"] = statistics.median(by_level[levels[-1]])
            result["saturated_statuses_ok"] = statuses_ok
            print(f"  capacity ratio signed/bare = {result['saturated_ratio']:.3f} (at {levels[-1]} clients, "
                  f"where both endpoints are saturated)  (goal >= 0.7)")

        if args.seconds > 0:
            print(f"  fixed rate {args.rate:.0f} req/s for {args.seconds:.0f} s each (open loop, "
                  f"{args.concurrency} client threads, new connection per request):")
            bare = _loadgen_process(port, "/bare", args.rate, args.seconds, args.concurrency)
            signed = _loadgen_process(port, "/webhooks/zendesk", args.rate, args.seconds, args.concurrency)
            print(_line("bare 204", bare))
            print(_line("signed zendesk webhook", signed))
            result["fixed_ratio"] = signed["rps"] / bare["rps"] if bare["rps"] else float("nan")
            result["fixed_p99_ms"] = signed["p99_ms"]
            print(f"  ratio signed/bare requests/s = {result['fixed_ratio']:.3f};  signed p99 = "
                  f"{signed['p99_ms']:.2f} ms  (goal < 50 ms)")
        return result
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log = log_path.read_text()
        store_errors = [line for line in log.splitlines() if "result=store-error" in line or "DEBUG" in line]
        if store_errors:
            print(f"  {len(store_errors)} store error(s) in the server log, e.g.:\n    " + "\n    ".join(store_errors[:6]))
        if "Traceback" in log:
            print("server log (errors):\n" + log[-3000:])
        if drop is not None:
            from integration.store.db import reset_databases

            reset_databases()
            drop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=5.0, help="fixed-rate run per endpoint; 0 skips it")
    parser.add_argument("--server", choices=["procfile", "gunicorn-sync"], default="procfile",
                        help="procfile: python -m webhooks.server (waitress), as deployed; gunicorn-sync: the "
                             "setup before it, for comparison")
    parser.add_argument("--workers", type=int, default=2, help="server processes")
    parser.add_argument("--threads", type=int, default=16, help="threads per process (procfile server)")
    parser.add_argument("--concurrency", type=int, default=16, help="client threads of the fixed-rate run")
    parser.add_argument("--saturation-clients", default="16,64",
                        help="closed-loop client counts; the headline is the largest")
    parser.add_argument("--saturation-seconds", type=float, default=5.0, help="closed-loop run per endpoint")
    parser.add_argument("--rounds", type=int, default=5, help="saturated rounds (bare then signed); the median "
                        "round's ratio is the headline")
    parser.add_argument("--held-bare-ms", type=float, default=0, help="also run, in every saturated round, a 204 "
                        "held open this long with no work (the control: what holding a request costs the server); "
                        "0 skips it")
    parser.add_argument("--databases", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument("--postgres-url", default=os.environ.get(
        "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
        help="a temporary schema is created in it and dropped afterwards")
    parser.add_argument("--sink", default="", choices=["", "events", "database", "memory"])
    parser.add_argument("--queue-url", default="", help="default: a SqliteHuey file in the temp dir; "
                        "e.g. redis://127.0.0.1:6379/13 (the bench's tasks are flushed from it afterwards)")
    args = parser.parse_args()

    results = []
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp:
        try:
            for database in [name.strip() for name in args.databases.split(",") if name.strip()]:
                result = run_database(args, database, tmp)
                if result is not None:
                    results.append(result)
        finally:
            if args.queue_url:
                _flush_queue(args.queue_url)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"machine: {os.cpu_count()} CPUs, load average {load} (other processes skew these numbers)")
    saturated = [r for r in results if "saturated_ratio" in r]
    print("HEADLINE saturated closed-loop ratio signed/bare (goal >= 0.7): " + ", ".join(
        f"{r['database']} {r['saturated_ratio']:.3f}" for r in saturated))
    ok = bool(saturated) and all(r["saturated_ratio"] >= 0.7 and r["saturated_statuses_ok"] for r in saturated)
    print("RESULT:", "goals met" if ok else "goals NOT met",
          "(judged on the saturated ratio of every database run; every signed webhook answered 202)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--loadgen":
        port, path, rate, seconds, concurrency, first_ticket = sys.argv[2:8]
        result = run_load(int(port), path, rate=float(rate) or None, seconds=float(seconds),
                          concurrency=int(concurrency), first_ticket=int(first_ticket))
        print(json.dumps(result))
        sys.exit(0)
    sys.exit(main())
