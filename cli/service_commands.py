"""`escalation serve | worker | migrate | reconcile | events list|retry | tickets repin`."""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import click


def _settings(matrix: str | None = None):
    from pydantic import ValidationError

    from integration.settings import Settings

    if matrix:
        os.environ["MATRIX_PATH"] = matrix
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise click.ClickException(f"invalid configuration: {problems}") from None
    logging.basicConfig(
        level=getattr(logging, settings.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(processName)s %(name)s %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return settings


def _runtime(settings):
    from integration.tasks import get_runtime

    try:
        runtime = get_runtime(settings)
        runtime.matrix()  # fail fast on a missing or invalid matrix
    except FileNotFoundError as exc:
        raise click.ClickException(f"matrix file not found: {exc.filename}") from None
    return runtime


def _escalation_command() -> list[str]:
    script = Path(sys.executable).parent / "escalation"
    if script.exists():
        return [str(script)]
    found = shutil.which("escalation")
    return [found] if found else [sys.executable, "-c", "from cli.main import main; main()"]


def run_worker(settings, concurrency: int | None = None) -> None:
    from integration.tasks import PeriodicJobs

    runtime = _runtime(settings)
    log = logging.getLogger("escalation.worker")
    report = runtime.reconcile()
    log.info("startup reconcile: %s", report)
    periodic = PeriodicJobs(runtime)
    periodic.start()
    consumer = runtime.huey.create_consumer(
        workers=concurrency or settings.worker_concurrency,
        worker_type="thread",
        periodic=False,  # the reconciler and catch-up scan run in PeriodicJobs, under a lease
        initial_delay=0.1,
        backoff=1.15,
        max_delay=1.0,
        scheduler_interval=1,
        graceful_signal="TERM",  # SIGTERM: finish running passes, up to SHUTDOWN_TIMEOUT_SECONDS
        shutdown_timeout=settings.shutdown_timeout_seconds or None,
    )
    try:
        consumer.run()
    finally:
        periodic.stop()


def register(group: click.Group) -> None:
    @group.command("migrate")
    def migrate() -> None:
        """Create or upgrade the database schema (also done by serve and worker at start)."""
        from integration.db import Database
        from integration.migrations import current_revision

        settings = _settings()
        db = Database(settings.database_url)
        db.migrate()
        click.echo(f"database at revision {current_revision(db.engine)}")

    @group.command("worker")
    @click.option("--concurrency", type=int, default=None, help="Worker threads (default WORKER_CONCURRENCY).")
    def worker(concurrency: int | None) -> None:
        """Process queued events and timers; runs the reconciler and catch-up scan (one worker at a time)."""
        run_worker(_settings(), concurrency)

    @group.command("serve")
    @click.option("--matrix", type=click.Path(exists=True, dir_okay=False), default=None,
                  help="Matrix file (default MATRIX_PATH).")
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--port", type=int, default=lambda: int(os.environ.get("PORT", "8000")), show_default="PORT or 8000")
    @click.option("--web-concurrency", type=int, default=lambda: int(os.environ.get("WEB_CONCURRENCY", "2")),
                  show_default="WEB_CONCURRENCY or 2")
    def serve(matrix: str | None, host: str, port: int, web_concurrency: int) -> None:
        """Run the webhook server (gunicorn) and one worker together: one command for one machine."""
        settings = _settings(matrix)
        _runtime(settings)  # migrate and validate before starting children
        env = dict(os.environ)
        procs = {
            "web": subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-w", str(web_concurrency), "-b", f"{host}:{port}",
                 "webhooks.wsgi:app"], env=env),
            "worker": subprocess.Popen(_escalation_command() + ["worker"], env=env),
        }
        click.echo(f"escalation: web on http://{host}:{port} (pid {procs['web'].pid}), "
                   f"worker pid {procs['worker'].pid}; dry run: {settings.dry_run if settings.dry_run is not None else 'unless credentials are set'}")

        def forward(signum, _frame):
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        code = 0
        try:
            while True:
                for name, proc in procs.items():
                    result = proc.poll()
                    if result is not None:
                        code = result
                        raise StopIteration(name)
                time.sleep(0.5)
        except StopIteration as stopped:
            click.echo(f"escalation: {stopped.value} exited with {code}; stopping the rest", err=True)
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + settings.shutdown_timeout_seconds + 5
        for proc in procs.values():
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
        sys.exit(code)

    @group.command("reconcile")
    @click.option("--scan/--no-scan", default=True, show_default=True, help="Also run the catch-up scan.")
    @click.option("--inline", is_flag=True, help="Process here and now instead of enqueueing for workers.")
    def reconcile(scan: bool, inline: bool) -> None:
        """One reconciler pass now: re-enqueue events whose worker died, forgotten events, overdue timers."""
        runtime = _runtime(_settings())
        report = runtime.reconcile(inline=inline)
        click.echo(f"reconcile: {report}")
        if scan:
            click.echo(f"catch-up scan: {runtime.catch_up_scan(inline=inline)} ticket(s) hinted")

    @group.group("events")
    def events() -> None:
        """Inspect stored webhook events and retry dead letters."""

    @events.command("list")
    @click.option("--status", type=click.Choice(["pending", "processing", "done", "ignored", "dead"]), default=None)
    @click.option("--limit", type=int, default=50, show_default=True)
    @click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
    def events_list(status: str | None, limit: int, fmt: str) -> None:
        """Newest events first (dead letters with their reason)."""
        from integration.events import count_by_status, list_events

        runtime = _runtime(_settings())
        rows = list_events(runtime.db, status=status, limit=limit)
        if fmt == "json":
            click.echo(json.dumps([r.to_dict() for r in rows], indent=2))
            return
        counts = count_by_status(runtime.db)
        click.echo("  ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "no events")
        for r in rows:
            line = (f"{r.id:>6} {r.status:<10} {r.vendor}:{r.ticket_id} {r.event_type} attempts={r.attempts} "
                    f"received={r.received_at:%Y-%m-%d %H:%M:%S}")
            if r.last_error and r.status in ("dead", "pending"):
                line += f"  error: {r.last_error}"
            click.echo(line)

    @events.command("retry")
    @click.argument("ids", nargs=-1, type=int)
    @click.option("--all-dead", is_flag=True, help="Retry every dead letter.")
    def events_retry(ids: tuple[int, ...], all_dead: bool) -> None:
        """Put dead-lettered events back in the queue (fresh attempt budget)."""
        from integration.events import retry_dead

        if not ids and not all_dead:
            raise click.UsageError("give event ids or --all-dead")
        runtime = _runtime(_settings())
        tickets = retry_dead(runtime.db, None if all_dead else ids)
        for vendor, ticket_id in tickets:
            runtime.enqueue_ticket(vendor, ticket_id)
        click.echo(f"re-queued {len(tickets)} ticket(s)")
        if not tickets:
            sys.exit(1)

    @group.group("tickets")
    def tickets() -> None:
        """Per-ticket state kept by the service."""

    @tickets.command("repin")
    @click.argument("vendor", type=click.Choice(["zendesk", "jira"]))
    @click.argument("ticket_id")
    @click.argument("version", required=False)
    def tickets_repin(vendor: str, ticket_id: str, version: str | None) -> None:
        """Decide TICKET_ID with matrix VERSION from now on (default: the current matrix)."""
        from integration.pipeline import repin

        runtime = _runtime(_settings())
        target = version or runtime.matrix().version
        try:
            repin(runtime.db, vendor, ticket_id, target)
        except KeyError as exc:
            raise click.ClickException(str(exc.args[0])) from None
        import uuid

        from integration.events import add_hint

        add_hint(runtime.db, vendor, ticket_id, "repin", key=uuid.uuid4().hex)  # a pass re-decides with it
        runtime.enqueue_ticket(vendor, ticket_id)
        click.echo(f"{vendor} {ticket_id} pinned to matrix {target}")
