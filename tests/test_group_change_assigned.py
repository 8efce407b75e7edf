"""The service moves the owner group of a ticket whose assignee is not in the new group (issue 9, item 5).

Zendesk accounts answer such a move in one of two ways: 422 "Assignee: is not a member of the group"
(nothing stored), or they store the move and unassign the ticket silently. Either way the ticket must
reach its new group (no dead letter) and the internal note must say who was unassigned. JSM allows any
assignee with any group: the edit leaves the assignee alone.

Zendesk runs end to end (signed webhook -> pass -> connector -> in-memory account with group
memberships); every request is validated against the vendor specs."""
from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pytest
import responses

from connectors.jira.connector import JiraConnector
from integration.model import Decision
from integration.pipeline import process_ticket
from tests.support.jira_helpers import (
    SITE, SleepRecorder, body_of, enterprise_matrix, make_settings, recorded, validate_all,
)
from tests.support.openapi_check import validate_zendesk_calls
from tests.support.zendesk_fake import FakeZendesk
from tests.support.zendesk_pipeline import signed_headers, zendesk_runtime

FIXTURES = Path(__file__).parent / "fixtures" / "zendesk"
SECRET = "zd-group-move-secret"
SIGNED_AT = datetime(2026, 11, 27, 9, 31, tzinfo=timezone.utc)
ADA = 2002  # Ada Agent, the assignee of ticket 5158 (fixture), a member of Frontline support only
FRONTLINE, SENIOR_ENGINEERING = 360000200001, 360000200005
UNASSIGNED_NOTE = "Assignee Ada Agent is not in Senior engineering; unassigned so the ticket could move."
NOT_A_MEMBER = {"error": "RecordInvalid", "description": "Record validation errors",
                "details": {"assignee": [{"description": "Assignee: is not a member of the group",
                                          "error": "InvalidValue"}]}}


class GroupMembershipZendesk(FakeZendesk):
    """The in-memory account with group memberships, enforcing them as an account does on a group move:
    `on_foreign_assignee` "reject" answers 422 (nothing stored), "unassign" stores the move unassigned."""

    def __init__(self, rsps, on_foreign_assignee: str):
        super().__init__(rsps)
        self.on_foreign_assignee = on_foreign_assignee
        self.members: dict[int, set[int]] = {FRONTLINE: {ADA}, SENIOR_ENGINEERING: set()}

    def _update_ticket(self, path, query, body):
        ticket = self.tickets.get(self._ticket_id(path))
        data = (body or {}).get("ticket") or {}
        assignee = data["assignee_id"] if "assignee_id" in data else (ticket or {}).get("assignee_id")
        group = data.get("group_id", (ticket or {}).get("group_id"))
        foreign = ticket is not None and assignee is not None and assignee not in self.members.get(group, set())
        stale = data.get("safe_update") and ticket is not None and data.get("updated_stamp") != ticket["updated_at"]
        if foreign and not stale and self.on_foreign_assignee == "reject":
            return 422, NOT_A_MEMBER
        status, payload = super()._update_ticket(path, query, body)
        if status == 200:
            ticket["assignee_id"] = None if foreign else assignee
        return status, payload


@contextmanager
def account(on_foreign_assignee: str):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = GroupMembershipZendesk(rsps, on_foreign_assignee)
        yield fake
        validate_zendesk_calls(rsps.calls)


def run_enterprise_outage(tmp_path, enterprise_matrix_path, fake: FakeZendesk):
    """Ticket 5158 (assigned to Ada, Frontline) becomes an enterprise production outage: rule
    enterprise-outage moves it to L3, owned by Senior engineering. Returns the pass result and runtime."""
    runtime, client = zendesk_runtime(tmp_path, enterprise_matrix_path, fake, secret=SECRET, now=SIGNED_AT)
    ticket = fake.tickets["5158"]
    assert ticket["assignee_id"] == ADA and ticket["group_id"] == FRONTLINE
    next(cf for cf in ticket["custom_fields"] if cf["id"] == 360000100005)["value"] = "deploy at 08:00"
    body = (FIXTURES / "ticket_created.json").read_bytes()
    assert client.post("/webhooks/zendesk", data=body,
                       headers=signed_headers(SECRET, SIGNED_AT, body, "inv-1")).status_code < 300
    try:
        return process_ticket("zendesk", "5158", deps=runtime.deps())
    finally:
        runtime.db.dispose()


@pytest.mark.parametrize("behaviour", ["reject", "unassign"])
def test_zendesk_move_of_a_foreign_assignee_reaches_the_new_group_and_the_note_says_so(
        tmp_path, enterprise_matrix_path, behaviour):
    with account(behaviour) as fake:
        earlier = len(fake.comments["5158"])
        result = run_enterprise_outage(tmp_path, enterprise_matrix_path, fake)

        assert result.status == "done", result.error
        ticket = fake.tickets["5158"]
        assert (ticket["group_id"], ticket["assignee_id"]) == (SENIOR_ENGINEERING, None)
        assert "esc_l3" in ticket["tags"]
        posted = fake.comments["5158"][earlier:]
        notes = [c for c in posted if not c["public"]]
        assert len(notes) == 1 and notes[0]["body"].endswith(UNASSIGNED_NOTE)
        assert "L3" in notes[0]["body"]
        replies = [c for c in posted if c["public"]]
        assert len(replies) == 1 and "critical incident" in replies[0]["body"]
        stored = [body["ticket"] for body in fake.put_bodies()]
        if behaviour == "reject":
            # Refused once (422, nothing stored), resent once with the assignee cleared in the same update.
            assert stored[0]["assignee_id"] is None and stored[0]["group_id"] == SENIOR_ENGINEERING
            assert len(fake.calls("PUT", "/api/v2/tickets/5158")) == 3
        else:
            # Zendesk unassigned by itself: the move is sent as is, and nothing is sent twice.
            assert "assignee_id" not in stored[0] and stored[0]["group_id"] == SENIOR_ENGINEERING
            assert len(fake.calls("PUT", "/api/v2/tickets/5158")) == 2
        assert len(stored) == 2  # reply + fields, then the note


def test_zendesk_move_keeps_an_assignee_who_is_in_the_new_group(tmp_path, enterprise_matrix_path):
    with account("reject") as fake:
        fake.members[SENIOR_ENGINEERING].add(ADA)
        result = run_enterprise_outage(tmp_path, enterprise_matrix_path, fake)

        assert result.status == "done", result.error
        assert (fake.tickets["5158"]["group_id"], fake.tickets["5158"]["assignee_id"]) == (SENIOR_ENGINEERING, ADA)
        assert all("assignee_id" not in body["ticket"] for body in fake.put_bodies())
        assert not any("unassigned" in c["body"] for c in fake.comments["5158"])
        assert len(fake.calls("PUT", "/api/v2/tickets/5158")) == 2


def test_jsm_group_move_leaves_the_assignee_alone():
    matrix = enterprise_matrix()
    connector = JiraConnector(make_settings(), matrix, retry_policy=SleepRecorder().policy())
    issue = recorded("issue_SUP-7.json")
    issue["fields"]["assignee"] = {"accountId": "5b10ac8d82e05b22cc7d4ef5", "displayName": "Ada Agent",
                                   "emailAddress": "ada@acme.example"}
    with responses.RequestsMock(assert_all_requests_are_fired=True) as http:
        http.get(f"{SITE}/rest/api/3/myself", json=recorded("myself.json"))
        http.get(f"{SITE}/rest/api/3/issue/SUP-7", json=issue)
        comments = recorded("comments_SUP-7_page2.json")
        comments.update(start=0, isLastPage=True)
        http.get(f"{SITE}/rest/servicedeskapi/request/SUP-7/comment", json=comments)
        http.put(f"{SITE}/rest/api/3/issue/SUP-7", status=204)
        http.post(f"{SITE}/rest/servicedeskapi/request/SUP-7/comment", status=201, json={"id": "30002"})

        ticket = connector.fetch_ticket("SUP-7")
        assert ticket.assignee is not None and ticket.assignee.name == "Ada Agent"
        decision = Decision(vendor="jira", ticket_id="SUP-7", matrix_version=matrix.version(),
                            decided_at=SIGNED_AT, to_level="L3", owner_group="senior_engineering",
                            internal_note="Entered L3 (rule enterprise-outage).")
        result = connector.apply(ticket, decision)

        edit = body_of(http.calls[3])
        assert edit == {"fields": {"customfield_10001": {"name": "eng-senior"}}}
        assert "assignee" not in json.dumps(edit)
        assert body_of(http.calls[4])["body"] == "Entered L3 (rule enterprise-outage)."
        assert result.writes == 2
        validate_all(http.calls)
