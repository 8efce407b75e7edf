"""GET /readyz fails when the event store cannot take a write (not only when it cannot answer SELECT 1),
without showing the database's messages to anonymous callers; the web process honours LOG_LEVEL."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import event, func, select

from integration.store.db import Database, EventRow, reset_databases
from integration.store.events import DatabaseEventSink
from service.settings import Settings
from tests.support.fake_connector import postgres_schema_url
from webhooks.app import create_app

REPO_ROOT = Path(__file__).resolve().parent.parent


def _client(db: Database):
    settings = Settings(_env_file=None, DATABASE_URL=db.url, ZENDESK_WEBHOOK_SECRET="s")
    return create_app(settings, sink=DatabaseEventSink(db, enqueue=None)).test_client()


def _stored(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(EventRow))


def test_readyz_is_ok_on_a_writable_sqlite_store(tmp_path):
    db = Database(f"sqlite:///{tmp_path}/events.db")
    db.migrate()
    response = _client(db).get("/readyz")
    assert (response.status_code, response.json) == (200, {"status": "ok", "checks": {"database": "ok"}})
    assert _stored(db) == 0  # the heartbeat is not an event: workers and `escalation events` never see it


def test_readyz_fails_while_sqlite_answers_reads_but_cannot_commit(tmp_path, caplog):
    db = Database(f"sqlite:///{tmp_path}/events.db")
    db.migrate()

    def commit_fails(_connection):
        raise OSError(28, "No space left on device")  # what a full disk does to the WAL write

    event.listen(db.engine, "commit", commit_fails)
    assert db.ping() == "ok"  # what /readyz checked before: SELECT 1
    with caplog.at_level(logging.WARNING, logger="integration.store.events"):
        response = _client(db).get("/readyz")
    assert (response.status_code, response.json) == (
        503, {"status": "unavailable", "checks": {"database": "unavailable"}})
    assert "space" not in response.get_data(as_text=True)
    assert "No space left on device" in caplog.text  # the reason is in the log, for the operator


@pytest.mark.postgres
def test_readyz_fails_on_a_read_only_postgresql(postgres_url, caplog):
    url, drop = postgres_schema_url(postgres_url)
    try:
        Database(url).migrate()
        # A failed-over replica or a read-only role: reads work, writes are refused.
        read_only = Database(url + "%20-cdefault_transaction_read_only%3Don")
        assert read_only.ping() == "ok"
        with caplog.at_level(logging.WARNING, logger="integration.store.events"):
            response = _client(read_only).get("/readyz")
        assert (response.status_code, response.json["checks"]) == (503, {"database": "unavailable"})
        assert "read-only" not in response.get_data(as_text=True)
        assert "read-only transaction" in caplog.text
        writable = _client(Database(url)).get("/readyz")
        assert writable.status_code == 200
        read_only.dispose()
    finally:
        drop()
        reset_databases()


def _web_process_log(tmp_path: Path, log_level: str) -> str:
    """Import webhooks.wsgi as gunicorn/waitress do, post one signed delivery and return the process log."""
    script = (
        "import json\n"
        "from webhooks.signatures import zendesk_signature, utc_now\n"
        "from webhooks.wsgi import app\n"
        "body = open('tests/fixtures/zendesk/ticket_priority_changed.json', 'rb').read()\n"
        "stamp = utc_now().strftime('%Y-%m-%dT%H:%M:%SZ')\n"
        "response = app.test_client().post('/webhooks/zendesk', data=body, headers={\n"
        "    'Content-Type': 'application/json', 'X-Zendesk-Webhook-Signature-Timestamp': stamp,\n"
        "    'X-Zendesk-Webhook-Signature': zendesk_signature('log-secret', stamp, body)})\n"
        "assert response.status_code == 202, response.data\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENDESK_", "JIRA_", "WEBHOOK_", "LOG_"))}
    env.update(LOG_LEVEL=log_level, ZENDESK_WEBHOOK_SECRET="log-secret", DRY_RUN="true",
               DATABASE_URL=f"sqlite:///{tmp_path}/events.db", QUEUE_URL=f"sqlite:///{tmp_path}/queue.db")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_web_process_honours_log_level(tmp_path):
    assert "result=accepted" in _web_process_log(tmp_path / "info", "INFO")
    quiet = _web_process_log(tmp_path / "warning", "warning")
    assert "result=accepted" not in quiet and " INFO " not in quiet
    assert "LOG_LEVEL='loud' is not a level" in _web_process_log(tmp_path / "bad", "loud")
