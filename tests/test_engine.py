"""decide() / next_state() on the example enterprise matrix: transitions, gate, bypass, manual, never-down,
milestones, idempotence, version stamping, determinism."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from integration.engine import apply_to_ticket, decide, next_state
from integration.model import Person, Ticket, TicketState
from integration.ticket_json import load_ticket_files
from matrix_config.loader import load_matrix, load_matrix_text

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "tickets"
NOW = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)
ENTERED = NOW - timedelta(hours=2)

FULL_DATA = {"account_id": "A-1", "environment": "production", "recent_changes": "none", "affected_users": 50}


@pytest.fixture(scope="module")
def loaded():
    return load_matrix(REPO / "matrix_config" / "examples" / "enterprise.yaml")


@pytest.fixture(scope="module")
def strict():
    """The example with the strict gate for hand-set levels (`gate: {manual: hold}`)."""
    text = (REPO / "matrix_config" / "examples" / "enterprise.yaml").read_text()
    assert text.count("  manual: flag\n") == 1
    return load_matrix_text(text.replace("  manual: flag\n", "  manual: hold\n"), "enterprise-strict.yaml")


def make_ticket(*, tags=(), status="open", priority=None, group=None, **fields) -> Ticket:
    return Ticket(
        vendor="neutral",
        id="T-1",
        subject="Something broke",
        status=status,
        priority=priority,
        group=group,
        tags=frozenset(tags),
        requester=Person(name="Ada", email="ada@example.com"),
        fields=fields,
    )


def at_level(level: str, **changes) -> TicketState:
    return TicketState(vendor="neutral", ticket_id="T-1", level=level, entered_level_at=ENTERED,
                       rule_id="default", **changes)


def run(loaded, ticket, state, now=NOW):
    """One processing pass: decide, carry the decision out on the ticket, remember the state."""
    decision = decide(ticket, state, loaded.matrix, now, version=loaded.version)
    return decision, apply_to_ticket(ticket, decision), next_state(state, ticket, decision)


# ---------------------------------------------------------------------------------- transitions
TRANSITIONS = [
    # id, fields, state, expected to_level, expected reason fragment
    ("new ticket, no rule -> L1", dict(issue_type="bug"), None, "L1", "no rule matched"),
    ("new enterprise outage -> L3 directly",
     dict(issue_type="outage", customer_tier="enterprise", **FULL_DATA), None, "L3", "rule enterprise-outage"),
    ("new wide outage -> L2", dict(issue_type="outage", affected_users=500, **{k: v for k, v in FULL_DATA.items()
                                                                             if k != "affected_users"}),
     None, "L2", "rule wide-outage"),
    ("L1 -> L2 on acknowledge breach", dict(issue_type="bug", level="L1", **FULL_DATA),
     at_level("L1", pending_breaches=("acknowledge",)), "L2", "breach of acknowledge"),
    ("L2 -> L3 on diagnose breach", dict(issue_type="bug", level="L2", **FULL_DATA),
     at_level("L2", pending_breaches=("diagnose",)), "L3", "breach of diagnose"),
    ("L3 -> L4 on interim_fix breach", dict(issue_type="bug", level="L3", **FULL_DATA),
     at_level("L3", pending_breaches=("interim_fix",)), "L4", "breach of interim_fix"),
    ("L1 -> L2 when a rule starts to match", dict(issue_type="bug", level="L1", impact="critical",
                                                   customer_tier="premium", **FULL_DATA),
     at_level("L1"), "L2", "rule critical-impact"),
    ("breach without on_breach entry: no move", dict(issue_type="bug", level="L3", **FULL_DATA),
     at_level("L3", pending_breaches=("acknowledge",)), None, "no change at L3"),
]


@pytest.mark.parametrize("fields,state,to_level,reason", [c[1:] for c in TRANSITIONS], ids=[c[0] for c in TRANSITIONS])
def test_level_transitions(loaded, fields, state, to_level, reason):
    decision = decide(make_ticket(**fields), state, loaded.matrix, NOW, version=loaded.version)
    assert decision.to_level == to_level
    assert reason in decision.reason
    if to_level:
        level = loaded.matrix.level(to_level)
        assert decision.field_updates["level"] == to_level
        assert {c.clock for c in decision.start_clocks} == {c for c, _ in level.sla.items()} | {"update_cadence"}
        assert decision.public_reply and decision.reply_template == level.on_enter.reply
        assert f"matrix version {loaded.version}" in decision.internal_note


def test_entering_a_level_sets_priority_owner_and_roles(loaded):
    ticket = make_ticket(issue_type="security", tags={"data_exposure"}, priority="normal", **FULL_DATA)
    decision = decide(ticket, None, loaded.matrix, NOW, version=loaded.version)
    assert (decision.to_level, decision.priority, decision.owner_group) == ("L3", "urgent", "security_team")
    assert "Assign: Incident commander, Customer contact" in decision.internal_note
    assert "by rule security-incident of matrix version" in decision.internal_note
    acknowledge = next(c for c in decision.start_clocks if c.clock == "acknowledge")
    assert (acknowledge.target_seconds, acknowledge.calendar) == (15 * 60, "business")


def test_rule_priority_overrides_level_priority_but_never_lowers(loaded):
    decision = decide(make_ticket(issue_type="security", **FULL_DATA), None, loaded.matrix, NOW, version=loaded.version)
    assert (decision.to_level, decision.priority) == ("L2", "high")
    already_urgent = make_ticket(issue_type="security", priority="urgent", **FULL_DATA)
    decision = decide(already_urgent, None, loaded.matrix, NOW, version=loaded.version)
    assert decision.to_level == "L2" and decision.priority is None


def test_owner_and_priority_only_when_different(loaded):
    ticket = make_ticket(issue_type="billing", priority="normal", group="billing_desk", level="L1")
    decision = decide(ticket, None, loaded.matrix, NOW, version=loaded.version)
    assert decision.to_level == "L1"
    assert (decision.priority, decision.owner_group, dict(decision.field_updates)) == (None, None, {})


# ------------------------------------------------------------------------------ never down
def test_never_down_automatically(loaded):
    # At L3 by breach; the only matching rule points at L2.
    ticket = make_ticket(issue_type="outage", affected_users=500, level="L3", **{
        k: v for k, v in FULL_DATA.items() if k != "affected_users"})
    decision = decide(ticket, at_level("L3"), loaded.matrix, NOW, version=loaded.version)
    assert decision.to_level is None and decision.rule_level == "L2"
    assert decision.is_empty


def test_highest_of_rule_and_breach_wins(loaded):
    # L1 with an acknowledge breach (-> L2) while an enterprise outage rule points at L3.
    ticket = make_ticket(issue_type="outage", customer_tier="enterprise", level="L1", **FULL_DATA)
    decision = decide(ticket, at_level("L1", pending_breaches=("acknowledge",)), loaded.matrix, NOW,
                      version=loaded.version)
    assert decision.to_level == "L3" and decision.rule_id == "enterprise-outage"


# ------------------------------------------------------------------------------ required data
def test_required_data_gate_holds_asks_once_and_proceeds(loaded):
    ticket = make_ticket(issue_type="bug", level="L1", account_id="A-1")
    state = at_level("L1", pending_breaches=("acknowledge",))

    held, ticket, state = run(loaded, ticket, state)
    assert held.to_level is None and held.held_level == "L2"
    assert held.missing_data == ("environment", "recent_changes")
    assert held.reply_template == "data_request"
    assert "- Environment (production, staging, ...)" in held.public_reply
    assert "- Account ID" not in held.public_reply
    assert "on hold: missing Environment" in held.internal_note
    assert (state.level, state.pending_level, state.data_requested) == ("L1", "L2", ("environment", "recent_changes"))
    assert state.pending_breaches == ()

    again, ticket, state = run(loaded, ticket, state, NOW + timedelta(minutes=5))
    assert again.is_empty and again.public_reply is None and again.held_level == "L2"

    # Part of the data arrives: still held, nothing asked twice.
    ticket = ticket.with_(fields={**ticket.fields, "environment": "staging"})
    partial, ticket, state = run(loaded, ticket, state, NOW + timedelta(minutes=10))
    assert partial.is_empty and partial.held_level == "L2"

    ticket = ticket.with_(fields={**ticket.fields, "recent_changes": "upgraded the agent"})
    proceeds, ticket, state = run(loaded, ticket, state, NOW + timedelta(minutes=20))
    assert proceeds.to_level == "L2" and proceeds.rule_id == "breach:acknowledge"
    assert "breach of acknowledge" in proceeds.internal_note
    assert "The required data arrived (Environment" in proceeds.internal_note
    assert (state.level, state.pending_level, state.data_requested) == ("L2", None, ())


def test_gate_on_new_ticket_enters_first_level_with_a_data_request(loaded):
    ticket = make_ticket(issue_type="outage", customer_tier="enterprise", environment="production")
    decision, ticket, state = run(loaded, ticket, None)
    assert (decision.to_level, decision.held_level) == ("L1", "L3")
    assert decision.missing_data == ("account_id", "recent_changes", "affected_users")
    assert decision.reply_template == "data_request"
    assert state.pending_cause == "enterprise-outage"
    ticket = ticket.with_(fields={**ticket.fields, **FULL_DATA})
    decision, ticket, state = run(loaded, ticket, state)
    assert decision.to_level == "L3" and "rule enterprise-outage" in decision.internal_note


def test_gate_asks_again_only_for_newly_needed_data(strict):
    loaded = strict
    ticket = make_ticket(issue_type="bug", level="L1", account_id="A-1")
    _, ticket, state = run(loaded, ticket, at_level("L1", pending_breaches=("acknowledge",)))
    # The agent now sets L3 by hand; L3 also needs affected_users, which was never asked for.
    ticket = ticket.with_(fields={**ticket.fields, "level": "L3"})
    decision, ticket, state = run(loaded, ticket, state)
    assert decision.held_level == "L3" and decision.public_reply
    assert "Escalation to L3 (set by hand) is on hold" in decision.internal_note


# ----------------------------------------------------------------------------------- bypass
def test_bypass_stays_at_first_level_and_ignores_breaches(loaded):
    ticket = make_ticket(issue_type="question", tags={"password_reset"}, **FULL_DATA)
    decision, ticket, state = run(loaded, ticket, None)
    assert decision.to_level == "L1" and decision.bypassed is True and decision.rule_level is None
    assert "will not escalate" in decision.internal_note
    assert state.bypassed

    breached = state.with_(pending_breaches=("acknowledge", "diagnose"))
    decision, ticket, state = run(loaded, ticket, breached)
    assert decision.to_level is None and decision.is_empty and state.pending_breaches == ()


def test_bypass_ends_when_the_ticket_no_longer_matches(loaded):
    ticket = make_ticket(issue_type="question", tags={"password_reset"}, **FULL_DATA)
    _, ticket, state = run(loaded, ticket, None)
    ticket = ticket.with_(tags=frozenset(), fields={**ticket.fields, "issue_type": "security"})
    decision, ticket, state = run(loaded, ticket, state)
    assert decision.to_level == "L2" and decision.bypassed is False and not state.bypassed


# ----------------------------------------------------------------------------------- manual
def test_manual_up_and_down_and_down_sticks(loaded):
    ticket = make_ticket(issue_type="outage", customer_tier="enterprise", **FULL_DATA)
    _, ticket, state = run(loaded, ticket, None)
    assert state.level == "L3"

    ticket = ticket.with_(fields={**ticket.fields, "level": "L1"})
    down, ticket, state = run(loaded, ticket, state)
    assert (down.from_level, down.to_level, down.rule_id) == ("L3", "L1", "manual")
    assert "Level L1 set by hand (was L3)" in down.internal_note
    assert down.priority is None  # never lowered, not even by hand
    assert state.manual_rule_level == "L3"

    # The enterprise-outage rule still points at L3 but does not undo the agent's de-escalation.
    stay, ticket, state = run(loaded, ticket, state)
    assert stay.is_empty

    ticket = ticket.with_(fields={**ticket.fields, "level": "l4"})  # case-insensitive
    up, ticket, state = run(loaded, ticket, state)
    assert (up.to_level, up.rule_id, up.owner_group) == ("L4", "manual", "leadership")
    assert run(loaded, ticket, state)[0].is_empty


def test_manual_level_that_is_not_a_level_is_noted_once(loaded):
    ticket = make_ticket(issue_type="bug", level="L9")
    decision, ticket2, state = run(loaded, ticket, at_level("L1"))
    assert decision.to_level is None and decision.rejected_level == "L9"
    assert "'L9', which is not a level" in decision.internal_note
    assert decision.field_updates == {"level": "L1"}
    # Even when the connector could not reset the field, the note is not repeated.
    assert decide(ticket, state, loaded.matrix, NOW, version=loaded.version).internal_note is None
    assert run(loaded, ticket2, state)[0].is_empty


def test_manual_move_held_by_the_gate_shows_the_current_level_and_waits_for_the_data(strict):
    loaded = strict
    ticket = make_ticket(issue_type="bug", level="L3", account_id="A-1")
    held, ticket, state = run(loaded, ticket, at_level("L1"))
    assert held.held_level == "L3" and held.to_level is None and state.level == "L1"
    # The level field goes back to L1: a tag-based level marker (esc_l3) would otherwise put the L3 SLA
    # policy on a ticket that is still at L1.
    assert held.field_updates == {"level": "L1"} and ticket.fields["level"] == "L1"
    assert held.missing_data == ("environment", "recent_changes", "affected_users")
    assert "Escalation to L3 (set by hand) is on hold: missing Environment" in held.internal_note
    assert "set back to L1 until then; the ticket moves to L3 when the data arrives" in held.internal_note
    assert held.public_reply and "Number of affected users" in held.public_reply
    assert (state.pending_level, state.pending_cause) == ("L3", "manual")

    # Idempotent, and the data request is sent once.
    again, ticket, state = run(loaded, ticket, state)
    assert again.is_empty and again.public_reply is None
    # A pass that still sees the agent's L3 (the reset not yet visible) resets again but asks nobody.
    stale = decide(ticket.with_(fields={**ticket.fields, "level": "L3"}), state, loaded.matrix, NOW,
                   version=loaded.version)
    assert stale.field_updates == {"level": "L1"} and stale.public_reply is None and stale.internal_note is None

    # The data arrives: the hand-set move happens.
    ticket = ticket.with_(fields={**ticket.fields, **FULL_DATA})
    moved, ticket, state = run(loaded, ticket, state)
    assert (moved.to_level, moved.rule_id) == ("L3", "manual")
    assert moved.field_updates == {"level": "L3"}
    assert "The required data arrived" in moved.internal_note
    assert state.level == "L3" and state.pending_level is None
    assert run(loaded, ticket, state)[0].is_empty


def test_another_hand_set_level_replaces_a_held_one(strict):
    loaded = strict
    ticket = make_ticket(issue_type="bug", level="L3", account_id="A-1")
    _, ticket, state = run(loaded, ticket, at_level("L1"))
    ticket = ticket.with_(fields={**ticket.fields, "environment": "production", "recent_changes": "none",
                                  "level": "L2"})
    decision, ticket, state = run(loaded, ticket, state)
    assert (decision.to_level, decision.rule_id) == ("L2", "manual")
    assert state.level == "L2" and state.pending_level is None


# ------------------------------------------------------------------------------ milestones
def test_acknowledge_is_a_public_agent_reply_after_entering(loaded):
    before = make_ticket(issue_type="bug", level="L1").with_(
        first_public_agent_reply_at=ENTERED - timedelta(minutes=5),
        last_public_agent_reply_at=ENTERED - timedelta(minutes=5))
    assert decide(before, at_level("L1"), loaded.matrix, NOW, version=loaded.version).is_empty

    reply = ENTERED + timedelta(minutes=20)
    after = before.with_(last_public_agent_reply_at=reply)
    decision, _, state = run(loaded, after, at_level("L1"))
    assert decision.milestones == {"acknowledge": reply} and decision.stop_clocks == ("acknowledge",)
    assert state.milestones == {"acknowledge": reply}
    assert decide(after, state, loaded.matrix, NOW, version=loaded.version).is_empty


def test_signal_milestones_and_resolve(loaded):
    ticket = make_ticket(issue_type="bug", level="L2", tags={"diagnosed", "workaround_provided"}, **FULL_DATA)
    decision, ticket, state = run(loaded, ticket, at_level("L2"))
    assert set(decision.milestones) == {"diagnose", "interim_fix"}
    assert decision.stop_clocks == ("diagnose", "interim_fix")

    solved = ticket.with_(status="solved")
    decision, solved, state = run(loaded, solved, state)
    assert decision.milestones == {"resolve": NOW} and decision.to_level is None
    assert set(decision.stop_clocks) == {"acknowledge", "resolve", "update_cadence"}
    assert run(loaded, solved, state)[0].is_empty

    # Reopened: the resolve clock runs again and the milestone is dropped.
    reopened, _, state = run(loaded, solved.with_(status="open"), state)
    assert [c.clock for c in reopened.start_clocks] == ["resolve"]
    assert "resolve" not in state.milestones


def test_resolved_ticket_never_escalates(loaded):
    ticket = make_ticket(issue_type="outage", customer_tier="enterprise", status="solved", **FULL_DATA)
    assert decide(ticket, None, loaded.matrix, NOW, version=loaded.version).is_empty
    state = at_level("L1", pending_breaches=("acknowledge",))
    decision = decide(ticket.with_(fields={**ticket.fields, "level": "L1"}), state, loaded.matrix, NOW,
                      version=loaded.version)
    assert decision.to_level is None and "resolve" in decision.milestones


# --------------------------------------------------------------- idempotence, versions, determinism
def fixture_records():
    return load_ticket_files(sorted(FIXTURES.glob("*.json*")))


@pytest.mark.parametrize("record", fixture_records(), ids=lambda r: Path(r.source).name)
def test_applying_a_decision_then_deciding_again_is_empty(loaded, record):
    decision, ticket, state = run(loaded, record.ticket, record.state)
    assert not decision.is_empty
    second, ticket, state = run(loaded, ticket, state, NOW + timedelta(minutes=1))
    assert second.is_empty, second
    assert run(loaded, ticket, state, NOW + timedelta(minutes=2))[0].is_empty


@pytest.mark.parametrize("record", fixture_records(), ids=lambda r: Path(r.source).name)
def test_same_input_same_decision_and_version_stamped(loaded, record):
    first = decide(record.ticket, record.state, loaded.matrix, NOW, version=loaded.version)
    again = decide(record.ticket, record.state, loaded.matrix, NOW)  # version computed from the matrix
    assert first == again
    assert first.matrix_version == loaded.version == loaded.matrix.version()
    assert next_state(record.state, record.ticket, first).matrix_version == loaded.version


def test_changed_matrix_changes_the_stamped_version(loaded):
    changed = loaded.matrix.model_copy(update={"name": "Acme (edited)"})
    ticket = make_ticket(issue_type="bug")
    old = decide(ticket, None, loaded.matrix, NOW)
    new = decide(ticket, None, changed, NOW)
    assert old.matrix_version != new.matrix_version == changed.version()
    assert new.matrix_version in new.internal_note


def test_template_that_fails_to_render_does_not_block_the_decision(loaded):
    templates = dict(loaded.matrix.templates, l1_received="Hello {{ ticket.fields.no_such_field }}")
    broken = loaded.matrix.model_copy(update={"templates": templates})
    decision = decide(make_ticket(issue_type="bug"), None, broken, NOW)
    assert decision.to_level == "L1" and decision.public_reply is None
    assert "Template 'l1_received' could not be rendered" in decision.internal_note


def test_rule_note_template_is_added_to_the_internal_note(loaded):
    rules = [r.model_copy(update={"note": "outage_note"}) if r.id == "enterprise-outage" else r
             for r in loaded.matrix.rules]
    templates = dict(loaded.matrix.templates, outage_note="Page the on-call SRE for {{ ticket.organization }}.")
    matrix = loaded.matrix.model_copy(update={"rules": rules, "templates": templates})
    ticket = make_ticket(issue_type="outage", customer_tier="enterprise", **FULL_DATA).with_(organization="Globex")
    decision = decide(ticket, None, matrix, NOW)
    assert decision.internal_note.endswith("Page the on-call SRE for Globex.")


def test_level_field_cleared_by_an_agent_is_restored(loaded):
    ticket = make_ticket(issue_type="bug", **FULL_DATA)
    decision = decide(ticket, at_level("L2"), loaded.matrix, NOW, version=loaded.version)
    assert decision.field_updates == {"level": "L2"} and decision.to_level is None


# ------------------------------------------------------------------------------ texts
def test_a_requester_without_a_name_is_greeted_without_none(loaded):
    ticket = make_ticket(issue_type="bug").with_(requester=Person(name=None, email="x@example.com"))
    decision = decide(ticket, None, loaded.matrix, NOW, version=loaded.version)
    assert decision.public_reply.startswith("Hello there,")
    assert "None" not in decision.public_reply


def test_entry_note_says_why_once_and_what_the_level_needs(loaded):
    ticket = make_ticket(issue_type="outage", customer_tier="enterprise", **FULL_DATA)
    note = decide(ticket, None, loaded.matrix, NOW, version=loaded.version).internal_note
    assert note.count("enterprise-outage") == 1
    assert f"Placed at L3 by rule enterprise-outage of matrix version {loaded.version}." in note
    assert "owner group Senior engineering" in note
    assert "Acknowledge within 15m, diagnose within 2h, interim fix within 8h, resolve within 2d." in note
    assert "Account ID: A-1" in note and "Roles: Incident commander, Customer contact." in note

    plain = decide(make_ticket(issue_type="bug"), None, loaded.matrix, NOW, version=loaded.version).internal_note
    assert "Escalated" not in plain
    assert "Placed at L1: no rule matched, entry level" in plain
