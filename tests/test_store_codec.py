"""Stored JSON keeps its format: ticket state and decisions written before the pydantic codec
(integration.store.codec) load unchanged, and writing them again gives the same JSON, on SQLite and
PostgreSQL."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from integration.model import ClockStart, Decision, TicketState
from integration.pipeline import repin
from integration.store.codec import from_json, to_json
from integration.store.db import Database, TicketStateRow
from integration.store.matrix_versions import load_current, store_version

# A `ticket_state.state` value exactly as the hand-written converter (integration/db.py to_json) wrote it.
OLD_STATE_ROW = json.loads(
    '{"vendor": "zendesk", "ticket_id": "4711", "level": "L2", "entered_level_at": "2026-11-27T09:30:00+00:00", '
    '"matrix_version": "abc123", "rule_id": "outage-enterprise", "bypassed": false, "pending_level": "L3", '
    '"data_requested": ["environment", "impact"], "milestones": {"acknowledge": "2026-11-27T09:42:00+00:00"}, '
    '"pending_breaches": ["diagnose"], "last_public_update_at": "2026-11-27T09:42:00+00:00", '
    '"pending_cause": "breach:diagnose", "manual_rule_level": "L1", "rejected_level": "L9", '
    '"clock_state": {"level": "L2", "entered_at": "2026-11-27T09:30:00+00:00", "alerts": ["acknowledge:0.75"], '
    '"offsets": {"resolve": 120.0}}}'
)
# A `decisions.decision` value as the hand-written converter wrote it.
OLD_DECISION_ROW = json.loads(
    '{"vendor": "jira", "ticket_id": "SUP-7", "matrix_version": "abc123", "decided_at": "2026-11-27T09:30:00+00:00", '
    '"from_level": "L1", "to_level": "L2", "reason": "L1 -> L2: rule r", "rule_id": "r", "priority": "high", '
    '"owner_group": "tier2", "add_tags": ["a"], "remove_tags": [], "field_updates": {"level": "L2", '
    '"components": ["db", "api"]}, "public_reply": "hi", "internal_note": "note", "missing_data": ["x"], '
    '"start_clocks": [{"clock": "acknowledge", "target_seconds": 3600, "calendar": "business"}, '
    '{"clock": "update_cadence", "target_seconds": 7200, "calendar": null}], "stop_clocks": ["diagnose"], '
    '"milestones": {"diagnose": "2026-11-27T09:30:00+00:00"}, "entered_at": "2026-11-27T09:25:00+00:00", '
    '"held_level": null, "rule_level": "L2", "bypassed": null, "reply_template": "welcome", "rejected_level": null, '
    '"entered_without": ["x"], "bypass_rule": null}'
)
T = datetime(2026, 11, 27, 9, 30, tzinfo=timezone.utc)


def test_an_old_state_row_loads_with_every_value_and_writes_back_identically():
    state = from_json(TicketState, OLD_STATE_ROW)
    assert state == TicketState(
        vendor="zendesk", ticket_id="4711", level="L2", entered_level_at=T, matrix_version="abc123",
        rule_id="outage-enterprise", pending_level="L3", data_requested=("environment", "impact"),
        milestones={"acknowledge": T + timedelta(minutes=12)}, pending_breaches=("diagnose",),
        last_public_update_at=T + timedelta(minutes=12), pending_cause="breach:diagnose", manual_rule_level="L1",
        rejected_level="L9", clock_state=OLD_STATE_ROW["clock_state"],
    )
    assert state.entered_level_at.tzinfo is timezone.utc  # as datetime.fromisoformat gave it
    assert json.dumps(to_json(state)) == json.dumps(OLD_STATE_ROW)


def test_an_old_decision_row_loads_and_writes_back_identically():
    decision = from_json(Decision, OLD_DECISION_ROW)
    assert decision.start_clocks == (ClockStart("acknowledge", 3600, "business"), ClockStart("update_cadence", 7200))
    assert decision.entered_at == T - timedelta(minutes=5)
    assert decision.field_updates == {"level": "L2", "components": ["db", "api"]}
    assert json.dumps(to_json(decision)) == json.dumps(OLD_DECISION_ROW)


def test_rows_from_older_and_newer_versions_of_the_service_load():
    older = {k: v for k, v in OLD_STATE_ROW.items() if k not in {"manual_rule_level", "rejected_level", "clock_state"}}
    assert from_json(TicketState, older).manual_rule_level is None
    assert from_json(TicketState, older).clock_state == {}
    newer = {**OLD_STATE_ROW, "a_field_from_the_future": 1}
    assert from_json(TicketState, newer) == from_json(TicketState, OLD_STATE_ROW)


@pytest.fixture
def db(database_url):
    database = Database(database_url)
    database.migrate()
    yield database
    database.dispose()


def test_repin_rewrites_an_old_state_row_changing_only_the_version(db, enterprise_matrix_path):
    loaded, source = load_current(enterprise_matrix_path)
    with db.session() as session:
        store_version(session, loaded, source)
        session.add(TicketStateRow(vendor="zendesk", ticket_id="4711", state=OLD_STATE_ROW, level="L2",
                                   matrix_version="abc123", status="open", first_seen_at=T, updated_at=T))
    repin(db, "zendesk", "4711", loaded.version)
    with db.session() as session:
        stored = session.get(TicketStateRow, ("zendesk", "4711")).state
    assert stored == {**OLD_STATE_ROW, "matrix_version": loaded.version}


# `TicketState.clock_state` exactly as the hand-written ClockBook.to_json wrote it: a paused stay whose 50 %
# acknowledge warning already went out.
OLD_CLOCK_STATE = json.loads(
    '{"level": "L1", "entered_at": "2026-11-23T08:00:00+00:00", "paused_since": "2026-11-23T08:40:00+00:00", '
    '"paused_seconds": 120.0, "alerts": ["acknowledge:0.5"], "offsets": {"resolve": 30.0}}'
)


def test_an_old_clock_book_is_honoured_and_written_back_identically(enterprise_matrix_path):
    from integration.clocks import ClockBook, on_timer
    from integration.model import Person, Ticket, TimerSpec
    from matrix_config.loader import load_matrix

    matrix = load_matrix(enterprise_matrix_path).matrix
    entered = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
    state = TicketState(vendor="zendesk", ticket_id="101", level="L1", entered_level_at=entered,
                        matrix_version=matrix.version(), clock_state=OLD_CLOCK_STATE)
    book = ClockBook.of(state)
    assert (book.paused_since, book.paused_seconds, book.alerts, book.offset("resolve")) == (
        entered + timedelta(minutes=40), 120.0, frozenset({"acknowledge:0.5"}), 30.0)
    assert json.dumps(book.to_json()) == json.dumps(OLD_CLOCK_STATE)
    assert book.store(state) is state  # nothing to rewrite

    ticket = Ticket(vendor="zendesk", id="101", status="open", requester=Person(name="Dana"))
    # 30 minutes of the 1h target, 2 minutes later for the finished pause
    warning = TimerSpec("zendesk", "101", "warning", "acknowledge", entered + timedelta(minutes=32), "L1",
                        matrix.version(), 0.5)
    unpaused = state.with_(clock_state={**OLD_CLOCK_STATE, "paused_since": None})
    assert on_timer(warning, ticket, unpaused, matrix, entered + timedelta(minutes=33)).decision is None
    not_yet_warned = unpaused.with_(clock_state={**unpaused.clock_state, "alerts": []})
    assert "50 % used" in on_timer(warning, ticket, not_yet_warned, matrix, entered + timedelta(minutes=33)
                                   ).decision.internal_note
