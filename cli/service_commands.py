"""`escalation serve | worker | migrate | reconcile | events list|retry | tickets repin|list-versions`."""
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

from service.telemetry import prepare_multiprocess_dir


def process_settings(matrix: str | None = None):
    """The Settings of this process (`matrix` overrides MATRIX_PATH), with logging configured from them;
    a bad setting stops the command with a ClickException naming it."""
    from pydantic import ValidationError

    from service.settings import Settings

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


def _runtime(settings, *, matrix: bool = True, connector_factory=None):
    """The process Runtime. `matrix=False` for read-only commands (events, tickets list-versions): they
    work on the database alone, even when MATRIX_PATH is missing or invalid. `connector_factory`
    (vendor -> Connector) replaces the vendor connectors: a process built around test doubles
    (tests/support/worker_entry.py) gets a Runtime of its own with it."""
    from integration.store.db import DatabaseConfigError
    from service.queue import QueueConfigError
    from service.runtime import Runtime, get_runtime

    try:
        runtime = get_runtime(settings) if connector_factory is None else Runtime(
            settings, connector_factory=connector_factory)
        if matrix:
            runtime.matrix()  # fail fast on a missing or invalid matrix
    except FileNotFoundError as exc:
        raise click.ClickException(f"matrix file not found: {exc.filename}") from None
    except (DatabaseConfigError, QueueConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    return runtime


def _webhook_secrets_set(vendor: str, settings) -> list[str]:
    """The names of the vendor's webhook secrets that are set: a vendor that sends webhooks is meant to be served."""
    secrets = {
        "zendesk": {"ZENDESK_WEBHOOK_SECRET": settings.zendesk_webhook_secret},
        "jira": {"JIRA_WEBHOOK_SECRET": settings.jira_webhook_secret, "JIRA_SHARED_SECRET": settings.jira_shared_secret},
    }
    return [name for name, value in secrets.get(vendor, {}).items() if value]


def _vendor_settings_line(vendor: str) -> str:
    from connectors.vendors import PLUGINS

    return PLUGINS[vendor].settings().describe()


def start_connectors(runtime, settings) -> list[str]:
    """Build every vendor's connector once, at process start, and return the start-up banner (one line
    per vendor). Incomplete credentials, or DRY_RUN=false with a configured webhook secret and no API
    credentials, stop the process with a ClickException naming the settings (never their values)."""
    from connectors.base import ConfigurationError
    from service.connectors import is_offline
    from connectors.vendors import PLUGINS

    lines = []
    for vendor in PLUGINS:
        try:
            connector = runtime.connector(vendor)
        except ConfigurationError as exc:
            raise click.ClickException(str(exc)) from None
        if runtime.injected_connectors:
            description = f"{type(connector).__name__} (connector factory given to the Runtime)"
        else:
            description = _vendor_settings_line(vendor)
        if is_offline(connector):
            secrets = _webhook_secrets_set(vendor, settings)
            if settings.dry_run is False and secrets:
                raise click.ClickException(
                    f"DRY_RUN=false, but {vendor} has no API credentials while {' and '.join(secrets)} is set: "
                    f"its webhooks would be accepted and nothing written. Set the {vendor} API credentials, "
                    f"or unset DRY_RUN to run {vendor} as a dry run.")
        elif settings.dry_run:
            description += " (DRY_RUN=true: decisions are recorded, nothing is written)"
        lines.append(f"{vendor}: {description}")
    return lines


def _escalation_command() -> list[str]:
    script = Path(sys.executable).parent / "escalation"
    if script.exists():
        return [str(script)]
    found = shutil.which("escalation")
    return [found] if found else [sys.executable, "-c", "from cli.main import main; main()"]


def run_worker(settings, concurrency: int | None = None, *, connector_factory=None) -> None:
    """The worker process: huey consumer threads plus the periodic jobs. `connector_factory`: see _runtime."""
    from service.periodic import PeriodicJobs, describe_periodic_jobs

    runtime = _runtime(settings, connector_factory=connector_factory)
    log = logging.getLogger("escalation.worker")
    for line in start_connectors(runtime, settings):
        log.info("%s", line)
    log.info("database %s, queue %s", settings.describe_database(), settings.describe_queue())
    log.info("metrics in %s (PROMETHEUS_MULTIPROC_DIR)", prepare_multiprocess_dir())
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
    start_consumer = consumer.start

    def start_and_name_the_periodic_jobs() -> None:
        start_consumer()  # logs huey's "Periodic tasks are disabled.": ours follow, in PeriodicJobs
        log.info("%s", describe_periodic_jobs(settings))
        # huey's own SIGHUP re-executes the worker, which would stop it on a broken matrix file: SIGHUP reloads
        # MATRIX_PATH instead, validated first (service.matrix_reload).
        signal.signal(signal.SIGHUP, lambda _signum, _frame: runtime.request_matrix_reload())

    consumer.start = start_and_name_the_periodic_jobs
    try:
        consumer.run()
    finally:
        periodic.stop()


def run_serve(settings, host: str, port: int, web_concurrency: int, *, connector_factory=None,
              worker_command: list[str] | None = None) -> None:
    """The web process (webhooks.server) and one worker (`worker_command`, default `escalation worker`) as
    children of this one; exits with the status of the first child that stops. `connector_factory`: see
    _runtime (it serves this process's start-up checks; the worker command builds its own)."""
    runtime = _runtime(settings, connector_factory=connector_factory)  # migrate and validate before starting children
    banner = start_connectors(runtime, settings)
    prepare_multiprocess_dir()  # the web processes and the worker share it: one scrape shows them all
    env = dict(os.environ)
    procs = {
        "web": subprocess.Popen(
            [sys.executable, "-m", "webhooks.server", "--processes", str(web_concurrency), "--host", host,
             "--port", str(port)], env=env),
        "worker": subprocess.Popen(worker_command or _escalation_command() + ["worker"], env=env),
    }
    click.echo(f"escalation: web on http://{host}:{port} (pid {procs['web'].pid}), "
               f"worker pid {procs['worker'].pid}; " + "; ".join(banner))

    def forward(signum, _frame):
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, forward)  # matrix reload in the web and worker processes
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


def register(group: click.Group) -> None:
    @group.command("migrate")
    def migrate() -> None:
        """Create or upgrade the database schema (also done by serve and worker at start)."""
        from integration.store.db import Database
        from integration.store.migrations import current_revision

        from integration.store.db import DatabaseConfigError

        settings = process_settings()
        try:
            db = Database(settings.database_url)
        except DatabaseConfigError as exc:
            raise click.ClickException(str(exc)) from None
        db.migrate()
        click.echo(f"database at revision {current_revision(db.engine)}")

    @group.command("worker")
    @click.option("--concurrency", type=int, default=None, help="Worker threads (default WORKER_CONCURRENCY).")
    def worker(concurrency: int | None) -> None:
        """Process queued events and timers; runs the reconciler and catch-up scan (one worker at a time)."""
        run_worker(process_settings(), concurrency)

    @group.command("serve")
    @click.option("--matrix", type=click.Path(exists=True, dir_okay=False), default=None,
                  help="Matrix file (default MATRIX_PATH).")
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--port", type=int, default=lambda: int(os.environ.get("PORT", "8000")), show_default="PORT or 8000")
    @click.option("--web-concurrency", type=int, default=lambda: int(os.environ.get("WEB_CONCURRENCY", "2")),
                  show_default="WEB_CONCURRENCY or 2")
    def serve(matrix: str | None, host: str, port: int, web_concurrency: int) -> None:
        """Run the webhook server (webhooks.server, waitress) and one worker together: one command for one machine."""
        run_serve(process_settings(matrix), host, port, web_concurrency)

    @group.command("reconcile")
    @click.option("--scan/--no-scan", default=True, show_default=True, help="Also run the catch-up scan.")
    @click.option("--inline", is_flag=True, help="Process here and now instead of enqueueing for workers.")
    def reconcile(scan: bool, inline: bool) -> None:
        """One reconciler pass now: re-enqueue events whose worker died, forgotten events, overdue timers."""
        from service.periodic import catch_up_scan

        runtime = _runtime(process_settings(), matrix=scan or inline)  # only enqueueing needs no matrix
        report = runtime.reconcile(inline=inline)
        click.echo(f"reconcile: {report}")
        if scan:
            click.echo(f"catch-up scan: {catch_up_scan(runtime, inline=inline)} ticket(s) hinted")

    @group.group("events")
    def events() -> None:
        """Inspect stored webhook events and retry dead letters."""

    @events.command("list")
    @click.option("--status", type=click.Choice(["pending", "processing", "done", "ignored", "dead"]), default=None)
    @click.option("--limit", type=int, default=50, show_default=True)
    @click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
    def events_list(status: str | None, limit: int, fmt: str) -> None:
        """Newest events first (dead letters with their reason)."""
        from integration.store.events import count_by_status, list_events

        runtime = _runtime(process_settings(), matrix=False)
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
        from integration.store.events import retry_dead

        if not ids and not all_dead:
            raise click.UsageError("give event ids or --all-dead")
        runtime = _runtime(process_settings(), matrix=False)
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
    @click.argument("vendor", type=click.Choice(["zendesk", "jira"]), required=False)
    @click.argument("ticket_id", required=False)
    @click.argument("version", required=False)
    @click.option("--all", "all_open", is_flag=True, help="Every open (not solved/closed/deleted) ticket.")
    @click.option("--from", "from_version", default=None, help="With --all: only tickets on this matrix version.")
    @click.option("--to", "to_version", default=None, help="With --all: the target version (default: the current matrix).")
    def tickets_repin(vendor: str | None, ticket_id: str | None, version: str | None, all_open: bool,
                      from_version: str | None, to_version: str | None) -> None:
        """Decide TICKET_ID with matrix VERSION from now on (default: the current matrix); with --all,
        every open ticket (a matrix hotfix reaches tickets in flight). Each moved ticket gets a pass."""
        import uuid

        from integration.store.events import add_hint
        from integration.pipeline import repin, repin_open

        if all_open:
            if vendor or ticket_id or version:
                raise click.UsageError("--all takes no VENDOR/TICKET_ID/VERSION (use --from/--to)")
            runtime = _runtime(process_settings(), matrix=to_version is None)
            target = to_version or runtime.matrix().version
            try:
                moved = repin_open(runtime.db, target, from_version=from_version)
            except KeyError as exc:
                raise click.ClickException(str(exc.args[0])) from None
            run = uuid.uuid4().hex
            for moved_vendor, moved_id in moved:
                add_hint(runtime.db, moved_vendor, moved_id, "repin", key=f"{moved_id}@{run}")
                runtime.enqueue_ticket(moved_vendor, moved_id)
            scope = f" from matrix {from_version}" if from_version else ""
            click.echo(f"{len(moved)} open ticket(s){scope} pinned to matrix {target}")
            return
        if from_version or to_version:
            raise click.UsageError("--from/--to go with --all")
        if not vendor or not ticket_id:
            raise click.UsageError("give VENDOR TICKET_ID [VERSION], or --all")
        runtime = _runtime(process_settings(), matrix=version is None)
        target = version or runtime.matrix().version
        try:
            repin(runtime.db, vendor, ticket_id, target)
        except KeyError as exc:
            raise click.ClickException(str(exc.args[0])) from None
        add_hint(runtime.db, vendor, ticket_id, "repin", key=uuid.uuid4().hex)  # a pass re-decides with it
        runtime.enqueue_ticket(vendor, ticket_id)
        click.echo(f"{vendor} {ticket_id} pinned to matrix {target}")

    @tickets.command("list-versions")
    @click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
    def tickets_list_versions(fmt: str) -> None:
        """How many open (not solved/closed/deleted) tickets are pinned to each matrix version."""
        from integration.pipeline import open_tickets_by_version

        runtime = _runtime(process_settings(), matrix=False)
        counts = open_tickets_by_version(runtime.db)
        if fmt == "json":
            click.echo(json.dumps(counts, indent=2, sort_keys=True))
            return
        if not counts:
            click.echo("no open tickets")
            return
        for version, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
            click.echo(f"{version:<20} {count} open ticket(s)")
