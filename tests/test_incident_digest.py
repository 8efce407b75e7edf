"""Status digests with content (issue 11 part 3): the L3 cadence digest of the enterprise example, rendered by
the cadence timer through the pipeline against the validated fake Zendesk account, names the milestones met
(with their times), what is still pending, the blocker and the revised ETA."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from integration.pipeline import fire_timer
from integration.store.db import TimerRow
from tests.test_incident_roles import (  # noqa: F401 - fixtures
    CONTACT_FIELD, public_comments, rig, run_pass, set_field, slack)

ETA_FIELD, BLOCKED_BY_FIELD = 360000100009, 360000100010


def cadence_timer(runtime) -> TimerRow:
    with runtime.db.session() as session:
        return session.scalars(select(TimerRow).where(TimerRow.kind == "cadence", TimerRow.level == "L3",
                                                      TimerRow.status == "pending")).one()


def test_digest_names_milestones_met_the_blocker_and_the_revised_eta(rig):  # noqa: F811
    runtime, fake, clock = rig
    run_pass(runtime, "created")  # enters L3 and records the acknowledgement (the fixture has an agent reply)
    ticket = fake.tickets["5158"]
    ticket["tags"].append("diagnosed")
    ticket["updated_at"] = "2026-11-27T08:40:00Z"
    set_field(ticket, BLOCKED_BY_FIELD, "payment provider incident PP-77")
    set_field(ticket, ETA_FIELD, "2026-11-27 14:00 CET")
    clock.now = clock.now + timedelta(minutes=40)
    run_pass(runtime, "diagnosed")

    due = cadence_timer(runtime)
    clock.now = due.due_at + timedelta(seconds=1)
    before = len(public_comments(fake))
    assert fire_timer(due.id, deps=runtime.deps()) == "fired"
    [digest] = public_comments(fake)[before:]
    assert digest.splitlines() == [
        "Status digest for 5158 (Senior engineering).",
        "Reached: Acknowledged at 2026-11-27 09:05 CET.",  # the pass saw the 08:25 reply at 08:05 (fake clock),
        "Reached: Diagnosed at 2026-11-27 09:40 CET.",
        "Next: Interim fix in place, Resolved.",
        "Blocked by: payment provider incident PP-77.",
        "Revised ETA: 2026-11-27 14:00 CET.",
        "Next digest within 2h.",
    ]


def test_digest_is_signed_by_the_named_customer_contact(rig):  # noqa: F811
    runtime, fake, clock = rig
    set_field(fake.tickets["5158"], CONTACT_FIELD, "Ada Agent")
    run_pass(runtime, "created")
    due = cadence_timer(runtime)
    clock.now = due.due_at + timedelta(seconds=1)
    before = len(public_comments(fake))
    assert fire_timer(due.id, deps=runtime.deps()) == "fired"
    [digest] = public_comments(fake)[before:]
    assert digest.endswith("Next digest within 2h.\n\n— Ada Agent, your contact for this incident")
    assert fire_timer(due.id, deps=runtime.deps()) == "skipped"
