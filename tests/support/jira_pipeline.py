"""The Jira side of the service in one process, for tests that send signed webhooks and run the worker's
pass: a SQLite event store with the matrix version stored, the web app on it, and a JiraConnector (its HTTP
is the test's `responses` mock). Used by test_jira_e2e, test_jira_bulk_read and test_jsm_feedback."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import integration.pipeline as pipeline
import webhooks.app as app_module
from connectors.jira.connector import JiraConnector
from integration.store import events as events_module
from integration.store.db import Database
from integration.store.matrix_versions import load_current, store_version
from service.settings import Settings
from tests.support.jira_helpers import SleepRecorder, make_settings

ENTERPRISE_MATRIX = Path(__file__).resolve().parent.parent.parent / "matrix_config" / "examples" / "enterprise.yaml"
WEBHOOK_SECRET = "jira-webhook-secret-for-tests"


def jira_pipeline(database: Path, now: datetime, *, matrix: Path = ENTERPRISE_MATRIX,
                  secret: str = WEBHOOK_SECRET) -> dict[str, Any]:
    """{"db", "deps", "client", "queued", "sleeps"}: `queued` lists the (vendor, ticket) passes the sink
    enqueued, `sleeps` the connector's retry waits; the clock stands at `now`."""
    db = Database(f"sqlite:///{database}")
    db.migrate()
    loaded, source = load_current(matrix)
    with db.session() as session:
        store_version(session, loaded, source)
    queued: list[tuple[str, str]] = []
    sink = events_module.DatabaseEventSink(db, lambda vendor, ticket: queued.append((vendor, ticket)))
    settings = Settings(_env_file=None, JIRA_WEBHOOK_SECRET=secret, MATRIX_PATH=str(matrix))
    app = app_module.create_app(settings, sink=sink, clock=lambda: now)
    sleeps = SleepRecorder()
    connector = JiraConnector(make_settings(), loaded.matrix, retry_policy=sleeps.policy())
    deps = pipeline.PassDeps(db=db, connector_for=lambda vendor: connector, current_matrix=lambda: loaded,
                             dry_run_for=lambda vendor: False, now=lambda: now)
    return {"db": db, "deps": deps, "client": app.test_client(), "queued": queued, "sleeps": sleeps}
