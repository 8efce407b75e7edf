"""Vendor calls per event (issue 15): a webhook that reports no version of the ticket newer than the one the
service last decided on (a second delivery of the same change, the echo of the service's own write) costs
no API call at all; anything newer, and every hint without a stamp, is read and decided as always.

End to end in process: signed Zendesk webhook -> event store -> processing pass -> Zendesk connector ->
the in-memory account (every request validated against the Zendesk spec subset)."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from integration.model import TicketState
from integration.pipeline import process_ticket
from integration.store.codec import from_json
from integration.store.db import TicketStateRow
from integration.store.events import add_hint
from tests.support.zendesk_pipeline import signed_headers, zendesk_pipeline

FIXTURES = Path(__file__).parent / "fixtures" / "zendesk"
SECRET = "zd-calls-signing-secret"
SIGNED_AT = datetime(2026, 11, 27, 9, 31, tzinfo=timezone.utc)
AGENT = "2002"


@pytest.fixture
def rig(tmp_path, enterprise_matrix_path):
    with zendesk_pipeline(tmp_path, enterprise_matrix_path, secret=SECRET, signed_at=SIGNED_AT) as rig:
        yield rig


def deliver(client, name: str, invocation: str, **detail) -> None:
    payload = json.loads((FIXTURES / name).read_text())
    payload["detail"].update(detail)
    payload["id"] = invocation  # Zendesk's event id: each delivery of an event is a new body
    payload["subject"] = f"zen:ticket:{payload['detail']['id']}"
    body = json.dumps(payload).encode()
    response = client.post("/webhooks/zendesk", data=body, headers=signed_headers(SECRET, SIGNED_AT, body, invocation))
    assert response.status_code in (200, 202), response.get_data(as_text=True)


def seen_updated_at(runtime) -> datetime | None:
    with runtime.db.session() as session:
        return from_json(TicketState, session.get(TicketStateRow, ("zendesk", "5158")).state).seen_updated_at


def escalated_once(runtime, client, fake) -> None:
    """The first delivery: the ticket is escalated to L3 (reply + note, two updates)."""
    next(cf for cf in fake.tickets["5158"]["custom_fields"] if cf["id"] == 360000100005)["value"] = "deploy at 08:00"
    deliver(client, "ticket_created.json", "inv-created", actor_id=AGENT, updated_at=fake.tickets["5158"]["updated_at"])
    assert process_ticket("zendesk", "5158", deps=runtime.deps()).status == "done"
    assert len(fake.put_bodies()) == 2


def test_an_echo_of_our_own_write_without_an_actor_costs_no_call(rig):
    """Recognised by the version it reports, not by who it names: Zendesk's ticket after our last update."""
    runtime, client, fake = rig
    escalated_once(runtime, client, fake)
    after_our_write = fake.tickets["5158"]["updated_at"]
    assert seen_updated_at(runtime) == datetime.fromisoformat(after_our_write.replace("Z", "+00:00"))

    calls = len(fake.rsps.calls)
    deliver(client, "ticket_tags_changed.json", "inv-echo", actor_id=None, updated_at=after_our_write)
    result = process_ticket("zendesk", "5158", deps=runtime.deps())
    assert result.status == "seen"
    assert len(fake.rsps.calls) == calls  # no read, no write


def test_a_second_delivery_of_a_change_already_decided_on_costs_no_call(rig):
    """A redelivery under a new invocation id (intake's de-duplication cannot know it) of the change the first
    pass read: nothing newer, no read."""
    runtime, client, fake = rig
    escalated_once(runtime, client, fake)
    calls = len(fake.rsps.calls)
    deliver(client, "ticket_created.json", "inv-created-again", actor_id=AGENT, updated_at="2026-11-27T09:30:15Z")
    assert process_ticket("zendesk", "5158", deps=runtime.deps()).status == "seen"
    assert len(fake.rsps.calls) == calls


def test_an_agent_edit_with_a_newer_updated_at_is_read_and_decided(rig):
    """The other side of the rule: an agent sets the level back to L2 by hand after our write. Its webhook
    reports a newer updated_at, so the pass reads the ticket and the hand-set level stands (no write
    moves it back)."""
    runtime, client, fake = rig
    escalated_once(runtime, client, fake)
    ticket = fake.tickets["5158"]
    ticket["tags"] = [t for t in ticket["tags"] if t != "esc_l3"] + ["esc_l2"]
    ticket["updated_at"] = "2026-11-27T11:00:00Z"
    reads = len(fake.calls("GET", "/api/v2/tickets/5158"))
    deliver(client, "ticket_tags_changed.json", "inv-agent", actor_id=AGENT, updated_at=ticket["updated_at"])
    result = process_ticket("zendesk", "5158", deps=runtime.deps())
    assert result.status == "done"
    assert len(fake.calls("GET", "/api/v2/tickets/5158")) > reads
    assert "esc_l2" in fake.tickets["5158"]["tags"] and "esc_l3" not in fake.tickets["5158"]["tags"]
    assert seen_updated_at(runtime) >= datetime(2026, 11, 27, 11, 0, tzinfo=timezone.utc)


def test_a_batch_with_one_newer_event_is_read(rig):
    """One pass claims both a stale redelivery and a new change: the new one decides, so the ticket is read."""
    runtime, client, fake = rig
    escalated_once(runtime, client, fake)
    fake.tickets["5158"]["updated_at"] = "2026-11-27T11:00:00Z"
    deliver(client, "ticket_created.json", "inv-old", actor_id=AGENT, updated_at="2026-11-27T09:30:15Z")
    deliver(client, "ticket_priority_changed.json", "inv-new", actor_id=AGENT, updated_at="2026-11-27T11:00:00Z")
    reads = len(fake.calls("GET", "/api/v2/tickets/5158"))
    assert process_ticket("zendesk", "5158", deps=runtime.deps()).status == "done"
    assert len(fake.calls("GET", "/api/v2/tickets/5158")) > reads


def test_a_catch_up_hint_carries_no_stamp_and_is_always_read(rig):
    runtime, client, fake = rig
    escalated_once(runtime, client, fake)
    reads = len(fake.calls("GET", "/api/v2/tickets/5158"))
    add_hint(runtime.db, "zendesk", "5158", "scan", key="5158@1")
    assert process_ticket("zendesk", "5158", deps=runtime.deps()).status == "done"
    assert len(fake.calls("GET", "/api/v2/tickets/5158")) == reads + 1


def test_an_unfinished_write_is_recovered_even_for_a_stale_event(rig):
    """A decision still `applying` (the worker died mid-write) needs the read for its recovery."""
    from integration.store.db import DecisionRow

    runtime, client, fake = rig
    escalated_once(runtime, client, fake)
    with runtime.db.session() as session:
        session.query(DecisionRow).filter(DecisionRow.ticket_id == "5158").update({"status": "applying"})
    reads = len(fake.calls("GET", "/api/v2/tickets/5158"))
    deliver(client, "ticket_created.json", "inv-again", actor_id=AGENT, updated_at="2026-11-27T09:30:15Z")
    assert process_ticket("zendesk", "5158", deps=runtime.deps()).status == "done"
    assert len(fake.calls("GET", "/api/v2/tickets/5158")) > reads
    assert len(fake.put_bodies()) == 2  # recovered as written: nothing sent twice


# ------------------------------------------------------------------------------ bursts across tickets
def new_ticket(fake, ticket_id: int) -> None:
    ticket = json.loads(json.dumps(fake.tickets["5158"]))
    ticket.update(id=ticket_id, subject=f"Burst {ticket_id}", tags=[], status="new",
                  created_at="2026-11-27T09:30:00Z", updated_at="2026-11-27T09:30:00Z")
    ticket["submitter_id"] = ticket["requester_id"]
    fake.add_ticket(ticket, comments=[{"id": ticket_id * 10, "type": "Comment", "author_id": ticket["requester_id"],
                                       "public": True, "body": "Help", "created_at": "2026-11-27T09:30:00Z"}])


def burst(runtime, client, fake, count: int) -> list[str]:
    ids = [str(7000 + n) for n in range(count)]
    for ticket_id in ids:
        new_ticket(fake, int(ticket_id))
        deliver(client, "ticket_created.json", f"inv-{ticket_id}", id=ticket_id, actor_id=AGENT,
                updated_at="2026-11-27T09:30:00Z")
    return ids


def ticket_reads(fake) -> list[str]:
    return [c.request.url for c in fake.calls("GET", "/api/v2/tickets/")
            if "/comments" not in c.request.url and "/audits" not in c.request.url]


def test_a_burst_of_20_new_tickets_is_read_with_one_show_many(rig):
    from integration.pipeline import process_tickets

    runtime, client, fake = rig
    ids = burst(runtime, client, fake, 20)
    results = process_tickets("zendesk", ids, deps=runtime.deps())
    assert {r.status for r in results.values()} == {"done"}
    reads = ticket_reads(fake)
    assert len(reads) == 1 and "/api/v2/tickets/show_many" in reads[0]
    assert all(len(fake.put_bodies(t)) >= 1 for t in ids)  # every ticket placed, as one by one would
    assert fake.calls("GET", "/api/v2/tickets/7000/comments") == []  # a requester's description: no comment read


def test_one_by_one_the_same_burst_reads_each_ticket(rig):
    runtime, client, fake = rig
    ids = burst(runtime, client, fake, 20)
    for ticket_id in ids:
        assert process_ticket("zendesk", ticket_id, deps=runtime.deps()).status == "done"
    assert len(ticket_reads(fake)) == 20


def test_a_ticket_changed_after_the_bulk_read_is_read_alone(rig):
    """The bulk snapshot stands in only for the changes it shows: an event stamped after it is read anew."""
    from integration.pipeline import process_tickets

    runtime, client, fake = rig
    ids = burst(runtime, client, fake, 3)

    def agent_edits_7001():  # after the bulk read, while 7000's pass writes
        fake.tickets["7001"]["updated_at"] = "2026-11-27T09:40:00Z"
        deliver(client, "ticket_priority_changed.json", "inv-late", id="7001", actor_id=AGENT,
                updated_at="2026-11-27T09:40:00Z")

    fake.before_next("PUT", r"/api/v2/tickets/7000$", agent_edits_7001)
    results = process_tickets("zendesk", ids, deps=runtime.deps())
    assert {r.status for r in results.values()} == {"done"}
    reads = ticket_reads(fake)
    assert sum("show_many" in url for url in reads) == 1
    assert [url for url in reads if "show_many" not in url and "/tickets/7001" in url] != []
    assert not [url for url in reads if "show_many" not in url and ("/tickets/7000" in url or "/tickets/7002" in url)]
