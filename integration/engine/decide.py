"""The decision engine: `decide(ticket, state, matrix, now)` -> `Decision`, and `next_state`.

`decide` is pure and deterministic: no clock, no I/O, no randomness; the same ticket, state, matrix and
`now` always give the same decision. Everything per matrix (rule index, level lookups, signal checks) is
computed once and cached by matrix identity and version.

Semantics, in the order they apply
----------------------------------
(`decide_compiled` runs `_resolved`, or else the table `_STEPS` over one `_Pass` (the per-decision context): `_place`,
`_read_level_field`, `_target`, `_gate`, then `_enter_level` or `_stay_at_level`, `_hold_for_data`,
`_reject_level_field`, `_answer_bypass`; each says which number it is.)

1. **Resolved** (the ticket meets `milestones.resolve`, by default status solved/closed): no escalation.
   The resolve milestone is recorded once and every clock still running at the level is stopped.
   A resolved ticket the service never placed is left alone. A ticket that is reopened after its
   resolve milestone restarts the level's resolve clock (the milestone is dropped by `next_state`).
2. **Placement**: the first rule in file order whose `when` holds (see `integration.rules_index` for the
   matching rules). No matching rule: the first level. A matching **bypass** rule: a new ticket enters
   the first level (a ticket already above it stays where it is: never down), and it escalates neither
   by rule nor by SLA breach while the bypass rule is its first match (re-evaluated each pass, so a
   ticket whose facts change is no longer bypassed; an agent can still set the level by hand). Bypass
   means hands off: no priority is set, the group only when the ticket has none, and instead of the
   first level's `on_enter.reply` the rule's own `reply` template is sent when the bypass starts (new
   ticket or facts that change to match; `_answer_bypass`), with the rule's `kb_article` in the note;
   `Decision.bypass_rule` names the rule then (counted per rule by `integration.metrics.bypass_hits`). A new
   ticket (no state, or a state without a level) enters its placed level; so does a ticket whose stored
   level no longer exists in the matrix it is decided with.
3. **Breach**: each clock in `state.pending_breaches` escalates per the current level's `on_breach` map
   (ignored while bypassed). `next_state` always clears `pending_breaches`: decide has acted on them.
4. **Manual**: the ticket's level field (`fields.level`) differs from the state's level and names a level
   (case-insensitive) -> an agent set it by hand: the ticket moves there, up or down; this pass ignores
   rules and breaches. Manual is the only way down. Afterwards the rules only move the ticket when they
   point above the level they pointed at when the agent acted (`state.manual_rule_level`), so a hand-made
   de-escalation sticks while a genuinely new, higher rule still escalates. A value that names no level
   gets one internal note (remembered in `state.rejected_level`) and the field is set back to the level.
   On a ticket the service has never seen, a level already on the ticket is a floor for the placement.
5. **Never down automatically**: the target is the highest of the current level, the rule's level, the
   breach targets and a level the ticket already waits for (`state.pending_level`).
6. **Required-data gate**: entering a level whose `required_data` attributes are unset/empty on the ticket
   does not happen. `missing_data` lists them, the public reply is the level's `data_request` template
   (rendered with `missing`), the internal note tells the agent; `held_level` names the level and
   `next_state` remembers it (`pending_level`, `data_requested`) so the same request is not sent twice.
   When the data arrives the escalation proceeds, even if the breach that caused it was a past pass.
   A level a person set (cause manual, or the level already on a new ticket that placement agrees with)
   follows `matrix.gate.manual`. `flag` (default): the level is entered although data is missing; the
   customer is asked once (the level's reply followed by its `data_request`; not again for data already
   in `state.data_requested`), the note says "Entered L3 without: <labels>" and `Decision.entered_without`
   lists the attributes (counted by `integration.metrics.entered_without_required_data`).
   `hold`: the gate applies to manual moves too: while a hand-set level waits, the level field is set back to the
   current level (a tag-keyed helpdesk SLA must not treat the ticket as the higher level) and the pending
   level stays until the data arrives or the agent sets another level. A new ticket whose placed level is
   gated enters the first level
   (the entry level is never gated: every ticket must sit somewhere), and the data request replaces
   the first level's welcome reply.
7. **Entering a level**: priority = the rule's `priority` (when a rule caused the move) or the level's,
   set only when it is higher than the ticket's (the engine never lowers a priority, not even on a
   manual de-escalation; not at all for a bypass); owner group = `owner.by_issue_type[issue_type]` or
   `owner.default`, set only when different, and on a hand-set level only when the ticket has no group or
   still has the one the matrix gives the level it came from (`_service_group`: a group an agent chose
   stays, and moving it would unassign the agent on Zendesk); `field_updates["level"]` = level id when the matrix declares a `level` field and the
   ticket shows another; public reply = `on_enter.reply`; internal note = `on_enter.note` + why ("rule X
   of matrix version V", "breach of acknowledge", "set by hand") + roles still unfilled + the rule's
   `note`; `start_clocks` = the level's SLA targets (business calendar = level.calendar or
   clocks.calendar) and the update cadence. Milestones already met on entry (a lingering `diagnosed`
   tag, a public agent reply at or after the entry) are recorded at once and their clocks are not started.
   The entry happens at the vendor's time of its cause (`Decision.entered_at`, stored as
   `entered_level_at`; see `_entry_time`), never at the pass's `now`, so the order webhooks arrive in and
   queue delays do not change the outcome.
8. **Milestones** at the current level: acknowledge = a public agent reply at or after
   `state.entered_level_at`, at the reply's time; diagnose / interim_fix = the matrix's signals (tags,
   statuses, field[=value]) at the ticket's `updated_at` (within [entry, now]).
   Only milestones not yet in `state.milestones` are reported; `stop_clocks` names those the level runs.
9. **Idempotence**: a decision lists only differences from the ticket. After applying it (see
   `apply_to_ticket`) and `next_state`, deciding again gives an empty decision (`Decision.is_empty`).

A template that fails to render never blocks a decision: its text is left out and the internal note
says which template failed and why.

Every decision carries `matrix_version` and a one-line `reason`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, NamedTuple

from integration.engine.compile import (
    BREACH_PREFIX,
    DEFAULT_PLACEMENT,
    MANUAL,
    UPDATE_CADENCE_CLOCK,
    CompiledMatrix,
    Texts,
    compile_matrix,
    format_duration_seconds,
    is_empty_value,
    owner_group,
    template_context,
)
from integration.model import ClockStart, Decision, Ticket, TicketState
from integration.rules_index import CompiledRule
from matrix_config.schema import CLOCKS, LEVEL_ATTRIBUTE, PRIORITIES, Level, Matrix
from matrix_config.templates import PlainContext

_PRIORITY_RANK = {p: i for i, p in enumerate(PRIORITIES)}


# ------------------------------------------------------------------------------------ helpers
def _priority_rank(priority: str | None) -> int:
    return _PRIORITY_RANK.get(priority or "", -1)


def _missing(level: Level, ticket: Ticket) -> list[str]:
    return [name for name in level.required_data if is_empty_value(ticket.attribute(name))]


def _acknowledged_at(ticket: Ticket, entered_at: datetime | None) -> datetime | None:
    if entered_at is None:
        return None
    first, last = ticket.first_public_agent_reply_at, ticket.last_public_agent_reply_at
    if first is not None and first >= entered_at:
        return first
    if last is not None and last >= entered_at:
        return last
    return None


def _cause_text(compiled: CompiledMatrix, cause: str, from_level: str | None, to_level: str) -> str:
    version = compiled.version
    moved = f"Escalated from {from_level} to {to_level}" if from_level else f"Placed at {to_level}"
    if cause == MANUAL:
        if from_level:
            return f"Level {to_level} set by hand (was {from_level}); matrix version {version}."
        return f"Placed at {to_level}, the level already set on the ticket; matrix version {version}."
    if cause.startswith(BREACH_PREFIX + "role:"):
        role = cause[len(BREACH_PREFIX) + 5:]
        return f"{moved}: no {compiled.label(role)} by the role's deadline at {from_level}; matrix version {version}."
    if cause.startswith(BREACH_PREFIX):
        clock = cause[len(BREACH_PREFIX):]
        target = ""
        if from_level and from_level in compiled.levels:
            seconds = dict(compiled.levels[from_level].sla_seconds).get(clock)
            if seconds:
                target = f" (target {format_duration_seconds(seconds)})"
        return f"{moved}: breach of {clock}{target} at {from_level}; matrix version {version}."
    if cause == DEFAULT_PLACEMENT:
        return f"{moved}: no rule matched, entry level; matrix version {version}."
    return f"{moved} by rule {cause} of matrix version {version}."


def _reason_cause(cause: str) -> str:
    if cause == MANUAL:
        return "set by hand"
    if cause.startswith(BREACH_PREFIX + "role:"):
        return f"{cause[len(BREACH_PREFIX) + 5:]} unfilled at the role's deadline"
    if cause.startswith(BREACH_PREFIX):
        return f"breach of {cause[len(BREACH_PREFIX):]}"
    if cause == DEFAULT_PLACEMENT:
        return "no rule matched"
    return f"rule {cause}"


def _join(*parts: str | None) -> str | None:
    texts = [p.strip("\n") for p in parts if p]
    return "\n\n".join(texts) if texts else None


@dataclass
class _Draft:
    """The decision being built."""

    priority: str | None = None
    owner_group: str | None = None
    field_updates: dict[str, Any] = field(default_factory=dict)
    public_reply: str | None = None
    reply_template: str | None = None
    notes: list[str] = field(default_factory=list)
    start_clocks: list[ClockStart] = field(default_factory=list)
    stop_clocks: list[str] = field(default_factory=list)
    milestones: dict[str, datetime] = field(default_factory=dict)
    missing_data: tuple[str, ...] = ()


class _Placement(NamedTuple):
    """Step 2: the first matching rule and the level it points at."""

    matched: CompiledRule | None
    bypass: bool  # the first match is a bypass rule
    rule_level: str | None  # None while bypassed
    rule_cause: str  # the rule id, or DEFAULT_PLACEMENT


class _LevelField(NamedTuple):
    """Step 4: the ticket's level field as the agent left it."""

    raw: str | None  # the field's text (None without a declared level field)
    level: str | None  # the level it names, case-insensitively
    rejected: str | None  # a value that names no level


_NOT_PLACED = _Placement(None, False, None, DEFAULT_PLACEMENT)
_NO_LEVEL_FIELD = _LevelField(None, None, None)


@dataclass(slots=True, eq=False)
class _Pass:
    """One decision in the making: its inputs, what each step found so far, and the draft the steps fill in.
    The steps in `_STEPS` read and set these fields in order."""

    compiled: CompiledMatrix
    ticket: Ticket
    state: TicketState | None
    now: datetime
    breached_at: datetime | None  # when the clocks in `state.pending_breaches` ran out
    current: str | None  # the stored level, if it is a level of this matrix
    draft: _Draft
    texts: Texts
    reasons: list[str] = field(default_factory=list)
    was_bypassed: bool = False
    placement: _Placement = _NOT_PLACED  # 2
    level_field: _LevelField = _NO_LEVEL_FIELD  # 4
    target: str | None = None  # 3 + 4 + 5: where the ticket should be
    cause: str | None = None  # what made it so (None: it stays)
    hand_set: bool = False  # a level a person set
    enter: str | None = None  # 6: the level entered by this decision
    held: str | None = None  # 6: the level waiting for data
    missing: list[str] = field(default_factory=list)
    entered_without: tuple[str, ...] = ()
    entered_at: datetime | None = None  # 7: the vendor's time of the entry's cause
    rejected: str | None = None  # 4 (continued): a level field value to remember as rejected
    bypass_change: bool | None = None  # 2 (bypass): a bypass that starts (True) or ends (False)

    def decision(self, **fields: Any) -> Decision:
        return Decision(vendor=self.ticket.vendor, ticket_id=self.ticket.id, matrix_version=self.compiled.version,
                        decided_at=self.now, from_level=self.current, **fields)


# ------------------------------------------------------------------------------------ decide
def decide(
    ticket: Ticket,
    state: TicketState | None,
    matrix: Matrix,
    now: datetime,
    *,
    version: str | None = None,
    breached_at: datetime | None = None,
) -> Decision:
    """What to do with `ticket` now. Pure; see the module docstring for the rules. `breached_at`: when the
    clocks in `state.pending_breaches` ran out (their due time); a breach-caused entry starts there."""
    compiled = compile_matrix(matrix, version)
    return decide_compiled(compiled, ticket, state, now, breached_at)


def decide_compiled(compiled: CompiledMatrix, ticket: Ticket, state: TicketState | None, now: datetime,
            breached_at: datetime | None = None) -> Decision:
    current = state.level if state is not None and state.level in compiled.levels else None
    p = _Pass(compiled, ticket, state, now, breached_at, current, _Draft(), Texts(compiled))
    if compiled.resolve(ticket):
        return _resolved(p)  # 1
    for step in _STEPS:
        step(p)
    return _finish(p)


def _finish(p: _Pass) -> Decision:
    draft, current, enter = p.draft, p.current, p.enter
    draft.notes.extend(p.texts.failures)
    ticket = p.ticket
    return Decision(
        vendor=ticket.vendor, ticket_id=ticket.id, matrix_version=p.compiled.version, decided_at=p.now,
        from_level=current,
        to_level=enter,
        reason="; ".join(p.reasons) or (f"no change at {current}" if current else "no change"),
        rule_id=p.cause if (enter or p.held) else None,
        priority=draft.priority,
        owner_group=draft.owner_group,
        field_updates=draft.field_updates,
        public_reply=draft.public_reply,
        internal_note=_join(*draft.notes),
        missing_data=draft.missing_data,
        start_clocks=tuple(draft.start_clocks),
        stop_clocks=tuple(draft.stop_clocks),
        milestones=draft.milestones,
        entered_at=p.entered_at if enter is not None else None,
        held_level=p.held,
        rule_level=p.placement.rule_level,
        bypassed=p.bypass_change,
        reply_template=draft.reply_template,
        rejected_level=p.rejected,
        entered_without=p.entered_without,
        bypass_rule=p.placement.matched.rule.id if p.bypass_change else None,
    )


def _resolved(p: _Pass) -> Decision:
    """1. Resolved: record the resolve milestone once and stop every clock still running at the level."""
    compiled, ticket, state, current, now = p.compiled, p.ticket, p.state, p.current, p.now
    if current is None:
        return p.decision(reason="resolved before the service placed it: nothing to do")
    if "resolve" in state.milestones:
        return p.decision(reason=f"resolved at {current}")
    current_info = compiled.levels[current]
    running = [c for c, _ in current_info.sla_seconds if c not in state.milestones]
    if current_info.level.update_cadence is not None:
        running.append(UPDATE_CADENCE_CLOCK)
    resolved_at = _vendor_time(ticket.updated_at, state.entered_level_at, now)
    return p.decision(reason=f"resolved at {current}: clocks stopped", milestones={"resolve": resolved_at},
                      stop_clocks=tuple(running))


def _place(p: _Pass) -> None:
    """2. Placement by rule: the first match in file order; none matching is the first level."""
    compiled, ticket, state = p.compiled, p.ticket, p.state
    p.was_bypassed = bool(state.bypassed) if state is not None and p.current else False
    matched = compiled.index.first_match(ticket, compiled.index.values(ticket))
    if matched is None:
        p.placement = _Placement(None, False, compiled.level_ids[0], DEFAULT_PLACEMENT)
    elif matched.rule.bypass:
        p.placement = _Placement(matched, True, None, matched.rule.id)
    else:
        p.placement = _Placement(matched, False, matched.rule.level, matched.rule.id)


def _read_level_field(p: _Pass) -> None:
    """4. The level field as the agent left it: the level it names, or the value that names none."""
    compiled = p.compiled
    raw = p.ticket.level if compiled.has_level_field else None
    level = compiled.level_by_folded.get(raw.strip().casefold()) if raw else None
    p.level_field = _LevelField(raw, level, raw if raw and level is None else None)


def _target(p: _Pass) -> None:
    """3 + 4 + 5. The level the ticket should be at and what caused it (None: it stays), and whether a person
    set it: an agent's change of the level field, or the level already on a new ticket."""
    p.target, p.cause = _target_and_cause(p)
    marker = p.level_field.level
    p.hand_set = p.cause == MANUAL or (p.current is None and marker is not None and marker == p.target)


def _target_and_cause(p: _Pass) -> tuple[str, str | None]:
    compiled, state, current, placement = p.compiled, p.state, p.current, p.placement
    marker = p.level_field.level
    levels = compiled.levels
    if current is None:
        if placement.bypass:
            target, cause = compiled.level_ids[0], placement.matched.rule.id
        else:
            target, cause = placement.rule_level, placement.rule_cause
        if marker is not None and levels[marker].position > levels[target].position:
            target, cause = marker, MANUAL
        return target, cause
    if marker is not None and marker != current:  # set by hand: up or down, rules and breaches ignored
        return marker, MANUAL
    if placement.bypass:
        return current, None
    # Never down automatically: the highest of the current level, the breach targets, the rule's level (above
    # the one a manual move left it at) and a level that waits for data. A waiting level stays pending also
    # when the agent set it by hand: while it waits the level field shows the current level again (see
    # `_stay_at_level`), so a field that reads the current level is the service's own reset, not a withdrawal.
    target, cause = current, None
    best = levels[current].position
    candidates: list[tuple[str, str]] = []
    on_breach = levels[current].level.on_breach
    roles = levels[current].level.roles
    for clock in state.pending_breaches:
        # "role:<name>": the role's deadline passed unfilled (integration.clocks); its `on_missing` applies.
        to = roles[clock[5:]].on_missing if clock.startswith("role:") and clock[5:] in roles else on_breach.get(clock)
        if to in levels:
            candidates.append((to, BREACH_PREFIX + clock))
    ceiling = state.manual_rule_level if state.manual_rule_level in levels else None
    rule_level = placement.rule_level
    if rule_level and (ceiling is None or levels[rule_level].position > levels[ceiling].position):
        candidates.append((rule_level, placement.rule_cause))
    if state.pending_level in levels:
        candidates.append((state.pending_level, state.pending_cause or DEFAULT_PLACEMENT))
    for level_id, level_cause in candidates:
        if levels[level_id].position > best:
            target, cause, best = level_id, level_cause, levels[level_id].position
    return target, cause


def _gate(p: _Pass) -> None:
    """6. Required-data gate: the level entered, the level held for data, the missing attributes. A level a
    person set is entered with data missing under `gate.manual: flag` (the missing attributes come back for
    the data request and the flag); otherwise the gate holds."""
    p.enter, p.held, p.missing = _gate_outcome(p)
    if p.enter is not None and p.enter == p.target and p.missing:
        p.entered_without = tuple(p.missing)


def _gate_outcome(p: _Pass) -> tuple[str | None, str | None, list[str]]:
    """(level entered, level held for data, missing attributes)."""
    compiled, ticket, current, target, hand_set = p.compiled, p.ticket, p.current, p.target, p.hand_set
    if target == current:
        return None, None, []
    missing = _missing(compiled.levels[target].level, ticket)
    first_level = compiled.level_ids[0]
    if not missing or (current is None and target == first_level):  # the entry level is never gated
        return target, None, []
    if hand_set and compiled.matrix.gate.manual == "flag":
        return target, None, missing
    return (first_level if current is None else None), target, missing


def _enter_or_stay(p: _Pass) -> None:
    """7 or 8."""
    if p.enter is not None:
        p.entered_at = _entry_time(p)
        _enter_level(p)
    else:
        _stay_at_level(p)


def _enter_level(p: _Pass) -> None:
    """7. Entering a level: priority, owner group, level field, reply, note, clocks (run from `entered_at`)."""
    compiled, ticket, state, now, draft, texts = p.compiled, p.ticket, p.state, p.now, p.draft, p.texts
    current, enter, target, cause, placement = p.current, p.enter, p.target, p.cause, p.placement
    level_field, entered_at, hand_set, reasons = p.level_field, p.entered_at, p.hand_set, p.reasons
    info = compiled.levels[enter]
    level = info.level
    gated_entry = enter != target  # a new ticket enters the entry level while its target waits for data
    entry_cause = cause or DEFAULT_PLACEMENT
    rule_obj = compiled.rules_by_id.get(entry_cause)
    bypass_entry = placement.bypass and entry_cause != MANUAL  # hands off: no priority, no welcome
    priority = level.priority
    if rule_obj and rule_obj.rule.priority and not gated_entry:
        priority = rule_obj.rule.priority
    if not bypass_entry and _priority_rank(priority) > _priority_rank(ticket.priority):
        draft.priority = priority
    owner = owner_group(info, ticket)
    kept_group = None
    if owner != ticket.group:
        if ticket.group is not None and (bypass_entry or (
                hand_set and not gated_entry and ticket.group != _service_group(compiled, ticket, current))):
            # A group someone chose (not the one the matrix gave the level the ticket came from) stands;
            # moving it would also unassign the agent on Zendesk.
            kept_group = ticket.group
        else:
            draft.owner_group = owner
    if compiled.has_level_field and (level_field.raw or "").strip().casefold() != enter.casefold():
        draft.field_updates[LEVEL_ATTRIBUTE] = enter
    context = PlainContext(template_context(  # made plain once for the reply, the note and the rule note
        compiled, ticket, enter, previous_level=current,
        rule_id=rule_obj.rule.id if rule_obj and not gated_entry else None,
        clock=_breach_clock(compiled, entry_cause, current),
    ))
    if not bypass_entry:  # a bypass rule answers with its own `reply` (see `_answer_bypass`)
        draft.public_reply = texts.render(level.on_enter.reply, context)
        draft.reply_template = level.on_enter.reply if draft.public_reply else None
    draft.notes.append(texts.render(level.on_enter.note, context) or "")
    if gated_entry:
        draft.notes.append(
            f"Placed at {enter}, the entry level, until the data needed for {target} arrives "
            f"({_reason_cause(entry_cause)}); matrix version {compiled.version}."
        )
    else:
        if state is not None and state.pending_level == enter and state.data_requested:
            arrived = ", ".join(compiled.label(name) for name in state.data_requested)
            draft.notes.append(f"The required data arrived ({arrived}).")
        draft.notes.append(_cause_text(compiled, entry_cause, current, enter))
    if p.entered_without:
        _flag_entry_without_data(p)
    if kept_group is not None and not bypass_entry:
        draft.notes.append(
            f"Owner group left at {compiled.group_label(kept_group)}, as set on the ticket "
            f"(the matrix's owner at {enter} is {compiled.group_label(owner)})."
        )
    unfilled = [role for role in level.roles if is_empty_value(ticket.attribute(role))]
    if unfilled:
        deadlines = [f"{compiled.label(role)} {format_duration_seconds(int(level.roles[role].within.total_seconds()))}"
                     for role in unfilled if level.roles[role].within is not None]
        draft.notes.append("Assign: " + ", ".join(compiled.label(role) for role in unfilled)
                           + (f" (deadline from entering {enter}: {', '.join(deadlines)})" if deadlines else ""))
    if rule_obj and rule_obj.rule.note:
        draft.notes.append(texts.render(rule_obj.rule.note, context) or "")
    if placement.bypass:
        draft.notes.append(
            f"Bypass rule {placement.matched.rule.id} matches: this ticket will not escalate by rule or SLA breach."
        )
    met = _detect_milestones(compiled, ticket, {}, entered_at, now)
    draft.milestones.update(met)
    if met:
        draft.start_clocks.extend(c for c in info.clock_starts if c.clock not in met)
    else:
        draft.start_clocks.extend(info.clock_starts)
    if current is None:
        reasons.append(f"new ticket enters {enter}: {_reason_cause(entry_cause)}")
    else:
        reasons.append(f"{current} -> {enter}: {_reason_cause(entry_cause)}")


def _service_group(compiled: CompiledMatrix, ticket: Ticket, current: str | None) -> str:
    """The owner group the matrix gives the level a ticket comes from (the entry level for a new ticket): a
    ticket still in it was routed by the service or the helpdesk's defaults, not by a person."""
    return owner_group(compiled.levels[current or compiled.level_ids[0]], ticket)


def _flag_entry_without_data(p: _Pass) -> None:
    """6 (gate `manual: flag`). A hand-set level entered without its required data: the level stands, the
    customer is asked once (after the level's welcome, in the same reply) and the note flags it."""
    compiled, ticket, state, draft, texts = p.compiled, p.ticket, p.state, p.draft, p.texts
    current, enter, missing = p.current, p.enter, p.entered_without
    labels = ", ".join(compiled.label(name) for name in missing)
    level = compiled.levels[enter].level
    already_asked = state is not None and set(missing) <= set(state.data_requested)
    if already_asked:
        asked = "The customer was already asked for it."
    else:
        context = template_context(compiled, ticket, enter, previous_level=current, missing=missing)
        request = texts.render(level.data_request, context)
        if request:
            draft.public_reply = _join(draft.public_reply, request)
            draft.reply_template = level.data_request
            asked = "The customer was asked for it."
        else:
            asked = f"Level {enter} has no data_request template: please ask the customer."
        draft.missing_data = missing
    draft.notes.append(f"Entered {enter} without: {labels}. The level was set by hand and stands; {asked[0].lower()}"
                       f"{asked[1:]}")


def _answer_bypass(p: _Pass) -> None:
    """2 (bypass). A bypass that starts: the rule's own public reply (a help-centre answer) and its knowledge-base link for the agent."""
    compiled, ticket, draft, texts, placement = p.compiled, p.ticket, p.draft, p.texts, p.placement
    if p.current is None:
        p.bypass_change = True if placement.bypass else None
    elif placement.bypass != p.was_bypassed:
        p.bypass_change = placement.bypass
    if not p.bypass_change:
        return
    level = p.enter or p.current
    rule = placement.matched.rule
    if rule.reply:
        context = template_context(compiled, ticket, level, rule_id=rule.id)
        reply = texts.render(rule.reply, context)
        if reply:
            draft.public_reply, draft.reply_template = reply, rule.reply
    if rule.kb_article:
        draft.notes.append(f"Known answer: {rule.kb_article}")


def _stay_at_level(p: _Pass) -> None:
    """8. Milestones at the current level, a reopened ticket's resolve clock, a bypass that starts or ends,
    and the level field shown again."""
    compiled, ticket, state, now, draft, reasons = p.compiled, p.ticket, p.state, p.now, p.draft, p.reasons
    current, placement, was_bypassed, level_field = p.current, p.placement, p.was_bypassed, p.level_field
    current_info = compiled.levels[current]
    met = _detect_milestones(compiled, ticket, state.milestones, state.entered_level_at, now)
    draft.milestones.update(met)
    running = {c for c, _ in current_info.sla_seconds}
    draft.stop_clocks.extend(c for c in CLOCKS if c in met and c in running)
    if met:
        reasons.append("milestones: " + ", ".join(c for c in CLOCKS if c in met))
    if "resolve" in state.milestones:  # reopened after being resolved
        seconds = dict(current_info.sla_seconds).get("resolve")
        if seconds:
            draft.start_clocks.append(ClockStart("resolve", seconds, current_info.calendar))
        reasons.append(f"reopened at {current}")
    if placement.bypass != was_bypassed:
        if placement.bypass:
            draft.notes.append(
                f"Bypass rule {placement.matched.rule.id} matches now: this ticket will not escalate by rule or "
                f"SLA breach."
            )
            reasons.append(f"bypassed by rule {placement.matched.rule.id}")
        else:
            draft.notes.append("No bypass rule matches any more: the escalation rules apply again.")
            reasons.append("bypass ended")
    if compiled.has_level_field and level_field.level is not None and level_field.level != current:
        # A hand-set level the gate holds: the field shows the level the ticket is really at, so that
        # helpdesk rules keyed on it (a tag-based Zendesk SLA policy) keep treating it as that level.
        draft.field_updates[LEVEL_ATTRIBUTE] = current
    elif compiled.has_level_field and level_field.raw is None:
        draft.field_updates[LEVEL_ATTRIBUTE] = current  # the level field was cleared: show the level


def _hold_for_data(p: _Pass) -> None:
    """6 (continued). Ask for the missing data once per held level and set of missing attributes."""
    if not p.held:
        return
    compiled, ticket, state, draft, texts, reasons = p.compiled, p.ticket, p.state, p.draft, p.texts, p.reasons
    current, enter, held, missing, cause = p.current, p.enter, p.held, p.missing, p.cause
    already_asked = (
        state is not None and state.pending_level == held and set(missing) <= set(state.data_requested)
    )
    if already_asked:
        reasons.append(f"waiting for data before {held}: {', '.join(missing)}")
        return
    labels = ", ".join(compiled.label(name) for name in missing)
    level = compiled.levels[held].level
    context = template_context(compiled, ticket, held, previous_level=current, missing=missing,
                               rule_id=cause if cause in compiled.rules_by_id else None)
    request = texts.render(level.data_request, context)
    if request:
        draft.public_reply, draft.reply_template = request, level.data_request
    draft.missing_data = tuple(missing)
    who = "set by hand" if cause == MANUAL else _reason_cause(cause or DEFAULT_PLACEMENT)
    asked = "The customer was asked for this data." if request else (
        f"Level {held} has no data_request template: please ask the customer.")
    shown = enter or current
    when = f"The ticket stays at {shown} and moves to {held} when the data arrives."
    if cause == MANUAL and compiled.has_level_field and shown:
        when = (f"The level field is set back to {shown} until then; the ticket moves to {held} "
                f"when the data arrives.")
    draft.notes.append(f"Escalation to {held} ({who}) is on hold: missing {labels}. {asked} {when}")
    reasons.append(f"held before {held}: missing {', '.join(missing)}")


def _reject_level_field(p: _Pass) -> None:
    """4 (continued). A level field value that names no level: one note (not repeated for the same value) and
    the field set back; `p.rejected` is the value to remember in `state.rejected_level`."""
    compiled, state, draft, reasons = p.compiled, p.state, p.draft, p.reasons
    rejected, shown = p.level_field.rejected, p.enter or p.current
    if not rejected or (state is not None and state.rejected_level == rejected):
        return
    draft.notes.append(
        f"The level field says {rejected!r}, which is not a level of this matrix "
        f"(levels: {', '.join(compiled.level_ids)}); the ticket stays at {shown}."
    )
    draft.field_updates[LEVEL_ATTRIBUTE] = shown
    reasons.append(f"level field {rejected!r} is not a level")
    p.rejected = rejected


def _breach_clock(compiled: CompiledMatrix, cause: str | None, from_level: str | None) -> dict[str, Any] | None:
    if not cause or not cause.startswith(BREACH_PREFIX) or from_level not in compiled.levels:
        return None
    clock = cause[len(BREACH_PREFIX):]
    seconds = dict(compiled.levels[from_level].sla_seconds).get(clock)
    target = format_duration_seconds(seconds) if seconds else None
    return {"name": clock, "target": target, "elapsed": None, "overdue_by": None, "fraction": None}


def _detect_milestones(
    compiled: CompiledMatrix, ticket: Ticket, met: Mapping[str, datetime], entered_at: datetime | None,
    now: datetime,
) -> dict[str, datetime]:
    """Milestones newly met: acknowledge at the reply's time, signal milestones at the ticket's last change
    (`updated_at`: the ticket does not say when a tag was added, and the latest change is an upper bound
    that does not depend on when the service got round to it), kept within [level entry, now]."""
    found: dict[str, datetime] = {}
    if "acknowledge" not in met:
        at = _acknowledged_at(ticket, entered_at)
        if at is not None:
            found["acknowledge"] = min(at, now)
    signalled_at = _vendor_time(ticket.updated_at, entered_at, now)
    for clock, holds in compiled.progress_signals:
        if clock not in met and holds(ticket):
            found[clock] = signalled_at
    return found


def _vendor_time(moment: datetime | None, floor: datetime | None, now: datetime) -> datetime:
    """A vendor timestamp as the time something happened: never later than `now` (vendor clocks run ahead
    of ours at times) nor earlier than `floor` (the previous level entry); unknown -> `now`."""
    if moment is None:
        return now
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    if floor is not None and moment < floor:
        moment = floor
    return min(moment, now)


def _entry_time(p: _Pass) -> datetime:
    """When a level entry happened on the ticket: the vendor's time of the change that caused it, so that the
    order webhooks arrive in and queue delays never change when the level's clocks start.
    Set by hand: when the level field got its value (`level_set_at`, from audits/changelog), else the
    ticket's last change. A breach: the clock's due time. A new ticket: its creation. A rule (or data
    that arrived for a waiting level): the ticket's last change, the latest moment the change that made
    the rule match can have happened, or, where the connector knows when attributes changed
    (`field_changed_at`), the latest change of an attribute the rule tests or the level requires: the
    entry became due when the last of those changed."""
    compiled, ticket, state, now, cause = p.compiled, p.ticket, p.state, p.now, p.cause
    current, enter, breached_at = p.current, p.enter, p.breached_at
    previous = state.entered_level_at if state is not None and current is not None else None
    cause = cause or DEFAULT_PLACEMENT
    if cause == MANUAL:
        moment = ticket.level_set_at or (ticket.created_at if current is None else ticket.updated_at)
    elif cause.startswith(BREACH_PREFIX):
        moment = breached_at
    elif current is None:
        moment = ticket.created_at or ticket.updated_at
    else:
        rule = compiled.rules_by_id.get(cause)
        causes = set(rule.rule.when) if rule is not None else set()
        causes.update(compiled.levels[enter].level.required_data)
        known = [ticket.field_changed_at[name] for name in causes if name in ticket.field_changed_at]
        moment = max(known) if known else ticket.updated_at
    return _vendor_time(moment, previous, now)


# The steps after `_resolved`, in the order the module docstring numbers them.
_STEPS: tuple[Callable[[_Pass], None], ...] = (
    _place,  # 2
    _read_level_field,  # 4
    _target,  # 3 + 4 + 5
    _gate,  # 6
    _enter_or_stay,  # 7 or 8
    _hold_for_data,  # 6 (continued)
    _reject_level_field,  # 4 (continued)
    _answer_bypass,  # 2 (bypass)
)
