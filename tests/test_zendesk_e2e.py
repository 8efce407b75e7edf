"""End to end, in process: a signed Zendesk webhook -> Flask edge -> durable event -> processing pass ->
Zendesk connector -> exactly the expected `PUT /api/v2/tickets/{id}` bodies (against the in-memory
account; every request validated against the Zendesk spec)."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from integration.pipeline import process_ticket
from tests.support.zendesk_pipeline import signed_headers, zendesk_pipeline

FIXTURES = Path(__file__).parent / "fixtures" / "zendesk"
SECRET = "zd-e2e-signing-secret"
SIGNED_AT = datetime(2026, 11, 27, 9, 31, tzinfo=timezone.utc)


def signed(body: bytes, invocation: str) -> dict[str, str]:
    return signed_headers(SECRET, SIGNED_AT, body, invocation)


@pytest.fixture
def rig(tmp_path, enterprise_matrix_path):
    with zendesk_pipeline(tmp_path, enterprise_matrix_path, secret=SECRET, signed_at=SIGNED_AT,
                          knows_its_user_id=False) as rig:
        yield rig


def deliver(client, name: str, invocation: str, **detail_overrides) -> int:
    payload = json.loads((FIXTURES / name).read_text())
    payload["detail"].update(detail_overrides)
    body = json.dumps(payload).encode()
    return client.post("/webhooks/zendesk", data=body, headers=signed(body, invocation)).status_code


def test_signed_webhook_to_exactly_the_expected_puts(rig):
    runtime, client, fake = rig
    ticket = fake.tickets["5158"]
    # Recent changes filled in: the L3 required data is complete, so enterprise-outage escalates at once.
    next(cf for cf in ticket["custom_fields"] if cf["id"] == 360000100005)["value"] = "deploy at 08:00"

    assert deliver(client, "ticket_created.json", "inv-created") in (200, 202, 204)
    process_ticket("zendesk", "5158", deps=runtime.deps())

    reply, note = fake.put_bodies()
    assert reply["ticket"].pop("comment")["public"] is True
    assert reply == {"ticket": {
        "priority": "urgent",
        "group_id": 360000200005,  # senior_engineering
        "additional_tags": ["esc_l3"],
        "remove_tags": ["esc_l1"],
        "safe_update": True,
        "updated_stamp": "2026-11-27T09:30:15Z",
    }}
    assert set(note["ticket"]) == {"comment", "safe_update", "updated_stamp"}
    assert note["ticket"]["comment"]["public"] is False
    assert "L3" in note["ticket"]["comment"]["body"] and "enterprise-outage" in note["ticket"]["comment"]["body"]
    posted = fake.comments["5158"][-2:]
    assert "critical incident" in posted[0]["body"] and posted[0]["public"] is True
    assert "esc_l3" in fake.tickets["5158"]["tags"] and "esc_l1" not in fake.tickets["5158"]["tags"]

    # Zendesk's webhook for our own update, and a redelivery of the first one: no further writes.
    writes = len(fake.writes)
    deliver(client, "ticket_tags_changed.json", "inv-echo", actor_id="9000", updated_at=fake.tickets["5158"]["updated_at"])
    assert deliver(client, "ticket_created.json", "inv-created") in (200, 202, 204)
    process_ticket("zendesk", "5158", deps=runtime.deps())
    assert len(fake.writes) == writes
