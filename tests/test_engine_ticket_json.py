"""The neutral ticket JSON format: reading, writing, and errors that name the bad key."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from integration.model import Person, Ticket, TicketState
from integration.ticket_json import (
    TicketFormatError,
    load_ticket_file,
    ticket_and_state_from_json,
    ticket_from_json,
    ticket_to_json,
)

TICKETS = Path(__file__).resolve().parent / "fixtures" / "tickets"


def test_round_trip_keeps_every_value():
    when = datetime(2026, 11, 27, 9, 30, tzinfo=timezone.utc)
    ticket = Ticket(
        vendor="neutral", id="42", subject="Down", status="pending", priority="high",
        tags=frozenset({"b", "a"}), organization="Globex", group="frontline", channel="web",
        requester=Person(id="7", name="Ada", email="ada@example.com"), assignee=Person(name="Bob"),
        fields={"issue_type": "outage", "affected_users": 12, "components": ("api", "web"), "vip": True},
        created_at=when, updated_at=when, first_public_agent_reply_at=when, last_public_agent_reply_at=when,
        satisfaction="good", version_token="abc", url="https://x.example/42",
    )
    state = TicketState(vendor="neutral", ticket_id="42", level="L2", entered_level_at=when,
                        matrix_version="abc123", rule_id="breach:acknowledge", pending_level="L3",
                        pending_cause="manual", data_requested=("account_id",), milestones={"acknowledge": when},
                        pending_breaches=("diagnose",), manual_rule_level="L1")
    data = json.loads(json.dumps(ticket_to_json(ticket, state)))
    assert data["tags"] == ["a", "b"]
    back, back_state = ticket_and_state_from_json(data)
    assert back == ticket
    assert back_state == state


def test_minimal_ticket_gets_defaults_and_naive_times_are_utc():
    ticket = ticket_from_json({"id": 7, "created_at": "2026-11-27T09:00:00"})
    assert (ticket.vendor, ticket.id, ticket.status, ticket.priority, ticket.tags) == (
        "neutral", "7", "open", None, frozenset())
    assert ticket.created_at == datetime(2026, 11, 27, 9, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "data,message",
    [
        ({"subject": "no id"}, "t.json: id: missing: every ticket needs an `id`"),
        ({"id": "1", "tag": ["x"]}, "t.json: tag: unknown key 'tag' (did you mean 'tags'?)"),
        ({"id": "1", "status": "done"}, "t.json: status: 'done' is not one of new, open, pending, on_hold, solved, closed"),
        ({"id": "1", "priority": "p1"}, "t.json: priority: 'p1' is not one of low, normal, high, urgent"),
        ({"id": "1", "tags": "vip"}, "t.json: tags: expected a list of strings, got the string 'vip'"),
        ({"id": "1", "requester": {"mail": "a@b"}}, "t.json: requester.mail: unknown key 'mail' (did you mean 'email'?)"),
        ({"id": "1", "fields": {"x": {"nested": 1}}}, "t.json: fields.x: expected a string, number, boolean, list or null, got an object"),
        ({"id": "1", "created_at": "yesterday"}, "t.json: created_at: 'yesterday' is not an ISO 8601 date-time"),
        ({"id": "1", "state": {"levle": "L1"}}, "t.json: state.levle: unknown key 'levle' (did you mean 'level'?)"),
        ({"id": "1", "state": {"pending_breaches": ["ack"]}},
         "t.json: state.pending_breaches[0]: 'ack' is not one of acknowledge, diagnose, interim_fix, resolve"),
        ({"id": "1", "state": {"milestones": {"acked": "2026-11-27T09:00:00Z"}}},
         "t.json: state.milestones.acked: unknown key 'acked'"),
    ],
)
def test_errors_name_the_bad_key(data, message):
    with pytest.raises(TicketFormatError) as caught:
        ticket_and_state_from_json(data, source="t.json")
    assert str(caught.value).startswith(message)


def test_files_json_array_and_jsonl_with_sources(tmp_path):
    array = tmp_path / "many.json"
    array.write_text(json.dumps([{"id": "1"}, {"id": "2", "state": {"level": "L2"}}]))
    records = load_ticket_file(array)
    assert [r.source for r in records] == [f"{array}[0]", f"{array}[1]"]
    assert records[0].state is None and records[1].state.level == "L2"

    jsonl = load_ticket_file(TICKETS / "batch.jsonl")
    assert [r.ticket.id for r in jsonl] == ["2001", "2002", "2003"]
    assert jsonl[0].source.endswith("batch.jsonl:2")  # line 1 is a comment

    broken = tmp_path / "broken.json"
    broken.write_text('{"id": "1",\n "subject": }')
    with pytest.raises(TicketFormatError, match=r"broken\.json:2:\d+: invalid JSON"):
        load_ticket_file(broken)


def test_every_fixture_reads():
    for path in TICKETS.iterdir():
        assert load_ticket_file(path)
