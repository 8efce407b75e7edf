"""Every fixture body parses to the expected NeutralEvent; malformed bodies fail with a message naming
what is wrong. Fixtures live in tests/fixtures/<vendor>/<event>[_<variant>].json."""
from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from integration.model import NeutralEvent
from webhooks.errors import PayloadError
from webhooks.jira.payloads import AUTOMATION_BODY_TEMPLATE, parse_jira
from webhooks.parsing import decode_json_object
from webhooks.zendesk.payloads import TRIGGER_BODY_TEMPLATE, parse_zendesk

FIXTURES = Path(__file__).parent / "fixtures"
UTC = timezone.utc


def _at(*parts: int, micro: int = 0) -> datetime:
    return datetime(*parts, microsecond=micro, tzinfo=UTC)


def _millis(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def _zd(ticket, event_type, actor, occurred_at, handled=True):
    return NeutralEvent("zendesk", ticket, event_type, "delivery-1", actor, occurred_at, handled)


def _jira(ticket, event_type, actor, occurred_at, handled=True):
    return NeutralEvent("jira", ticket, event_type, "delivery-1", actor, occurred_at, handled)


ZENDESK_EXPECTED = {
    "ticket_created": _zd("5158", "ticket.created", "8447388090494", _at(2025, 1, 8, 10, 12, 7, micro=672717)),
    "ticket_priority_changed": _zd(
        "5158", "ticket.priority_changed", "8447388090494", _at(2025, 1, 8, 11, 30, 15, micro=456789)
    ),
    "ticket_status_changed": _zd(
        "5158", "ticket.status_changed", "8447388090494", _at(2025, 1, 8, 12, 1, 2, micro=123456)
    ),
    "ticket_tags_changed": _zd("5158", "ticket.tags_changed", "8447388090494", _at(2025, 1, 8, 12, 5, 0, micro=500000)),
    "ticket_group_assignment_changed": _zd("5158", "ticket.group_assignment_changed", "9001", _at(2025, 1, 8, 12, 10)),
    # The comment's author acted, not detail.actor_id.
    "ticket_comment_added": _zd(
        "5158", "ticket.comment_added", "8447388090495", _at(2025, 1, 8, 14, 25, 30, micro=123456)
    ),
    "ticket_comment_added_internal": _zd("5158", "ticket.comment_added", "900000000001", _at(2025, 1, 8, 14, 26)),
    "ticket_custom_field_changed": _zd("5161", "ticket.custom_field_changed", "8447388090494", _at(2025, 1, 8, 15)),
    "ticket_subject_changed": _zd(
        "5158", "ticket.subject_changed", "8447388090494", _at(2025, 1, 8, 15, 30), handled=False
    ),
    # A pass on a deleted ticket finds nothing (NotFound, dead-lettered); undeleted resumes the escalation.
    "ticket_soft_deleted": _zd("5158", "ticket.soft_deleted", "8447388090494", _at(2025, 1, 9, 9)),
    "ticket_permanently_deleted": _zd("5158", "ticket.permanently_deleted", "8447388090494", _at(2025, 1, 9, 10, 20)),
    "ticket_undeleted": _zd("5158", "ticket.undeleted", "8447388090494", _at(2025, 1, 9, 10, 15)),
    "ticket_requester_changed": _zd("5158", "ticket.requester_changed", "8447388090494", _at(2025, 1, 9, 10)),
    "ticket_form_changed": _zd("5158", "ticket.form_changed", "8447388090494", _at(2025, 1, 9, 10, 5)),
    "ticket_merged": _zd("5158", "ticket.merged", "8447388090494", _at(2025, 1, 9, 10, 10)),
    "trigger_ticket_updated": _zd("5158", "ticket.updated", "8447388090494", _at(2025, 1, 8, 11, 30)),
    "trigger_ticket_created": _zd("7", "ticket.created", "361234567890", _at(2025, 2, 3, 19, 59)),
    "trigger_ticket_updated_by_automation": _zd("5158", "ticket.updated", None, _at(2025, 1, 9, 8)),
}

JIRA_EXPECTED = {
    "issue_created": _jira("KT-22", "jira:issue_created", "5cedcb4355a88a0fc86388ba", _millis(1566935004475)),
    "issue_updated_priority": _jira(
        "TES-41", "jira:issue_updated", "5c5f880629be9642ba529340", _millis(1550351716080)
    ),
    "issue_updated_custom_field": _jira(
        "TES-14", "jira:issue_updated", "5cedcb4355a88a0fc86388ba", _millis(1565574553414)
    ),
    "comment_created": _jira("TES-41", "comment_created", "5c5f880629be9642ba529340", _millis(1550286678321)),
    "issue_deleted": _jira(
        "TES-41", "jira:issue_deleted", "5c5f880629be9642ba529340", _millis(1550352000000)
    ),
    "comment_updated": _jira("TES-41", "comment_updated", None, _millis(1550286999000), handled=False),
    # Worklog events name the issue only by its numeric id.
    "worklog_created": _jira("10040", "worklog_created", None, _millis(1550290000000), handled=False),
    "automation_issue_updated": _jira(
        "HELP-42", "jira:issue_updated", "5b10ac8d82e05b22cc7d4ef5", _at(2025, 3, 4, 9, 15, 27, micro=400000)
    ),
    "automation_comment_created": _jira(
        "HELP-42", "comment_created", "qm:a713c8ea-1075-4e30-9d96-891a7d181739:5ad6d3581db05e2a66fa80b",
        _at(2025, 3, 4, 9, 20),
    ),
    "automation_issue_created_no_actor": _jira("HELP-43", "jira:issue_created", None, _at(2025, 3, 4, 10)),
}


def _load(vendor: str, name: str) -> dict:
    return decode_json_object((FIXTURES / vendor / f"{name}.json").read_bytes())


@pytest.mark.parametrize("vendor, expected", [("zendesk", ZENDESK_EXPECTED), ("jira", JIRA_EXPECTED)])
def test_every_fixture_has_an_expectation(vendor, expected):
    on_disk = {path.stem for path in (FIXTURES / vendor).glob("*.json")}
    assert on_disk == set(expected)


@pytest.mark.parametrize("name", sorted(ZENDESK_EXPECTED))
def test_zendesk_fixture_parses_to_expected_event(name):
    assert parse_zendesk(_load("zendesk", name), "delivery-1") == ZENDESK_EXPECTED[name]


@pytest.mark.parametrize("name", sorted(JIRA_EXPECTED))
def test_jira_fixture_parses_to_expected_event(name):
    assert parse_jira(_load("jira", name), "delivery-1") == JIRA_EXPECTED[name]


def test_real_vendor_samples_parse(vendor_dir):
    samples = vendor_dir / "samples"
    created = parse_zendesk(json.loads((samples / "zendesk-event__captured__ticket.created.json").read_text()), None)
    assert (created.ticket_id, created.event_type, created.handled) == ("5158", "ticket.created", True)
    for path in samples.glob("jira-cloud__*.json"):
        event = parse_jira(json.loads(path.read_text()), None)
        assert event.handled and event.ticket_id in {"TES-41", "KT-22", "TES-14"}, path.name


def test_zulip_style_trigger_body_is_not_our_template(vendor_dir):
    body = json.loads((vendor_dir / "samples" / "zendesk-trigger__zulip__ticket_create_update.json").read_text())
    with pytest.raises(PayloadError) as info:
        parse_zendesk(body, None)
    assert info.value.message == "Zendesk trigger body: missing event, current_user_id"


def test_documented_templates_rendered_by_the_vendor_parse():
    rendered_trigger = (
        TRIGGER_BODY_TEMPLATE.replace("{{ticket.id}}", "5158")
        .replace("{{ticket.updated_at_with_timestamp}}", "2013-12-12T05:35Z")
        .replace("{{current_user.id}}", "12345")
    )
    event = parse_zendesk(decode_json_object(rendered_trigger.encode()), "inv-1")
    assert event == NeutralEvent("zendesk", "5158", "ticket.updated", "inv-1", "12345", _at(2013, 12, 12, 5, 35))
    rendered_rule = (
        AUTOMATION_BODY_TEMPLATE.replace("{{issue.key}}", "HELP-9")
        .replace("{{initiator.accountId}}", "557058:abc")
        .replace("{{now}}", "2020-09-15T01:35:31.2+0000")
    )
    event = parse_jira(decode_json_object(rendered_rule.encode()), None)
    assert event == NeutralEvent(
        "jira", "HELP-9", "jira:issue_updated", None, "557058:abc", _at(2020, 9, 15, 1, 35, 31, micro=200000)
    )


def _edited(fixture: dict, changes: dict) -> dict:
    """A deep copy of `fixture` with each change applied: `a__b=value` sets body["a"]["b"], `a__b=...`
    deletes it."""
    body = copy.deepcopy(fixture)
    for path, value in changes.items():
        target = body
        *parents, leaf = path.split("__")
        for parent in parents:
            target = target[parent]
        if value is ...:
            del target[leaf]
        else:
            target[leaf] = value
    return body


def _zendesk_event(**changes) -> dict:
    return _edited(_load("zendesk", "ticket_priority_changed"), changes)


@pytest.mark.parametrize(
    "body, message",
    [
        (_zendesk_event(detail=...), "missing detail"),
        (_zendesk_event(detail="5158"), "detail must be an object"),
        (_zendesk_event(detail__id=...), "missing detail.id"),
        (_zendesk_event(detail__id=None), "missing detail.id"),
        (_zendesk_event(detail__id="abc"), "detail.id must be a numeric Zendesk ticket id, not 'abc'"),
        (_zendesk_event(detail__id=True), "detail.id must be a numeric Zendesk ticket id, not True"),
        (_zendesk_event(subject="zen:ticket:9999"), "subject 'zen:ticket:9999' does not match detail.id '5158'"),
        (_zendesk_event(type=""), "type must be a non-empty string"),
        (_zendesk_event(type="ticket.created"), "type 'ticket.created' is not a Zendesk event type (zen:event-type:...)"),
        (_zendesk_event(type="zen:event-type:user.created"),
         "unsupported Zendesk event type 'zen:event-type:user.created': subscribe this webhook to ticket events only"),
        (_zendesk_event(time="last tuesday"), "time is not an ISO-8601 time: 'last tuesday'"),
        (_zendesk_event(detail__actor_id=["x"]), "detail.actor_id must be a string or number"),
        (_zendesk_event(type="zen:event-type:ticket.comment_added", event={}), "missing event.comment"),
        ({"hello": "world"},
         "not a Zendesk webhook body: expected an event-subscription body (type, detail) "
         "or the documented trigger body (ticket_id, event, updated_at, current_user_id)"),
    ],
)
def test_zendesk_event_subscription_errors_name_what_is_wrong(body, message):
    with pytest.raises(PayloadError) as info:
        parse_zendesk(body, None)
    assert info.value.message == message
    assert info.value.status == 400


def test_zendesk_numeric_ids_are_accepted_as_text():
    event = parse_zendesk(_zendesk_event(detail__id=5158, detail__actor_id=77), None)
    assert (event.ticket_id, event.actor_id) == ("5158", "77")


TRIGGER = {"ticket_id": "5158", "event": "ticket_updated", "updated_at": "2025-01-08T11:30Z", "current_user_id": "1"}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"ticket_id": "{{ticket.id}}"}, "ticket_id must be a numeric Zendesk ticket id, not '{{ticket.id}}'"),
        ({"event": "ticket_solved"}, "event must be one of ticket_created, ticket_updated, not 'ticket_solved'"),
        ({"updated_at": "December 12, 2013"}, "updated_at is not an ISO-8601 time: 'December 12, 2013'"),
        ({"updated_at": ""}, "updated_at must be an ISO-8601 time"),
        ({"ticket_title": "Hello"},
         "Zendesk trigger body: unexpected keys 'ticket_title' (use the documented body template)"),
    ],
)
def test_zendesk_trigger_errors_name_what_is_wrong(changes, message):
    with pytest.raises(PayloadError) as info:
        parse_zendesk({**TRIGGER, **changes}, None)
    assert info.value.message == message


def test_zendesk_trigger_missing_keys_are_listed():
    with pytest.raises(PayloadError) as info:
        parse_zendesk({"ticket_id": "1"}, None)
    assert info.value.message == "Zendesk trigger body: missing event, updated_at, current_user_id"


def _jira_event(name="issue_updated_priority", **changes) -> dict:
    return _edited(_load("jira", name), changes)


AUTOMATION = {"issueKey": "HELP-1", "event": "issue_updated", "actor": "abc", "occurredAt": "2025-03-04T09:15:27.4+0000"}


@pytest.mark.parametrize(
    "body, message",
    [
        (_jira_event(issue=...), "missing issue.key"),
        (_jira_event(issue__key=...), "missing issue.key"),
        (_jira_event(issue__key="tes-41"), "issue.key must be a Jira issue key like ABC-123, not 'tes-41'"),
        (_jira_event(issue__key=10040), "issue.key must be a Jira issue key like ABC-123, not 10040"),
        (_jira_event(webhookEvent=""), "webhookEvent must be a non-empty string"),
        (_jira_event(webhookEvent=7), "webhookEvent must be a non-empty string"),
        (_jira_event(timestamp="2019-02-16"), "timestamp must be epoch milliseconds"),
        (_jira_event(user="admin"), "user must be an object"),
        (_jira_event("comment_created", issue=...), "missing issue.key"),
        ({**AUTOMATION, "issueKey": ""}, "issueKey must be a Jira issue key like ABC-123, not ''"),
        ({**AUTOMATION, "event": "sla_breached"},
         "event must be one of comment_created, issue_created, issue_updated, not 'sla_breached'"),
        ({**AUTOMATION, "occurredAt": "{{now}}"}, "occurredAt is not an ISO-8601 time: '{{now}}'"),
        ({**AUTOMATION, "summary": "x"}, "Jira automation body: unexpected keys 'summary' (use the documented body template)"),
        ({"issueKey": "HELP-1"}, "Jira automation body: missing event, actor, occurredAt"),
        ({"key": "HELP-1"},
         "not a Jira webhook body: expected an admin webhook body (webhookEvent, issue) "
         "or the documented automation body (issueKey, event, actor, occurredAt)"),
    ],
)
def test_jira_errors_name_what_is_wrong(body, message):
    with pytest.raises(PayloadError) as info:
        parse_jira(body, None)
    assert info.value.message == message


def test_jira_unknown_event_is_recorded_as_ignored_not_refused():
    event = parse_jira({"webhookEvent": "sprint_started", "timestamp": 1550286678321}, "d-1")
    assert (event.handled, event.ticket_id, event.event_type) == (False, "", "sprint_started")


@pytest.mark.parametrize(
    "body, message",
    [
        (b"", "body is not valid JSON: Expecting value at line 1 column 1"),
        (b'{"a": ', "body is not valid JSON: Expecting value at line 1 column 7"),
        (b"[1, 2]", "body must be a JSON object"),
        (b"\xff\xfe\xfa", "body is not UTF-8 JSON"),
    ],
)
def test_undecodable_bodies(body, message):
    with pytest.raises(PayloadError) as info:
        decode_json_object(body)
    assert info.value.message == message
