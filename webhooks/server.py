"""The production web server: `python -m webhooks.server` (the Procfile's `web:` line and `escalation serve`).

Why waitress, and why not gunicorn's sync workers: a sync worker reads the request it is given itself,
so a client that trickles its headers holds the worker for as long as it likes; two such connections
stalled all intake and /healthz for 14-30 s. gthread has the same problem once slow connections outnumber
its threads. Waitress reads every request on one asyncore loop and hands a request to a worker thread
only once it is complete (headers and body buffered), so slow clients cost a socket and a buffer, not a
thread. Its worker threads are also what lets deliveries share a group commit (integration.store.events).

WEB_CONCURRENCY processes (default 2, one per core) share one listening socket, bound here before the
fork; each runs WEB_THREADS worker threads (default 16). The WSGI app is imported once, before the fork,
so invalid settings stop the server at once with a message naming them; the database and queue are
connected lazily in each process. SIGTERM/SIGINT stop every process; if one exits, the others are stopped
and the server exits with its status (the platform restarts it).
"""
from __future__ import annotations

import argparse
import gc
import importlib
import logging
import os
import signal
import socket
import sys

from service import telemetry
from webhooks.app import load_settings

# Enough for slow or idle clients to be harmless (each is a socket and a buffer) on one process.
CONNECTION_LIMIT = 2000
# A client that sends nothing for this long is dropped; vendors send a whole request at once.
CHANNEL_TIMEOUT_SECONDS = 30


class ServerOptionError(ValueError):
    """PORT, WEB_CONCURRENCY or WEB_THREADS is not a positive whole number."""


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ServerOptionError(f"{name} must be a whole number, not {value[:20]!r}") from None
    if number < 1:
        raise ServerOptionError(f"{name} must be at least 1")
    return number


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m webhooks.server", description="Serve the webhook edge.")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=None, help="default: PORT or 8000")
    parser.add_argument("--processes", type=int, default=None, help="default: WEB_CONCURRENCY or 2")
    parser.add_argument("--threads", type=int, default=None, help="default: WEB_THREADS or 16")
    parser.add_argument("--app", default="webhooks.wsgi:app",
                        help="WSGI app as module:attribute (benchmarks serve a variant of the edge)")
    args = parser.parse_args(argv)
    args.port = args.port if args.port is not None else _int_env("PORT", 8000)
    args.processes = args.processes if args.processes is not None else _int_env("WEB_CONCURRENCY", 2)
    args.threads = args.threads if args.threads is not None else _int_env("WEB_THREADS", 16)
    return args


def _serve(app, listener: socket.socket, threads: int, max_body_bytes: int) -> None:
    import waitress

    from service.runtime import request_matrix_reload

    # SIGHUP: reload MATRIX_PATH (validated first; a broken file leaves the running matrix in place).
    signal.signal(signal.SIGHUP, lambda _signum, _frame: request_matrix_reload())
    waitress.serve(
        app,
        sockets=[listener],
        threads=threads,
        connection_limit=CONNECTION_LIMIT,
        channel_timeout=CHANNEL_TIMEOUT_SECONDS,
        asyncore_use_poll=True,  # select() stops at 1024 descriptors
        # Refused by waitress before the body is buffered; the edge's own 413 names the setting.
        max_request_body_size=max_body_bytes + 1,
        ident="escalation",
        _quiet=True,
    )


def main(argv: list[str] | None = None) -> int:
    """The process: returns its exit status (1: a bad option, or a web process failed)."""
    log = logging.getLogger("webhooks.server")
    try:
        args = parse_args(argv)
    except ServerOptionError as exc:
        log.error("%s", exc)  # logging is not configured yet: Python prints the bare message to stderr
        return 1
    module_name, _, attribute = args.app.partition(":")
    module = importlib.import_module(module_name)  # webhooks.wsgi: a ConfigurationError names every bad setting
    app = getattr(module, attribute or "app")
    settings = load_settings()
    metrics_dir = telemetry.prepare_multiprocess_dir()  # before the fork: every web process writes there

    # Everything imported so far (Flask, SQLAlchemy, pydantic, the app) lives as long as the process: out of
    # the collector's sight, a full collection no longer walks it while requests wait, and the forked
    # processes do not touch (and so copy) the parent's pages to update its GC bookkeeping. In one A/B run
    # of signed webhooks at 16 clients on SQLite: 0.96 vs 1.03 ms of web-process CPU per delivery.
    gc.collect()
    gc.freeze()
    # Waitress logs "Task queue depth is N" at WARNING, from its one I/O thread, for every request that
    # arrives while all worker threads are busy. Here busy threads are the normal state under load (each
    # delivery waits for its group commit), so a burst wrote a line per request, and formatting them took
    # 6% of the I/O thread's time at 64 clients (py-spy --gil), the thread every request goes through.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    listener = socket.create_server((args.host, args.port), backlog=1024)
    listener.setblocking(False)
    log.info("listening on http://%s:%d: %d process(es) x %d threads (waitress); metrics in %s",
             args.host, args.port, args.processes, args.threads, metrics_dir)
    if args.processes == 1:
        _serve(app, listener, args.threads, settings.webhook_max_body_bytes)
        return 0

    children: list[int] = []
    for _ in range(args.processes):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 0
            try:
                _serve(app, listener, args.threads, settings.webhook_max_body_bytes)
            except BaseException:  # noqa: BLE001 - logged, then this process's status says it failed
                logging.getLogger("webhooks.server").exception("web process failed")
                code = 1
            finally:
                os._exit(code)
        children.append(pid)
    listener.close()

    stopping = False

    def stop(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            try:
                os.kill(child, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def reload(_signum, _frame) -> None:
        for child in children:
            try:
                os.kill(child, signal.SIGHUP)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    status = 0
    remaining = set(children)
    while remaining:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        remaining.discard(pid)
        telemetry.process_exited(pid)
        code = os.waitstatus_to_exitcode(wait_status)
        if not stopping:
            log.error("web process %d exited with %s; stopping the others", pid, code)
            status = code if code > 0 else 1
            stop(signal.SIGTERM, None)
    return status


if __name__ == "__main__":
    sys.exit(main())
