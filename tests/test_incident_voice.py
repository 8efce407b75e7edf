"""One customer voice at L3 (issue 11 part 2), through the pipeline against the validated fake Zendesk account:
a public reply by an agent who is not the named customer contact gives one internal note addressed to the
incident commander and nothing the customer sees; a redelivered webhook adds nothing; the contact's own
replies are fine."""
from __future__ import annotations

from datetime import datetime, timezone

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
