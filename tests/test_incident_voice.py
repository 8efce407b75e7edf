"""One customer voice at L3 (issue 11 part 2), through the pipeline against the validated fake Zendesk account:
a public reply by an agent who is not the named customer contact gives one internal note addressed to the
incident commander and nothing the customer sees; a redelivered webhook adds nothing; the contact's own
replies are fine."""
from __future__ import annotations

import copy
import json
from dataclasses import replace
from datetime import datetime, timezone

import responses

from integration import pipeline
from integration.store.events import add_hint
from tests.support.jira_helpers import SITE, recorded, validate_all
from tests.test_jira_e2e import issue_as, world  # noqa: F401 - a fixture

from tests.test_incident_roles import (  # noqa: F401 - fixtures
    CONTACT_FIELD, IC_FIELD, internal_notes, public_comments, rig, run_pass, set_field, slack)


def agent_reply(fake, author_id: int, at: str, body: str) -> None:
    fake.comments["5158"].append({"id": 70000 + len(fake.comments["5158"]), "type": "Comment", "author_id": author_id,
                                  "body": body, "public": True, "created_at": at})
    fake.tickets["5158"]["updated_at"] = at


def test_public_reply_by_a_non_contact_agent_notes_the_commander_once(rig):  # noqa: F811
    runtime, fake, clock = rig
    ticket = fake.tickets["5158"]
    set_field(ticket, IC_FIELD, "Dana Ops")
    set_field(ticket, CONTACT_FIELD, "ada@acme.example")  # Ada Agent (user 2002) speaks to the customer
    run_pass(runtime, "created")
    notes, public = len(internal_notes(fake)), len(public_comments(fake))

    # Ada, the contact, replies (after her 09:30:15 reply already on the ticket): nothing to say.
    clock.now = datetime(2026, 11, 27, 9, 41, tzinfo=timezone.utc)
    agent_reply(fake, 2002, "2026-11-27T09:40:00Z", "We are on it.")
    run_pass(runtime, "contact-reply")
    assert len(internal_notes(fake)) == notes

    # Another agent of the account answers the customer directly.
    fake.users["2003"] = {"id": 2003, "name": "Bo Engineer", "email": "bo@acme.example", "role": "agent"}
    clock.now = datetime(2026, 11, 27, 9, 51, tzinfo=timezone.utc)
    agent_reply(fake, 2003, "2026-11-27T09:50:00Z", "Root cause is a bad deploy, fix at noon.")
    public = len(public_comments(fake))
    run_pass(runtime, "bo-reply")
    assert internal_notes(fake)[notes:] == [
        "One customer voice at L3: the public reply of 2026-11-27 10:50 CET came from Bo Engineer, not from the "
        "Customer contact (ada@acme.example). For Incident commander Dana Ops: please route customer updates "
        "through ada@acme.example."]
    assert len(public_comments(fake)) == public  # the service adds nothing the customer sees

    run_pass(runtime, "bo-reply-redelivered")  # the same change delivered again: no second note
    assert len(internal_notes(fake)) == notes + 1


def test_jsm_reply_by_a_non_contact_agent_notes_the_commander(world):  # noqa: F811
    """The same on Jira Service Management: the author of the last public agent reply comes from the JSM
    comment stream, the note is an internal JSM comment; every request validated against the Jira specs."""
    key = "SUP-7"
    l3 = {"self": f"{SITE}/rest/api/3/customFieldOption/10303", "value": "L3", "id": "10303"}
    issue = issue_as(key, customfield_10106="Dana Ops", customfield_10107="Sam Agent", customfield_10108=l3)
    comments = recorded("comments_SUP-7_page2.json")
    comments.update(start=0, isLastPage=True)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as http:
        http.get(f"{SITE}/rest/api/3/myself", json=recorded("myself.json"))
        http.get(f"{SITE}/rest/api/3/issue/{key}", json=issue)
        http.get(f"{SITE}/rest/servicedeskapi/request/{key}/comment", json=comments)
        http.put(f"{SITE}/rest/api/3/issue/{key}", status=204)
        http.post(f"{SITE}/rest/servicedeskapi/request/{key}/comment", status=201, json={"id": "30001"})
        add_hint(world["db"], "jira", key, "test", key="placed")
        assert pipeline.process_ticket("jira", key, deps=world["deps"]).status == "done"
        posted = len(http.calls)

        later = copy.deepcopy(comments["values"][-1])
        later.update(id="20009", body="Fix rolls out at noon.",
                     author={"accountId": "5d11aa0000000000000000bb", "displayName": "Bo Engineer", "active": True,
                             "emailAddress": "bo@acme.example"})
        later["created"] = {**later["created"], "iso8601": "2026-11-27T10:35:00+0100",
                            "jira": "2026-11-27T10:35:00.000+0100", "epochMillis": 1795772100000}
        comments["values"].append(later)
        http.replace(responses.GET, f"{SITE}/rest/servicedeskapi/request/{key}/comment", json=comments)
        world["deps"] = replace(world["deps"], now=lambda: datetime(2026, 11, 27, 9, 40, tzinfo=timezone.utc))
        add_hint(world["db"], "jira", key, "test", key="bo-replied")
        assert pipeline.process_ticket("jira", key, deps=world["deps"]).status == "done"
        notes = [json.loads(c.request.body) for c in http.calls[posted:]
                 if c.request.method == "POST" and c.request.url.endswith("/comment")]
        assert notes == [{"body": "One customer voice at L3: the public reply of 2026-11-27 10:35 CET came from Bo "
                                  "Engineer, not from the Customer contact (Sam Agent). For Incident commander Dana "
                                  "Ops: please route customer updates through Sam Agent.", "public": False}]
        assert validate_all(http.calls) == len(http.calls)
