"""What an operator meets around the pipeline: start-up checks and banner, secrets kept out of messages, read-only commands without a matrix from any directory,
re-pinning every open ticket, and dry-run acknowledgements folded from stored webhooks."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from cli.main import cli
from connectors.base import redact_url
from integration.store.db import Database, DatabaseConfigError, EventRow, MilestoneRow, TicketStateRow
from integration.model import TicketState
from service.queue import QueueConfigError, build_huey
from service.settings import Settings

PASSWORD = "hunter2-s3cret"
VENDOR_ENV = ("ZENDESK_SUBDOMAIN", "ZENDESK_BASE_URL", "ZENDESK_EMAIL", "ZENDESK_API_TOKEN", "ZENDESK_OAUTH_TOKEN",
              "ZENDESK_WEBHOOK_SECRET", "JIRA_URL", "JIRA_EMAIL", "JIRA_API_TOKEN", "JIRA_WEBHOOK_SECRET",
              "JIRA_SHARED_SECRET", "DRY_RUN", "MATRIX_PATH",
              "DATABASE_URL", "QUEUE_URL", "REDIS_URL")
FIXTURES = Path(__file__).parent / "fixtures" / "zendesk"


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No vendor settings from the developer's shell or a .env file; a fresh SQLite database."""
    for name in VENDOR_ENV:
        monkeypatch.delenv(name, raising=False)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    monkeypatch.chdir(workdir)  # not the repository: relative defaults would not resolve here
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/var/escalation.db")
    monkeypatch.setenv("QUEUE_URL", f"sqlite:///{tmp_path}/var/queue.db")
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    return tmp_path


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# ------------------------------------------------------------------ start-up: credentials and banner
def test_partial_zendesk_credentials_stop_the_worker_with_the_missing_settings(clean_env, monkeypatch):
    monkeypatch.setenv("ZENDESK_EMAIL", "bot@acme.example")
    result = CliRunner().invoke(cli, ["worker"])
    assert result.exit_code == 1
    assert "Zendesk settings incomplete" in result.output
    assert "ZENDESK_SUBDOMAIN or ZENDESK_BASE_URL" in result.output


def test_dry_run_false_refuses_a_vendor_with_a_webhook_secret_and_no_credentials(clean_env, monkeypatch):
    monkeypatch.setenv("DRY_RUN", "false")
    monkeypatch.setenv("ZENDESK_WEBHOOK_SECRET", "webhook-signing-secret")
    result = CliRunner().invoke(cli, ["worker"])
    assert result.exit_code == 1
    assert "DRY_RUN=false" in result.output and "ZENDESK_WEBHOOK_SECRET" in result.output
    assert "webhook-signing-secret" not in result.output


def test_the_banner_names_each_vendors_mode_and_connectors_get_the_database_url(clean_env, monkeypatch):
    from cli.service_commands import start_connectors
    from service.runtime import Runtime
    from dataclasses import replace

    from connectors.vendors import PLUGINS

    monkeypatch.setenv("ZENDESK_SUBDOMAIN", "acme")
    monkeypatch.setenv("ZENDESK_EMAIL", "bot@acme.example")
    monkeypatch.setenv("ZENDESK_API_TOKEN", "zd-token-value")
    seen = {}
    real_build = PLUGINS["zendesk"].build

    def spy(matrix, **kwargs):
        seen.update(kwargs)
        return real_build(matrix, **kwargs)

    monkeypatch.setitem(PLUGINS, "zendesk", replace(PLUGINS["zendesk"], build=spy))
    settings = Settings(_env_file=None)
    runtime = Runtime(settings, huey=None)
    try:
        lines = start_connectors(runtime, settings)
    finally:
        runtime.db.dispose()
    assert lines[0] == "zendesk: live as bot@acme.example on https://acme.zendesk.com"
    assert lines[1].startswith("jira: dry run (no JIRA_* credentials)")
    assert "zd-token-value" not in " ".join(lines)
    assert seen["database_url"] == settings.database_url


def test_the_worker_log_names_the_periodic_jobs_it_runs_instead_of_hueys(clean_env):
    """huey logs "Periodic tasks are disabled."; the worker's own line says the reconciler does run."""
    from service.periodic import describe_periodic_jobs

    default = describe_periodic_jobs(Settings(RECONCILE_INTERVAL_SECONDS=30))
    assert default == ("periodic jobs: reconcile every 30s, catch-up scan every 300s, SLA sync off every 3600s "
                       "(run by one worker at a time, under a lease)")
    synced = describe_periodic_jobs(Settings(SLA_SYNC="auto", SCAN_INTERVAL_SECONDS=60))
    assert "catch-up scan every 60s, SLA sync auto every 3600s" in synced


# ------------------------------------------------------------------ secrets in URLs
@pytest.mark.parametrize("url", [
    f"amqp://svc:{PASSWORD}@mq.internal:5672/",
    f"{PASSWORD}",
    f"sqlite://svc:{PASSWORD}@host:notaport/queue.db",
])
def test_a_queue_url_error_does_not_show_the_password(url):
    with pytest.raises(QueueConfigError) as error:
        build_huey(url)
    assert PASSWORD not in str(error.value)
    assert "QUEUE_URL" in str(error.value)


def test_settings_repr_and_database_errors_redact_passwords():
    settings = Settings(_env_file=None, DATABASE_URL=f"postgresql://svc:{PASSWORD}@db.internal/esc?sslpassword={PASSWORD}",
                        QUEUE_URL=f"redis://:{PASSWORD}@cache.internal:6379/0")
    for text in (repr(settings), str(settings), settings.describe_database(), settings.describe_queue()):
        assert PASSWORD not in text
    assert settings.describe_database() == "postgresql://svc:***@db.internal/esc?sslpassword=***"
    assert redact_url(f"redis://:{PASSWORD}@cache:6379/0") == "redis://:***@cache:6379/0"
    with pytest.raises(DatabaseConfigError) as error:
        Database(f"postgresql://svc:{PASSWORD}@db.internal:notaport/esc")
    assert PASSWORD not in str(error.value) and "db.internal" in str(error.value)


# ------------------------------------------------------------------ read-only commands, default matrix
def test_events_list_works_from_another_directory_without_a_matrix(clean_env, monkeypatch):
    monkeypatch.setenv("MATRIX_PATH", str(clean_env / "no-such-matrix.yaml"))
    result = invoke("events", "list")
    assert result.exit_code == 0, result.output
    assert "no events" in result.output
    assert invoke("tickets", "list-versions").output.strip() == "no open tickets"
    assert invoke("reconcile", "--no-scan").exit_code == 0


def test_the_default_matrix_is_the_packaged_example_from_any_directory(clean_env):
    import matrix_config

    settings = Settings(_env_file=None)
    assert Path(settings.matrix_path) == Path(matrix_config.__file__).resolve().parent / "examples" / "enterprise.yaml"
    assert Path(settings.matrix_path).is_file()
    result = invoke("reconcile", "--no-scan", "--inline")  # loads the matrix
    assert result.exit_code == 0, result.output


# ------------------------------------------------------------------ repin every open ticket
def _state_row(vendor, ticket_id, version, status, now):
    state = TicketState(vendor=vendor, ticket_id=ticket_id, level="L1", matrix_version=version)
    from integration.store.codec import to_json

    return TicketStateRow(vendor=vendor, ticket_id=ticket_id, state=to_json(state), level="L1", matrix_version=version,
                          status=status, first_seen_at=now, updated_at=now)


def test_repin_all_moves_every_open_ticket_to_the_current_matrix(clean_env, monkeypatch, enterprise_matrix_path):
    from integration.store.matrix_versions import load_current, store_version
    from service.runtime import get_runtime

    old_file = clean_env / "old.yaml"
    old_file.write_text(enterprise_matrix_path.read_text().replace("acknowledge: 1h", "acknowledge: 2h", 1))
    monkeypatch.setenv("MATRIX_PATH", str(enterprise_matrix_path))
    runtime = get_runtime(Settings(_env_file=None))
    current = runtime.matrix().version
    old, old_source = load_current(old_file)
    assert old.version != current
    now = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)
    with runtime.db.session() as session:
        store_version(session, old, old_source)
        session.add_all([
            _state_row("zendesk", "1", old.version, "open", now),
            _state_row("zendesk", "2", old.version, "pending", now),
            _state_row("jira", "SUP-3", old.version, "solved", now),  # resolved: stays
            _state_row("jira", "SUP-4", current, "open", now),
        ])

    listed = invoke("tickets", "list-versions", "--format", "json")
    assert json.loads(listed.output) == {old.version: 2, current: 1}

    assert invoke("tickets", "repin", "--all", "--from", "no-such-version").output.startswith("0 open ticket(s)")
    result = invoke("tickets", "repin", "--all", "--from", old.version)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"2 open ticket(s) from matrix {old.version} pinned to matrix {current}"

    assert json.loads(invoke("tickets", "list-versions", "--format", "json").output) == {current: 3}
    with runtime.db.session() as session:
        pins = dict(session.execute(select(TicketStateRow.ticket_id, TicketStateRow.matrix_version)).all())
        states = {row.ticket_id: row.state["matrix_version"] for row in session.scalars(select(TicketStateRow))}
        hinted = sorted(session.scalars(select(EventRow.ticket_id).where(EventRow.event_type == "repin")))
    assert pins == {"1": current, "2": current, "SUP-3": old.version, "SUP-4": current}
    assert states == pins
    assert hinted == ["1", "2"]  # each moved ticket gets a pass that re-decides with the new version


# ------------------------------------------------------------------ dry run: acknowledgement from webhooks
def test_a_dry_run_records_the_acknowledgement_from_an_earlier_comment_webhook(clean_env, monkeypatch,
                                                                               enterprise_matrix_path):
    from integration.store.events import DatabaseEventSink
    from integration.pipeline import process_ticket
    from service.runtime import Runtime
    from tests.support.fake_connector import ManualClock, neutral_event

    monkeypatch.setenv("MATRIX_PATH", str(enterprise_matrix_path))
    clock = ManualClock(datetime(2025, 1, 8, 10, 13, tzinfo=timezone.utc))
    runtime = Runtime(Settings(_env_file=None), huey=None, now=clock)
    sink = DatabaseEventSink(runtime.db, None)

    def store(name, delivery):
        sink.accept(neutral_event("5158", delivery), (FIXTURES / name).read_bytes(), clock())

    store("ticket_created.json", "created")
    assert process_ticket("zendesk", "5158", deps=runtime.deps()).status == "done"
    # The agent's public reply, then an unrelated change: the latest payload knows no reply.
    store("ticket_comment_added.json", "comment")
    store("ticket_priority_changed.json", "priority")
    clock.advance(5 * 3600)
    assert process_ticket("zendesk", "5158", deps=runtime.deps()).status == "done"

    with runtime.db.session() as session:
        milestones = [(m.clock, m.met_at) for m in session.scalars(select(MilestoneRow))]
    runtime.db.dispose()
    assert ("acknowledge", datetime(2025, 1, 8, 14, 25, 30, tzinfo=timezone.utc)) in [
        (c, t.replace(microsecond=0)) for c, t in milestones]
