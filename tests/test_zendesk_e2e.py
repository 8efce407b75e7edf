"""End to end, in process: a signed Zendesk webhook -> Flask edge -> durable event -> processing pass ->
Zendesk connector -> exactly the expected `PUT /api/v2/tickets/{id}` bodies (against the in-memory
account; every request validated against the Zendesk spec)."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from connectors.ratelimit import TokenBucket  # noqa: E402
from connectors.retry import RetryPolicy  # noqa: E402
from connectors.zendesk.connector import ZendeskConnector  # noqa: E402
from connectors.zendesk.settings import ZendeskSettings  # noqa: E402
from integration.store.events import DatabaseEventSink  # noqa: E402
from integration.pipeline import process_ticket  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.runtime import Runtime  # noqa: E402
from tests.support.zendesk_fake import validated_fake_zendesk  # noqa: E402
from webhooks.app import create_app  # noqa: E402
from webhooks.signatures import zendesk_signature  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "zendesk"
SECRET = "zd-e2e-signing-secret"
SIGNED_AT = datetime(2026, 11, 27, 9, 31, tzinfo=timezone.utc)


def signed(body: bytes, invocation: str) -> dict[str, str]:
    timestamp = SIGNED_AT.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"Content-Type": "application/json", "X-Zendesk-Webhook-Invocation-Id": invocation,
            "X-Zendesk-Webhook-Signature": zendesk_signature(SECRET, timestamp, body),
            "X-Zendesk-Webhook-Signature-Timestamp": timestamp}


@pytest.fixture
def rig(tmp_path, enterprise_matrix_path):
    settings = Settings(_env_file=None, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}",
                        QUEUE_URL=f"sqlite:///{tmp_path / 'q.db'}", MATRIX_PATH=str(enterprise_matrix_path),
                        DRY_RUN=False, ZENDESK_WEBHOOK_SECRET=SECRET)
    with validated_fake_zendesk() as fake:
        holder: dict = {}

        def connector_factory(vendor: str):
            zendesk_settings = ZendeskSettings(_env_file=None, subdomain="acme", email="bot@acme.example",
                                               api_token="e2e-token")
            holder["connector"] = ZendeskConnector(zendesk_settings, runtime.matrix().matrix,
                                                   rate_limiter=TokenBucket(10_000),
                                                   retry_policy=RetryPolicy(sleep=lambda s: None))
            return holder["connector"]

        runtime = Runtime(settings, connector_factory=connector_factory)
        app = create_app(settings, sink=DatabaseEventSink(runtime.db, None), clock=lambda: SIGNED_AT)
        yield runtime, app.test_client(), fake
        runtime.db.dispose()


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
