"""Filled incident roles appear by display name (issue 11 item 1): a Zendesk user lookup field holds a user id,
which the connector resolves to the user's name through `GET /api/v2/users/{id}`, read at most once per user per
ZENDESK_CUSTOMER_DATA_TTL_SECONDS, in the request budget; a failed read leaves the id. Through the pipeline against
the fake Zendesk account, every request validated against the Zendesk spec."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from connectors.ratelimit import TokenBucket
from connectors.retry import RetryPolicy
from connectors.zendesk.connector import ZendeskConnector
from integration.pipeline import process_ticket
from integration.store.events import add_hint
from service.runtime import Runtime
from service.settings import Settings
from tests.support.zendesk_fake import validated_fake_zendesk, zendesk_settings

from tests.test_incident_roles import EXAMPLE, IC_FIELD, RECENT_CHANGES_FIELD, START, Clock, set_field

ADA = {"id": 12345, "name": "Ada Agent", "email": "ada.agent@acme.example", "role": "agent"}


@pytest.fixture
def rig(tmp_path):
    with validated_fake_zendesk() as fake:
        fake.users["12345"] = ADA
        # The incident commander field as an admin sets it up for people: a user lookup field.
        next(f for f in fake.ticket_fields if f["id"] == IC_FIELD).update(type="lookup",
                                                                         relationship_target_type="zen:user")
        set_field(fake.tickets["5158"], RECENT_CHANGES_FIELD, "deploy at 08:00")
        clock = Clock(START)
        settings = Settings(_env_file=None, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}", QUEUE_URL="memory://",
                            MATRIX_PATH=str(EXAMPLE), DRY_RUN=False)
        holder: dict = {}

        def connector_factory(vendor: str):
            return ZendeskConnector(zendesk_settings(ZENDESK_CUSTOMER_DATA_TTL_SECONDS=600),
                                    holder["runtime"].matrix().matrix, rate_limiter=TokenBucket(10_000),
                                    retry_policy=RetryPolicy(sleep=lambda s: None), clock=clock)

        runtime = Runtime(settings, connector_factory=connector_factory, now=clock)
        holder["runtime"] = runtime
        yield runtime, fake, clock
        runtime.db.dispose()


def run_pass(runtime, key: str) -> None:
    add_hint(runtime.db, "zendesk", "5158", "test", key=key)
    assert process_ticket("zendesk", "5158", deps=runtime.deps()).status == "done"


def internal_notes(fake) -> list[str]:
    return [c["body"] for c in fake.comments["5158"] if not c.get("public", True)]


def test_commander_in_a_lookup_field_is_named_in_the_entry_note_and_read_once_per_ttl(rig):
    runtime, fake, clock = rig
    set_field(fake.tickets["5158"], IC_FIELD, 12345)
    run_pass(runtime, "created")  # the enterprise-outage rule places it at L3
    [entry_note] = [n for n in internal_notes(fake) if "Roles:" in n]
    assert "Roles: Incident commander (Ada Agent), Customer contact." in entry_note
    assert "12345" not in entry_note
    assert len(fake.calls("GET", "/api/v2/users/12345")) == 1

    clock.now = START + timedelta(minutes=5)
    run_pass(runtime, "edited")
    assert len(fake.calls("GET", "/api/v2/users/12345")) == 1  # within the time-to-live: from the cache
    clock.now = START + timedelta(minutes=11)
    run_pass(runtime, "edited-later")
    assert len(fake.calls("GET", "/api/v2/users/12345")) == 2  # read again once the ten minutes are over


def test_a_user_the_account_does_not_know_is_shown_by_its_id(rig):
    runtime, fake, clock = rig
    set_field(fake.tickets["5158"], IC_FIELD, 99999)
    run_pass(runtime, "created")
    [entry_note] = [n for n in internal_notes(fake) if "Roles:" in n]
    assert "Roles: Incident commander (99999), Customer contact." in entry_note
    assert len(fake.calls("GET", "/api/v2/users/99999")) == 1
