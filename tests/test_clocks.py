"""SLA clocks with an injected clock: planning, warnings, breach through decide(), pause/resume, cadence.

The example matrix runs on a Europe/Berlin business calendar (Mon-Fri 08:00-18:00, Christmas holidays).
L1: acknowledge 1h, diagnose 8h, interim_fix 2d, resolve 5d; remind cadence every 1d; acknowledge and
diagnose breaches go to L2. L2 requires account_id, environment, recent_changes and sends a status
update to the customer every 8h.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from integration import clocks
from integration.clocks import BREACH, CADENCE, WARNING, on_timer, plan_timers, track
from integration.engine import decide, next_state
from integration.model import Person, Ticket, TicketState
from integration.model import TimerSpec
from matrix_config.loader import load_matrix
from matrix_config.schema import Matrix

BERLIN = ZoneInfo("Europe/Berlin")


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN).astimezone(timezone.utc)


@pytest.fixture(scope="module")
def matrix(enterprise_matrix_path) -> Matrix:
    return load_matrix(enterprise_matrix_path).matrix


@pytest.fixture(scope="module")
def matrix_24x7(matrix) -> Matrix:
    data = matrix.model_dump(mode="json")
    data["clocks"]["calendar"] = None
    data["calendars"] = {}
    return Matrix.model_validate(data)


FULL_DATA = {"issue_type": "bug", "account_id": "A-1", "environment": "production", "recent_changes": "none"}


def new_ticket(**changes) -> Ticket:
    base = Ticket(vendor="zendesk", id="101", subject="Broken export", status="open", priority="normal",
                  requester=Person(name="Dana", email="dana@example.com"), fields={"issue_type": "bug"})
    return base.with_(**changes)


class Desk:
    """A ticket moving through passes the way the pipeline runs them: decide, next_state, track, plan."""

    def __init__(self, matrix: Matrix, ticket: Ticket):
        self.matrix = matrix
        self.ticket = ticket
        self.state: TicketState | None = None
        self.timers: list[TimerSpec] = []

    def process(self, now: datetime, **ticket_changes) -> list[TimerSpec]:
        if ticket_changes:
            self.ticket = self.ticket.with_(updated_at=now, **ticket_changes)
        before = self.state
        decision = decide(self.ticket, before, self.matrix, now)
        after = track(next_state(before, self.ticket, decision), self.ticket, self.matrix, now)
        planned = plan_timers(before, after, decision, self.ticket, self.matrix, now)
        self.state = after
        self.timers.extend(planned)
        return planned

    def fire(self, timer: TimerSpec, now: datetime):
        outcome = on_timer(timer, self.ticket, self.state, self.matrix, now)
        if outcome.state is not None:
            self.state = outcome.state
        self.timers.extend(outcome.schedule)
        return outcome

    def timer(self, kind: str, clock: str, fraction: float | None = None, level: str | None = None) -> TimerSpec:
        found = [t for t in self.timers if t.kind == kind and t.clock == clock
                 and (fraction is None or t.fraction == fraction) and (level is None or t.level == level)]
        assert found, f"no {kind} timer for {clock} {fraction}"
        return found[-1]


# ------------------------------------------------------------------------------------------ planning
def test_entering_a_level_plans_warnings_and_breach_for_every_clock_in_business_time(matrix):
    desk = Desk(matrix, new_ticket())
    planned = desk.process(berlin(2026, 11, 27, 17, 30))  # Friday 17:30, 30 business minutes left
    assert desk.state.level == "L1"
    ack = {(t.kind, t.fraction): t.due_at for t in planned if t.clock == "acknowledge"}
    assert ack == {
        (WARNING, 0.5): berlin(2026, 11, 27, 18, 0),
        (WARNING, 0.75): berlin(2026, 11, 30, 8, 15),  # over the weekend
        (WARNING, 0.9): berlin(2026, 11, 30, 8, 24),
        (BREACH, 1.0): berlin(2026, 11, 30, 8, 30),
    }
    assert {t.clock for t in planned} == {"acknowledge", "diagnose", "interim_fix", "resolve", "update_cadence"}
    assert all(t.level == "L1" and t.matrix_version == matrix.version() for t in planned)
    # a pass that changes nothing plans nothing new for the milestone clocks
    again = desk.process(berlin(2026, 11, 27, 17, 40))
    assert [t.kind for t in again] == [CADENCE]
    assert again[0].due_at == desk.timer(CADENCE, "update_cadence").due_at


def test_holiday_and_weekend_push_the_breach(matrix):
    desk = Desk(matrix, new_ticket())
    desk.process(berlin(2026, 12, 23, 17, 45))  # Wednesday before Christmas; 24-26 holidays, 27 Sunday
    assert desk.timer(BREACH, "acknowledge").due_at == berlin(2026, 12, 28, 8, 45)


def test_breach_due_time_keeps_local_business_hours_across_dst(matrix):
    desk = Desk(matrix, new_ticket())
    desk.process(berlin(2026, 10, 23, 17, 30))  # Friday before the clocks go back
    assert desk.timer(BREACH, "acknowledge").due_at == datetime(2026, 10, 26, 7, 30, tzinfo=timezone.utc)  # 08:30 CET


def test_without_calendar_clocks_run_24x7(matrix_24x7):
    desk = Desk(matrix_24x7, new_ticket())
    start = berlin(2026, 11, 27, 17, 30)
    desk.process(start)
    assert desk.timer(BREACH, "acknowledge").due_at == start + timedelta(hours=1)
    assert desk.timer(WARNING, "acknowledge", 0.5).due_at == start + timedelta(minutes=30)


def test_custom_warn_at_fractions(matrix_24x7):
    data = matrix_24x7.model_dump(mode="json")
    data["clocks"]["warn_at"] = [0.8]
    custom = Matrix.model_validate(data)
    desk = Desk(custom, new_ticket())
    desk.process(berlin(2026, 11, 23, 9, 0))
    assert sorted(t.fraction for t in desk.timers if t.clock == "acknowledge") == [0.8, 1.0]


# ------------------------------------------------------------------------------------------ warnings
def test_warning_is_one_internal_note_per_threshold(matrix_24x7):
    desk = Desk(matrix_24x7, new_ticket())
    start = berlin(2026, 11, 23, 9, 0)
    desk.process(start)
    half = desk.timer(WARNING, "acknowledge", 0.5)
    outcome = desk.fire(half, start + timedelta(minutes=30))
    decision = outcome.decision
    assert decision.public_reply is None
    assert decision.internal_note == (
        "SLA warning for Frontline support: the acknowledge clock at L1 (Frontline) is 50 % used: "
        "30m elapsed of 1h, 30m remaining."
    )
    assert decision.matrix_version == matrix_24x7.version()
    # the same threshold again (a duplicate task run) says nothing
    assert desk.fire(half, start + timedelta(minutes=31)).decision is None
    later = desk.fire(desk.timer(WARNING, "acknowledge", 0.75), start + timedelta(minutes=45))
    assert "75 % used: 45m elapsed of 1h, 15m remaining" in later.decision.internal_note


def test_warning_names_business_calendar(matrix):
    desk = Desk(matrix, new_ticket())
    desk.process(berlin(2026, 11, 27, 17, 30))
    outcome = desk.fire(desk.timer(WARNING, "acknowledge", 0.75), berlin(2026, 11, 30, 8, 15))
    assert outcome.decision.internal_note.endswith(
        "75 % used: 45m elapsed of 1h, 15m remaining (business hours, calendar business).")


def test_after_downtime_only_the_highest_reached_warning_is_sent(matrix_24x7):
    desk = Desk(matrix_24x7, new_ticket())
    start = berlin(2026, 11, 23, 9, 0)
    desk.process(start)
    late = start + timedelta(minutes=50)  # 83 %: the 50 % and 75 % timers are overdue together
    assert desk.fire(desk.timer(WARNING, "acknowledge", 0.5), late).decision is None
    assert "75 % used" in desk.fire(desk.timer(WARNING, "acknowledge", 0.75), late).decision.internal_note
    # past the target no warning is sent: the breach speaks
    assert desk.fire(desk.timer(WARNING, "acknowledge", 0.9), start + timedelta(minutes=70)).decision is None


def test_timer_firing_a_moment_early_still_counts_as_due(matrix_24x7):
    desk = Desk(matrix_24x7, new_ticket())
    start = berlin(2026, 11, 23, 9, 0)
    desk.process(start)
    outcome = desk.fire(desk.timer(WARNING, "acknowledge", 0.5), start + timedelta(minutes=30) - timedelta(seconds=1))
    assert "50 % used" in outcome.decision.internal_note


# ------------------------------------------------------------------------------------------ stopping
def test_acknowledged_clock_stops_and_its_timers_do_nothing(matrix_24x7):
    desk = Desk(matrix_24x7, new_ticket())
    start = berlin(2026, 11, 23, 9, 0)
    desk.process(start)
    reply = start + timedelta(minutes=20)
    desk.process(reply + timedelta(seconds=5), first_public_agent_reply_at=reply, last_public_agent_reply_at=reply)
    assert desk.state.milestones["acknowledge"] == reply
    assert desk.fire(desk.timer(WARNING, "acknowledge", 0.5), start + timedelta(minutes=30)).decision is None
    assert desk.fire(desk.timer(BREACH, "acknowledge"), start + timedelta(hours=1)).decision is None
    assert desk.state.level == "L1"
    # the other clocks still run
    assert "diagnose clock" in desk.fire(desk.timer(WARNING, "diagnose", 0.5), start + timedelta(hours=4)).decision.internal_note


def test_diagnosed_tag_stops_the_diagnose_clock(matrix_24x7):
    desk = Desk(matrix_24x7, new_ticket())
    start = berlin(2026, 11, 23, 9, 0)
    desk.process(start)
    desk.process(start + timedelta(hours=1), tags=frozenset({"diagnosed"}))
    assert "diagnose" in desk.state.milestones
    assert desk.fire(desk.timer(BREACH, "diagnose"), start + timedelta(hours=8)).decision is None


def test_resolved_ticket_ignores_all_timers(matrix_24x7):
    desk = Desk(matrix_24x7, new_ticket())
    start = berlin(2026, 11, 23, 9, 0)
    desk.process(start)
    desk.process(start + timedelta(minutes=10), status="solved")
    assert desk.process(start + timedelta(minutes=11)) == []
    for timer in list(desk.timers):
        assert desk.fire(timer, timer.due_at).decision is None


def test_timer_of_a_previous_level_is_ignored(matrix_24x7):
    desk = Desk(matrix_24x7, new_ticket(fields=FULL_DATA))
    start = berlin(2026, 11, 23, 9, 0)
    desk.process(start)
    old_breach = desk.timer(BREACH, "interim_fix", level="L1")
    desk.process(start + timedelta(minutes=5), fields={**FULL_DATA, "level": "L2"})  # an agent escalates by hand
    assert desk.state.level == "L2"
    assert desk.fire(old_breach, old_breach.due_at).decision is None
    assert desk.fire(desk.timer(WARNING, "acknowledge", 0.5, level="L1"), start + timedelta(minutes=30)).decision is None


def test_timer_of_another_matrix_version_is_ignored(matrix_24x7):
    desk = Desk(matrix_24x7, new_ticket())
    start = berlin(2026, 11, 23, 9, 0)
    desk.process(start)
    stale = desk.timer(WARNING, "acknowledge", 0.5)
    from dataclasses import replace

    assert desk.fire(replace(stale, matrix_version="0123456789ab"), stale.due_at).decision is None


# ------------------------------------------------------------------------------------------ breach
def test_acknowledge_breach_escalates_to_the_next_level_through_decide(matrix_24x7):
    desk = Desk(matrix_24x7, new_ticket(fields=FULL_DATA))
    start = berlin(2026, 11, 23, 9, 0)
    desk.process(start)
    fired_at = start + timedelta(hours=1, minutes=3)  # the worker ran three minutes late
    outcome = desk.fire(desk.timer(BREACH, "acknowledge"), fired_at)
    decision = outcome.decision
    assert decision.to_level == "L2"
    assert decision.owner_group == "product_specialists"
    assert decision.priority == "high"
    assert decision.internal_note.startswith(
        "SLA breach: the acknowledge clock at L1 (Frontline) ran out. Target 1h, elapsed 1h3m, overdue by 3m. "
        "Escalated to L2.")
    ran_out = start + timedelta(hours=1)
    assert desk.state.level == "L2" and desk.state.entered_level_at == ran_out
    assert desk.state.pending_breaches == ()
    # the new level's clocks run from the breach (when L1's clock ran out), not from the late worker
    assert desk.timer(BREACH, "acknowledge", level="L2").due_at == ran_out + timedelta(minutes=30)
    # the breach acts once
    assert desk.fire(desk.timer(BREACH, "acknowledge", level="L1"), fired_at).decision is None


def test_breach_waits_for_required_data(matrix_24x7):
    desk = Desk(matrix_24x7, new_ticket())  # no account id, environment, recent changes
    start = berlin(2026, 11, 23, 9, 0)
    desk.process(start)
    outcome = desk.fire(desk.timer(BREACH, "acknowledge"), start + timedelta(hours=1))
    decision = outcome.decision
    assert decision.to_level is None
    assert decision.missing_data == ("account_id", "environment", "recent_changes")
    assert decision.public_reply and "Account ID" in decision.public_reply  # the data request
    note = decision.internal_note
    assert note.startswith("SLA breach: the acknowledge clock at L1 (Frontline) ran out. Target 1h, elapsed 1h, "
                           "overdue by 0s. The escalation to L2 is on hold for missing data.")
    assert ("Escalation to L2 (breach of acknowledge) is on hold: missing Account ID, Environment "
            "(production, staging, ...), Recent changes (deploys, config, upgrades). "
            "The customer was asked for this data.") in note
    assert desk.state.level == "L1" and desk.state.pending_level == "L2"
    assert outcome.schedule == []
    # when the data arrives, the held escalation proceeds in the normal pass
    desk.process(start + timedelta(hours=2), fields=FULL_DATA)
    assert desk.state.level == "L2"


def test_second_breach_while_held_tells_the_owner_and_does_not_ask_the_customer_again(matrix_24x7):
    desk = Desk(matrix_24x7, new_ticket(fields={"issue_type": "bug", "account_id": "A-1"}))
    start = berlin(2026, 11, 23, 9, 0)
    desk.process(start)
    first = desk.fire(desk.timer(BREACH, "acknowledge"), start + timedelta(hours=1)).decision
    assert first.public_reply and first.missing_data == ("environment", "recent_changes")
    # diagnose (8h at L1) breaches too, also pointing at L2, while the data is still missing
    second = desk.fire(desk.timer(BREACH, "diagnose"), start + timedelta(hours=8, minutes=2)).decision
    assert second.public_reply is None and second.missing_data == ()
    assert second.internal_note == (
        "SLA breach: the diagnose clock at L1 (Frontline) ran out. Target 8h, elapsed 8h2m, overdue by 2m. "
        "The escalation to L2 is on hold for missing data (Environment (production, staging, ...), "
        "Recent changes (deploys, config, upgrades)); the customer was already asked for it. "
        "The ticket moves to L2 when the data arrives.")
    assert desk.state.level == "L1" and desk.state.pending_level == "L2"


def test_breach_without_a_policy_is_a_note_only(matrix_24x7):
    desk = Desk(matrix_24x7, new_ticket(fields=FULL_DATA))
    start = berlin(2026, 11, 23, 9, 0)
    desk.process(start)
    outcome = desk.fire(desk.timer(BREACH, "resolve"), start + timedelta(days=5, minutes=1))
    assert outcome.decision.to_level is None
    assert outcome.decision.internal_note.startswith(
        "SLA breach: the resolve clock at L1 (Frontline) ran out. Target 5d, elapsed 5d1m, overdue by 1m.")
    assert desk.state.level == "L1" and desk.state.pending_breaches == ()


def test_bypassed_ticket_does_not_breach(matrix_24x7):
    desk = Desk(matrix_24x7, new_ticket(fields={"issue_type": "question"}, tags=frozenset({"password_reset"})))
    start = berlin(2026, 11, 23, 9, 0)
    assert desk.process(start) == []
    assert desk.state.bypassed


# ------------------------------------------------------------------------------------------ pause
def test_pause_holds_the_clock_and_resume_shifts_due_times(matrix_24x7):
    desk = Desk(matrix_24x7, new_ticket())
    start = berlin(2026, 11, 23, 9, 0)
    desk.process(start)
    original_half = desk.timer(WARNING, "acknowledge", 0.5)
    assert desk.process(start + timedelta(minutes=20), status="pending") == []  # waiting for the customer
    assert desk.state.clock_state["paused_since"] == (start + timedelta(minutes=20)).isoformat()
    # due while paused: nothing
    assert desk.fire(original_half, original_half.due_at).decision is None
    resumed = start + timedelta(hours=2, minutes=20)
    planned = desk.process(resumed, status="open")
    assert desk.state.clock_state["paused_seconds"] == 2 * 3600
    shifted = {(t.kind, t.clock, t.fraction): t.due_at for t in planned}
    assert shifted[(WARNING, "acknowledge", 0.5)] == start + timedelta(hours=2, minutes=30)
    assert shifted[(BREACH, "acknowledge", 1.0)] == start + timedelta(hours=3)
    # the timer planned before the pause is stale: it does nothing (and re-offers the shifted one)
    stale = desk.fire(original_half, resumed + timedelta(seconds=1))
    assert stale.decision is None
    assert [t.due_at for t in stale.schedule] == [start + timedelta(hours=2, minutes=30)]
    outcome = desk.fire(desk.timer(WARNING, "acknowledge", 0.5), start + timedelta(hours=2, minutes=30))
    assert "30m elapsed of 1h, 30m remaining" in outcome.decision.internal_note


def test_pause_counts_only_business_time(matrix):
    desk = Desk(matrix, new_ticket())
    desk.process(berlin(2026, 11, 27, 17, 0))  # Friday 17:00: ack due 18:00
    desk.process(berlin(2026, 11, 27, 17, 30), status="on_hold")
    planned = desk.process(berlin(2026, 11, 30, 9, 0), status="open")  # Monday 09:00: paused 30m + 1h business
    assert desk.state.clock_state["paused_seconds"] == 90 * 60
    assert {t.fraction: t.due_at for t in planned if t.clock == "acknowledge" and t.kind == BREACH} == {
        1.0: berlin(2026, 11, 30, 9, 30)}


def test_pause_start_is_taken_from_the_ticket_update_time(matrix_24x7):
    desk = Desk(matrix_24x7, new_ticket())
    start = berlin(2026, 11, 23, 9, 0)
    desk.process(start)
    # the webhook was delayed: the pass sees the pending status 10 minutes after the agent set it
    desk.ticket = desk.ticket.with_(status="pending", updated_at=start + timedelta(minutes=20))
    desk.process(start + timedelta(minutes=30))
    assert desk.state.clock_state["paused_since"] == (start + timedelta(minutes=20)).isoformat()


def test_timer_noticing_an_unprocessed_pause_records_it(matrix_24x7):
    desk = Desk(matrix_24x7, new_ticket())
    start = berlin(2026, 11, 23, 9, 0)
    desk.process(start)
    desk.ticket = desk.ticket.with_(status="pending", updated_at=start + timedelta(minutes=25))  # no pass ran
    outcome = desk.fire(desk.timer(WARNING, "acknowledge", 0.5), start + timedelta(minutes=30))
    assert outcome.decision is None
    assert outcome.state.clock_state["paused_since"] == (start + timedelta(minutes=25)).isoformat()


# ------------------------------------------------------------------------------------------ cadence
def test_remind_cadence_posts_an_internal_note(matrix_24x7):
    desk = Desk(matrix_24x7, new_ticket())
    start = berlin(2026, 11, 23, 9, 0)
    desk.process(start)
    cadence = desk.timer(CADENCE, "update_cadence")
    assert cadence.due_at == start + timedelta(days=1)
    outcome = desk.fire(cadence, cadence.due_at)
    assert outcome.decision.public_reply is None
    assert outcome.decision.internal_note == "Reminder: no public update on 101 for 1d. Please update the customer."
    assert [t.due_at for t in outcome.schedule] == [start + timedelta(days=2)]
    assert desk.fire(cadence, cadence.due_at + timedelta(seconds=10)).decision is None  # no second reminder


def test_cadence_skips_when_a_public_update_went_out_and_restarts_from_it(matrix_24x7):
    desk = Desk(matrix_24x7, new_ticket())
    start = berlin(2026, 11, 23, 9, 0)
    desk.process(start)
    cadence = desk.timer(CADENCE, "update_cadence")
    reply = start + timedelta(hours=20)
    planned = desk.process(reply + timedelta(seconds=5), first_public_agent_reply_at=reply, last_public_agent_reply_at=reply)
    assert [t.due_at for t in planned if t.kind == CADENCE] == [reply + timedelta(days=1)]
    outcome = desk.fire(cadence, cadence.due_at)
    assert outcome.decision is None
    assert [t.due_at for t in outcome.schedule] == [reply + timedelta(days=1)]


def test_send_cadence_posts_the_status_template_to_the_customer(matrix_24x7):
    desk = Desk(matrix_24x7, new_ticket(fields=FULL_DATA))
    start = berlin(2026, 11, 23, 9, 0)
    desk.process(start)
    desk.fire(desk.timer(BREACH, "acknowledge"), start + timedelta(hours=1))  # now at L2: status update every 8h
    entered = desk.state.entered_level_at
    cadence = desk.timer(CADENCE, "update_cadence", level="L2")
    assert cadence.due_at == entered + timedelta(hours=8)
    outcome = desk.fire(cadence, cadence.due_at)
    assert outcome.decision.public_reply == (
        "Status update on 101: our Product specialists team is working on it. Next update within 8h.")
    assert outcome.decision.internal_note is None
    assert desk.state.last_public_update_at == cadence.due_at
    assert [t.due_at for t in outcome.schedule] == [cadence.due_at + timedelta(hours=8)]


def test_cadence_does_not_run_while_paused(matrix_24x7):
    desk = Desk(matrix_24x7, new_ticket())
    start = berlin(2026, 11, 23, 9, 0)
    desk.process(start)
    cadence = desk.timer(CADENCE, "update_cadence")
    desk.process(start + timedelta(hours=3), status="pending")
    assert desk.fire(cadence, cadence.due_at).decision is None
    resumed = start + timedelta(days=2)
    planned = desk.process(resumed, status="open")
    assert [t.due_at for t in planned if t.kind == CADENCE] == [resumed + timedelta(days=1)]


def test_cadence_follows_business_hours(matrix):
    desk = Desk(matrix, new_ticket())
    desk.process(berlin(2026, 11, 27, 17, 0))  # Friday 17:00; 1d = 24 business hours = 2.4 business days
    assert desk.timer(CADENCE, "update_cadence").due_at == berlin(2026, 12, 2, 11, 0)


def test_clock_state_resets_on_a_new_level(matrix_24x7):
    desk = Desk(matrix_24x7, new_ticket(fields=FULL_DATA))
    start = berlin(2026, 11, 23, 9, 0)
    desk.process(start)
    desk.fire(desk.timer(WARNING, "acknowledge", 0.5), start + timedelta(minutes=30))
    assert desk.state.clock_state["alerts"] == ["acknowledge:0.5"]
    desk.fire(desk.timer(BREACH, "acknowledge"), start + timedelta(hours=1))
    assert clocks.ClockBook.of(desk.state).alerts == frozenset()
    l2_half = desk.timer(WARNING, "acknowledge", 0.5, level="L2")
    assert "at L2 (Product specialists) is 50 % used" in desk.fire(l2_half, l2_half.due_at).decision.internal_note


def test_reopened_ticket_restarts_resolve_and_continues_the_unmet_clocks(matrix_24x7):
    desk = Desk(matrix_24x7, new_ticket())
    start = berlin(2026, 11, 23, 9, 0)
    desk.process(start)
    desk.process(start + timedelta(hours=2), status="solved")  # diagnose has run 2h of its 8h
    assert desk.process(start + timedelta(hours=3)) == []
    reopened = start + timedelta(hours=6)
    planned = desk.process(reopened, status="open")
    breaches = {t.clock: t.due_at for t in planned if t.kind == BREACH}
    assert breaches["resolve"] == reopened + timedelta(days=5)  # from zero
    assert breaches["diagnose"] == reopened + timedelta(hours=6)  # the 6h it had left
    half = [t for t in planned if t.kind == WARNING and t.clock == "resolve" and t.fraction == 0.5][0]
    outcome = desk.fire(half, half.due_at)
    assert "resolve clock at L1 (Frontline) is 50 % used: 2d12h elapsed of 5d" in outcome.decision.internal_note


def test_warning_addresses_the_owner_for_the_issue_type(matrix_24x7):
    desk = Desk(matrix_24x7, new_ticket(fields={"issue_type": "Billing"}))
    start = berlin(2026, 11, 23, 9, 0)
    desk.process(start)
    outcome = desk.fire(desk.timer(WARNING, "acknowledge", 0.5), start + timedelta(minutes=30))
    assert outcome.decision.internal_note.startswith("SLA warning for Billing desk: the acknowledge clock at L1")
