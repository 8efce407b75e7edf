"""The admin console over the seeded week of tests/support/metrics_history.py, plus one dead letter (an event
for ticket 999, which the fake helpdesk does not know) and ticket 701 (NOW: an enterprise production outage
without account id, recent changes or affected users, so the data gate holds it at L1 short of L3), with
passwords for both roles from the environment."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import pytest

from integration.pipeline import process_ticket
from integration.store.events import add_hint, list_events
from tests.support.fake_connector import make_settings
from tests.support.metrics_history import NOW, build_history

ADMIN_PASSWORD = "correct horse battery staple"
VIEWER_PASSWORD = "viewer only please"


def seed(database_url: str) -> Any:
    history = build_history(database_url)
    history.fake.put("701", created_at=NOW.isoformat(), updated_at=NOW.isoformat(), fields={
        "issue_type": "outage", "customer_tier": "enterprise", "environment": "production"})
    add_hint(history.live.db, "zendesk", "701", "test", key="701@seed", now=NOW)
    process_ticket("zendesk", "701", deps=history.live.deps())
    add_hint(history.live.db, "zendesk", "999", "test", key="999@seed", now=NOW)
    process_ticket("zendesk", "999", deps=history.live.deps())
    (dead,) = list_events(history.live.db, status="dead")
    history.dead_event_id = dead.id  # type: ignore[attr-defined]
    return history


@contextmanager
def console_env(**extra: str) -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        for name in ("ADMIN_PASSWORD_HASH", "VIEWER_PASSWORD_HASH", "ADMIN_SECRET_KEY", "OIDC_ISSUER",
                     "OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET", "OIDC_ADMIN_GROUP"):
            patch.delenv(name, raising=False)
        values = {"ADMIN_PASSWORD": ADMIN_PASSWORD, "VIEWER_PASSWORD": VIEWER_PASSWORD, **extra}
        for name, value in values.items():
            if value == "":
                patch.delenv(name, raising=False)
            else:
                patch.setenv(name, value)
        yield patch


def console_app(database_url: str) -> Any:
    """The real app factory (webhook routes and console) over `database_url`, its clock at the seed's NOW."""
    from webhooks.app import create_app

    return create_app(make_settings(database_url), clock=lambda: NOW)
