"""SLA clocks through the real timer host and pipeline (in process, injected clock, fake helpdesk; SQLite
and PostgreSQL): timer rows are planned by a pass, fire once, warn, breach into the next level, and stale
rows stay quiet."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from integration.store.db import TicketStateRow, TimerRow
from integration.store.codec import from_json
from integration.store.events import add_hint
from integration.model import TicketState
from integration.pipeline import fire_timer, process_ticket
from tests.support.fake_connector import FakeConnector, make_runtime, make_settings

BERLIN = ZoneInfo("Europe/Berlin")
MONDAY_9 = datetime(2026, 11, 23, 9, 0, tzinfo=BERLIN).astimezone(timezone.utc)
FULL_DATA = {"issue_type": "bug", "account_id": "A-1", "environment": "production", "recent_changes": "none"}


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def rig(database_url, enterprise_matrix_path):
    clock = Clock(MONDAY_9)
    fake = FakeConnector(vendor="zendesk")
    settings = make_settings(database_url, MATRIX_PATH=str(enterprise_matrix_path))
    runtime = make_runtime(settings, fake, clock=clock)
    yield runtime, fake, clock
    runtime.db.dispose()


def timers(runtime, **where) -> list[TimerRow]:
    with runtime.db.session() as session:
        rows = session.scalars(select(TimerRow).order_by(TimerRow.due_at, TimerRow.id)).all()
    return [r for r in rows if all(getattr(r, k) == v for k, v in where.items())]


def state_of(runtime, ticket_id: str) -> TicketState:
    with runtime.db.session() as session:
        return from_json(TicketState, session.get(TicketStateRow, ("zendesk", ticket_id)).state)


def notes(fake) -> list[str]:
    return [w["internal_note"] for w in fake.writes() if w.get("internal_note")]


def test_pass_plans_timer_rows_that_fire_once_and_breach_into_the_next_level(rig):
    runtime, fake, clock = rig
    fake.put("501", fields=FULL_DATA)
    add_hint(runtime.db, "zendesk", "501", "test", key="1")
    process_ticket("zendesk", "501", deps=runtime.deps())
    assert state_of(runtime, "501").level == "L1"
    ack = {(r.kind, r.fraction): r for r in timers(runtime, clock="acknowledge", level="L1")}
    assert ack[("breach", 1.0)].due_at == MONDAY_9 + timedelta(hours=1)
    assert len(timers(runtime, status="pending")) == 17  # 4 clocks x (3 warnings + breach) + cadence
    writes_after_entry = len(fake.writes())

    clock.now = MONDAY_9 + timedelta(minutes=30)
    half = ack[("warning", 0.5)]
    assert fire_timer(half.id, deps=runtime.deps()) == "fired"
    assert fire_timer(half.id, deps=runtime.deps()) == "skipped"  # a duplicate task run
    assert notes(fake)[-1] == ("SLA warning for Frontline support: the acknowledge clock at L1 (Frontline) is "
                               "50 % used: 30m elapsed of 1h, 30m remaining (business hours, calendar business).")
    assert len(fake.writes()) == writes_after_entry + 1

    # the worker was down through the 75 % and 90 % marks and the breach: the reconciler fires them all
    clock.now = MONDAY_9 + timedelta(hours=1, minutes=2)
    report = runtime.reconcile(inline=True)
    assert report.timers == 3
    new_writes = fake.writes()[writes_after_entry + 1:]
    assert len(new_writes) == 1  # no stale warnings, one breach escalation
    assert new_writes[0]["to_level"] == "L2"
    assert new_writes[0]["internal_note"].startswith(
        "SLA breach: the acknowledge clock at L1 (Frontline) ran out. Target 1h, elapsed 1h2m, overdue by 2m")
    state = state_of(runtime, "501")
    ran_out = MONDAY_9 + timedelta(hours=1)  # L2 starts when the L1 clock ran out, not when the late timer ran
    assert state.level == "L2" and state.entered_level_at == ran_out
    assert {r.status for r in timers(runtime, level="L1") if r.clock != "acknowledge"} == {"cancelled"}
    l2_breach = timers(runtime, level="L2", clock="acknowledge", kind="breach")
    assert [r.due_at for r in l2_breach] == [ran_out + timedelta(minutes=30)]
    assert runtime.reconcile(inline=True).timers == 0


def test_pause_and_resume_through_the_pipeline(rig):
    runtime, fake, clock = rig
    fake.put("502", fields=FULL_DATA, updated_at=MONDAY_9.isoformat())
    add_hint(runtime.db, "zendesk", "502", "test", key="1")
    process_ticket("zendesk", "502", deps=runtime.deps())

    paused_at = MONDAY_9 + timedelta(minutes=10)
    fake.edit("502", lambda r: r.update(status="pending", updated_at=paused_at.isoformat()))
    clock.now = paused_at
    add_hint(runtime.db, "zendesk", "502", "test", key="2")
    process_ticket("zendesk", "502", deps=runtime.deps())

    clock.now = MONDAY_9 + timedelta(hours=2)
    before = len(fake.writes())
    runtime.reconcile(inline=True)  # every acknowledge timer is due, but the clock is paused
    assert len(fake.writes()) == before

    resumed_at = MONDAY_9 + timedelta(hours=3)
    fake.edit("502", lambda r: r.update(status="open", updated_at=resumed_at.isoformat()))
    clock.now = resumed_at
    add_hint(runtime.db, "zendesk", "502", "test", key="3")
    process_ticket("zendesk", "502", deps=runtime.deps())
    shifted = timers(runtime, clock="acknowledge", kind="breach", status="pending")
    assert [r.due_at for r in shifted] == [MONDAY_9 + timedelta(hours=3, minutes=50)]  # 1h + 2h50m paused

    clock.now = MONDAY_9 + timedelta(hours=3, minutes=50)
    runtime.reconcile(inline=True)
    assert state_of(runtime, "502").level == "L2"
    assert "elapsed 1h, overdue by 0s" in notes(fake)[-1]
