"""The decision engine: `decide(ticket, state, matrix, now)` -> `Decision`, and `next_state`.

`decide` is pure and deterministic: no clock, no I/O, no randomness; the same ticket, state, matrix and
`now` always give the same decision. Everything per matrix (rule index, level lookups, signal checks) is
computed once and cached by matrix identity and version.

Semantics, in the order they apply
----------------------------------
(`_decide` runs them as named steps: `_resolved`, `_place`, `_read_level_field`, `_target`, `_gate`, then
`_enter_level` or `_stay_at_level`, `_hold_for_data`, `_reject_level_field`; each says which number it is.)

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

import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, NamedTuple, Sequence

from integration.model import ClockStart, Decision, Ticket, TicketState
from integration.rules_index import CompiledRule, RuleIndex, RuleTrace, normalize
from matrix_config.schema import (
    CLOCKS,
    LEVEL_ATTRIBUTE,
    PRIORITIES,
    Level,
    Matrix,
    MilestoneSignal,
    format_duration,
)
from matrix_config.templates import PlainContext, TemplateRenderError, render_template

UPDATE_CADENCE_CLOCK = "update_cadence"
_PRIORITY_RANK = {p: i for i, p in enumerate(PRIORITIES)}

# Cause encoding shared with TicketState.rule_id / pending_cause and Decision.rule_id.
MANUAL = "manual"
DEFAULT_PLACEMENT = "default"  # no rule matched: the first level
BREACH_PREFIX = "breach:"


def is_empty_value(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        return len(value) == 0
    return False


# ------------------------------------------------------------------------------ per-matrix data
def _signal_check(signal: MilestoneSignal) -> Callable[[Ticket], bool]:
    tags = frozenset(t.casefold() for t in signal.tags)
    statuses = frozenset(signal.statuses)
    field_name = signal.field
    wanted = normalize(signal.equals) if signal.equals is not None else None

    def holds(ticket: Ticket) -> bool:
        if tags and any(t.casefold() in tags for t in ticket.tags):
            return True
        if statuses and ticket.status in statuses:
            return True
        if field_name is not None:
            value = ticket.attribute(field_name)
            if wanted is None:
                return not is_empty_value(value)
            if isinstance(value, (list, tuple, set, frozenset)):
                return any(normalize(v) == wanted for v in value)
            return normalize(value) == wanted
        return False

    return holds


@dataclass(frozen=True)
class LevelInfo:
    level: Level
    position: int
    sla_seconds: tuple[tuple[str, int], ...]
    calendar: str | None
    owners: dict[Any, str]  # normalised issue type -> group key
    context_base: dict[str, Any]  # template `level` dict without `owner`
    clock_starts: tuple[ClockStart, ...]  # SLA clocks then the update cadence, started on entry


@dataclass
class CompiledMatrix:
    """What `decide` needs from a matrix, computed once."""

    matrix: Matrix
    version: str
    index: RuleIndex
    levels: dict[str, LevelInfo]
    level_ids: tuple[str, ...]
    level_by_folded: dict[str, str]
    has_level_field: bool
    field_labels: dict[str, str]
    group_labels: dict[str, str]
    resolve: Callable[[Ticket], bool]
    progress_signals: tuple[tuple[str, Callable[[Ticket], bool]], ...]  # diagnose, interim_fix
    rules_by_id: dict[str, CompiledRule]
    matrix_context: dict[str, Any]

    def label(self, attribute: str) -> str:
        return self.field_labels.get(attribute) or attribute.replace("_", " ")

    def group_label(self, group: str) -> str:
        return self.group_labels.get(group, group)


def _compile(matrix: Matrix, version: str) -> CompiledMatrix:
    levels: dict[str, LevelInfo] = {}
    for position, level in enumerate(matrix.levels):
        calendar = level.calendar or matrix.clocks.calendar
        clock_starts = [ClockStart(clock, int(target.total_seconds()), calendar) for clock, target in level.sla.items()]
        if level.update_cadence is not None:
            clock_starts.append(
                ClockStart(UPDATE_CADENCE_CLOCK, int(level.update_cadence.every.total_seconds()), calendar))
        levels[level.id] = LevelInfo(
            level=level,
            position=position,
            sla_seconds=tuple((clock, int(target.total_seconds())) for clock, target in level.sla.items()),
            calendar=calendar,
            owners={normalize(k): v for k, v in level.owner.by_issue_type.items()},
            context_base={
                "id": level.id,
                "name": level.name,
                "priority": level.priority,
                "sla": {clock: format_duration(target) for clock, target in level.sla.items()},
                "update_every": format_duration(level.update_cadence.every) if level.update_cadence else None,
            },
            clock_starts=tuple(clock_starts),
        )
    index = RuleIndex.build(matrix.rules)
    return CompiledMatrix(
        matrix=matrix,
        version=version,
        index=index,
        levels=levels,
        level_ids=tuple(level.id for level in matrix.levels),
        level_by_folded={level.id.casefold(): level.id for level in matrix.levels},
        has_level_field=LEVEL_ATTRIBUTE in matrix.fields,
        field_labels={name: m.label for name, m in matrix.fields.items() if m.label},
        group_labels={name: g.label for name, g in matrix.groups.items() if g.label},
        resolve=_signal_check(matrix.milestones.resolve),
        progress_signals=(
            ("diagnose", _signal_check(matrix.milestones.diagnose)),
            ("interim_fix", _signal_check(matrix.milestones.interim_fix)),
        ),
        rules_by_id={r.rule.id: r for r in index.rules},
        matrix_context={"name": matrix.name, "version": version},
    )


_CACHE_SIZE = 32
_cache: "OrderedDict[tuple[int, str | None], CompiledMatrix]" = OrderedDict()
_cache_lock = threading.Lock()


def compile_matrix(matrix: Matrix, version: str | None = None) -> CompiledMatrix:
    """Per-matrix engine data, cached by (identity, version); the matrix object is kept alive by the
    cache entry, so an identity is never reused while cached. `version=None` hashes the matrix once."""
    key = (id(matrix), version)
    compiled = _cache.get(key)
    if compiled is not None and compiled.matrix is matrix:
        return compiled
    with _cache_lock:
        compiled = _cache.get(key)
        if compiled is None or compiled.matrix is not matrix:
            compiled = _compile(matrix, version if version is not None else matrix.version())
            _cache[key] = compiled
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    return compiled


# ---------------------------------------------------------------------------------- templates
def template_context(
    compiled: CompiledMatrix,
    ticket: Ticket,
    level_id: str,
    *,
    previous_level: str | None = None,
    missing: Sequence[str] = (),
    rule_id: str | None = None,
    clock: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Plain dicts in the shape of `matrix_config.schema.TEMPLATE_CONTEXT` (also for the timer code's
    cadence and warning templates)."""
    info = compiled.levels[level_id]
    level_dict = dict(info.context_base)
    level_dict["owner"] = compiled.group_label(_owner_group(info, ticket))
    level_dict["required_data"] = [
        {"name": name, "label": compiled.label(name), "value": ticket.attribute(name)}
        for name in info.level.required_data
    ]
    level_dict["roles"] = [
        {"name": name, "label": compiled.label(name), "value": ticket.attribute(name)} for name in info.level.roles
    ]
    previous = compiled.levels.get(previous_level) if previous_level else None
    rule = compiled.rules_by_id.get(rule_id) if rule_id else None
    return {
        "ticket": {
            "id": ticket.id,
            "subject": ticket.subject,
            "status": ticket.status,
            "priority": ticket.priority,
            "organization": ticket.organization,
            "requester": {"name": ticket.requester.name, "email": ticket.requester.email},
            "fields": dict(ticket.fields),
            "tags": sorted(ticket.tags),
            "url": ticket.url,
        },
        "level": level_dict,
        "previous_level": {"id": previous.level.id, "name": previous.level.name} if previous else None,
        "missing": [{"name": name, "label": compiled.label(name)} for name in missing],
        "rule": {"id": rule.rule.id, "description": rule.rule.description} if rule else None,
        "clock": dict(clock) if clock is not None else None,
        "matrix": compiled.matrix_context,
    }


class _Texts:
    """Collects rendered texts and render failures for one decision."""

    def __init__(self, compiled: CompiledMatrix):
        self.compiled = compiled
        self.failures: list[str] = []

    def render(self, name: str | None, context: Mapping[str, Any] | PlainContext) -> str | None:
        if not name:
            return None
        try:
            return render_template(self.compiled.matrix, name, context)
        except TemplateRenderError as exc:
            self.failures.append(f"Template {name!r} could not be rendered: {exc.message}")
            return None


# ------------------------------------------------------------------------------------ helpers
def _owner_group(info: LevelInfo, ticket: Ticket) -> str:
    if info.owners:
        issue_type = normalize(ticket.attribute("issue_type"))
        if issue_type is not None and issue_type in info.owners:
            return info.owners[issue_type]
    return info.level.owner.default


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


def format_duration_seconds(seconds: int) -> str:
    from datetime import timedelta

    return format_duration(timedelta(seconds=seconds))


def _reason_cause(cause: str) -> str:
    if cause == MANUAL:
        return "set by hand"
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
    return _decide(compiled, ticket, state, now, breached_at)


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


def _decide(compiled: CompiledMatrix, ticket: Ticket, state: TicketState | None, now: datetime,
            breached_at: datetime | None = None) -> Decision:
    current = state.level if state is not None and state.level in compiled.levels else None
    base = dict(vendor=ticket.vendor, ticket_id=ticket.id, matrix_version=compiled.version, decided_at=now,
                from_level=current)

    if compiled.resolve(ticket):
        return _resolved(compiled, ticket, state, current, base, now)  # 1
    placement = _place(compiled, ticket)  # 2
    was_bypassed = bool(state.bypassed) if state is not None and current else False
    level_field = _read_level_field(compiled, ticket)  # 4
    target, cause = _target(compiled, state, current, placement, level_field.level)  # 3 + 4 + 5
    # A level a person set: an agent's change of the level field, or the level already on a new ticket.
    hand_set = cause == MANUAL or (current is None and level_field.level is not None and level_field.level == target)
    enter, held, missing = _gate(compiled, ticket, current, target, hand_set=hand_set)  # 6
    entered_without = tuple(missing) if enter is not None and enter == target and missing else ()

    draft = _Draft()
    texts = _Texts(compiled)
    reasons: list[str] = []
    entered_at: datetime | None = None
    if enter is not None:
        entered_at = _entry_time(compiled, ticket, state, now, cause, current=current, enter=enter,
                                 breached_at=breached_at)
        _enter_level(compiled, ticket, state, now, draft, texts, reasons, current=current, enter=enter,
                     target=target, cause=cause, placement=placement, level_field=level_field,
                     entered_at=entered_at, hand_set=hand_set, entered_without=entered_without)  # 7
    else:
        _stay_at_level(compiled, ticket, state, now, draft, reasons, current=current, placement=placement,
                       was_bypassed=was_bypassed, level_field=level_field)  # 8
    if held:
        _hold_for_data(compiled, ticket, state, draft, texts, reasons, current=current, enter=enter, held=held,
                       missing=missing, cause=cause)  # 6 (continued)
    rejected = _reject_level_field(compiled, state, draft, reasons, level_field.rejected,
                                   shown=enter or current)  # 4 (continued)

    bypass_change = None
    if current is None:
        bypass_change = True if placement.bypass else None
    elif placement.bypass != was_bypassed:
        bypass_change = placement.bypass
    if bypass_change:
        _answer_bypass(compiled, ticket, draft, texts, placement, level=enter or current)
    draft.notes.extend(texts.failures)
    return Decision(
        **base,
        to_level=enter,
        reason="; ".join(reasons) or (f"no change at {current}" if current else "no change"),
        rule_id=cause if (enter or held) else None,
        priority=draft.priority,
        owner_group=draft.owner_group,
        field_updates=draft.field_updates,
        public_reply=draft.public_reply,
        internal_note=_join(*draft.notes),
        missing_data=draft.missing_data,
        start_clocks=tuple(draft.start_clocks),
        stop_clocks=tuple(draft.stop_clocks),
        milestones=draft.milestones,
        entered_at=entered_at if enter is not None else None,
        held_level=held,
        rule_level=placement.rule_level,
        bypassed=bypass_change,
        reply_template=draft.reply_template,
        rejected_level=rejected,
        entered_without=entered_without,
        bypass_rule=placement.matched.rule.id if bypass_change else None,
    )


def _resolved(compiled: CompiledMatrix, ticket: Ticket, state: TicketState | None, current: str | None,
              base: dict[str, Any], now: datetime) -> Decision:
    """1. Resolved: record the resolve milestone once and stop every clock still running at the level."""
    if current is None:
        return Decision(**base, reason="resolved before the service placed it: nothing to do")
    if "resolve" in state.milestones:
        return Decision(**base, reason=f"resolved at {current}")
    current_info = compiled.levels[current]
    running = [c for c, _ in current_info.sla_seconds if c not in state.milestones]
    if current_info.level.update_cadence is not None:
        running.append(UPDATE_CADENCE_CLOCK)
    resolved_at = _vendor_time(ticket.updated_at, state.entered_level_at, now)
    return Decision(**base, reason=f"resolved at {current}: clocks stopped", milestones={"resolve": resolved_at},
                    stop_clocks=tuple(running))


def _place(compiled: CompiledMatrix, ticket: Ticket) -> _Placement:
    """2. Placement by rule: the first match in file order; none matching is the first level."""
    matched = compiled.index.first_match(ticket, compiled.index.values(ticket))
    if matched is None:
        return _Placement(None, False, compiled.level_ids[0], DEFAULT_PLACEMENT)
    if matched.rule.bypass:
        return _Placement(matched, True, None, matched.rule.id)
    return _Placement(matched, False, matched.rule.level, matched.rule.id)


def _read_level_field(compiled: CompiledMatrix, ticket: Ticket) -> _LevelField:
    """4. The level field as the agent left it: the level it names, or the value that names none."""
    raw = ticket.level if compiled.has_level_field else None
    level = compiled.level_by_folded.get(raw.strip().casefold()) if raw else None
    return _LevelField(raw, level, raw if raw and level is None else None)


def _target(compiled: CompiledMatrix, state: TicketState | None, current: str | None, placement: _Placement,
            marker: str | None) -> tuple[str, str | None]:
    """3 + 4 + 5. The level the ticket should be at and what caused it (None: it stays)."""
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
    for clock in state.pending_breaches:
        to = on_breach.get(clock)
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


def _gate(compiled: CompiledMatrix, ticket: Ticket, current: str | None, target: str, *,
          hand_set: bool) -> tuple[str | None, str | None, list[str]]:
    """6. Required-data gate: (level entered, level held for data, missing attributes). A level a person set
    is entered with data missing under `gate.manual: flag` (the missing attributes come back for the data
    request and the flag); otherwise the gate holds."""
    if target == current:
        return None, None, []
    missing = _missing(compiled.levels[target].level, ticket)
    first_level = compiled.level_ids[0]
    if not missing or (current is None and target == first_level):  # the entry level is never gated
        return target, None, []
    if hand_set and compiled.matrix.gate.manual == "flag":
        return target, None, missing
    return (first_level if current is None else None), target, missing


def _enter_level(
    compiled: CompiledMatrix, ticket: Ticket, state: TicketState | None, now: datetime, draft: _Draft,
    texts: _Texts, reasons: list[str], *, current: str | None, enter: str, target: str, cause: str | None,
    placement: _Placement, level_field: _LevelField, entered_at: datetime, hand_set: bool = False,
    entered_without: tuple[str, ...] = (),
) -> None:
    """7. Entering a level: priority, owner group, level field, reply, note, clocks (run from `entered_at`)."""
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
    owner = _owner_group(info, ticket)
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
    if entered_without:
        _flag_entry_without_data(compiled, ticket, state, draft, texts, current=current, enter=enter,
                                 missing=entered_without)
    if kept_group is not None and not bypass_entry:
        draft.notes.append(
            f"Owner group left at {compiled.group_label(kept_group)}, as set on the ticket "
            f"(the matrix's owner at {enter} is {compiled.group_label(owner)})."
        )
    unfilled = [compiled.label(role) for role in level.roles if is_empty_value(ticket.attribute(role))]
    if unfilled:
        draft.notes.append("Assign: " + ", ".join(unfilled))
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
    return _owner_group(compiled.levels[current or compiled.level_ids[0]], ticket)


def _flag_entry_without_data(
    compiled: CompiledMatrix, ticket: Ticket, state: TicketState | None, draft: _Draft, texts: _Texts, *,
    current: str | None, enter: str, missing: tuple[str, ...],
) -> None:
    """6 (gate `manual: flag`). A hand-set level entered without its required data: the level stands, the
    customer is asked once (after the level's welcome, in the same reply) and the note flags it."""
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


def _answer_bypass(compiled: CompiledMatrix, ticket: Ticket, draft: _Draft, texts: _Texts,
                   placement: _Placement, *, level: str) -> None:
    """2 (bypass). The rule's own public reply (a help-centre answer) and its knowledge-base link for the agent."""
    rule = placement.matched.rule
    if rule.reply:
        context = template_context(compiled, ticket, level, rule_id=rule.id)
        reply = texts.render(rule.reply, context)
        if reply:
            draft.public_reply, draft.reply_template = reply, rule.reply
    if rule.kb_article:
        draft.notes.append(f"Known answer: {rule.kb_article}")


def _stay_at_level(
    compiled: CompiledMatrix, ticket: Ticket, state: TicketState, now: datetime, draft: _Draft,
    reasons: list[str], *, current: str, placement: _Placement, was_bypassed: bool, level_field: _LevelField,
) -> None:
    """8. Milestones at the current level, a reopened ticket's resolve clock, a bypass that starts or ends,
    and the level field shown again."""
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


def _hold_for_data(
    compiled: CompiledMatrix, ticket: Ticket, state: TicketState | None, draft: _Draft, texts: _Texts,
    reasons: list[str], *, current: str | None, enter: str | None, held: str, missing: list[str],
    cause: str | None,
) -> None:
    """6 (continued). Ask for the missing data once per held level and set of missing attributes."""
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


def _reject_level_field(compiled: CompiledMatrix, state: TicketState | None, draft: _Draft, reasons: list[str],
                        rejected: str | None, *, shown: str | None) -> str | None:
    """4 (continued). A level field value that names no level: one note (not repeated for the same value) and
    the field set back. Returns the value to remember in `state.rejected_level`, or None."""
    if not rejected or (state is not None and state.rejected_level == rejected):
        return None
    draft.notes.append(
        f"The level field says {rejected!r}, which is not a level of this matrix "
        f"(levels: {', '.join(compiled.level_ids)}); the ticket stays at {shown}."
    )
    draft.field_updates[LEVEL_ATTRIBUTE] = shown
    reasons.append(f"level field {rejected!r} is not a level")
    return rejected


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


def _entry_time(compiled: CompiledMatrix, ticket: Ticket, state: TicketState | None, now: datetime,
                cause: str | None, *, current: str | None, enter: str, breached_at: datetime | None) -> datetime:
    """When a level entry happened on the ticket: the vendor's time of the change that caused it, so that the
    order webhooks arrive in and queue delays never change when the level's clocks start.
    Set by hand: when the level field got its value (`level_set_at`, from audits/changelog), else the
    ticket's last change. A breach: the clock's due time. A new ticket: its creation. A rule (or data
    that arrived for a waiting level): the ticket's last change, the latest moment the change that made
    the rule match can have happened, or, where the connector knows when attributes changed
    (`field_changed_at`), the latest change of an attribute the rule tests or the level requires: the
    entry became due when the last of those changed."""
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


# ---------------------------------------------------------------------------------- next_state
def next_state(state: TicketState | None, ticket: Ticket, decision: Decision) -> TicketState:
    """The state to store after `decision` was carried out on `ticket`."""
    base = state if state is not None else TicketState(vendor=ticket.vendor, ticket_id=ticket.id)
    changes: dict[str, Any] = {"matrix_version": decision.matrix_version, "pending_breaches": ()}
    if decision.to_level:
        changes.update(
            level=decision.to_level,
            entered_level_at=decision.entered_at or decision.decided_at,
            rule_id=decision.rule_id or base.rule_id,
            milestones=dict(decision.milestones),
        )
        if decision.rule_id == MANUAL and not decision.held_level and base.level is not None:
            changes["manual_rule_level"] = decision.rule_level
    else:
        milestones = {**base.milestones, **decision.milestones}
        for clock in decision.start_clocks:  # a clock started again (reopened) is no longer met
            if clock.clock not in decision.milestones:
                milestones.pop(clock.clock, None)
        changes["milestones"] = milestones
    if decision.held_level:
        same = base.pending_level == decision.held_level
        requested = set(base.data_requested) if same else set()
        requested.update(decision.missing_data)
        changes.update(
            pending_level=decision.held_level,
            pending_cause=decision.rule_id,
            data_requested=tuple(sorted(requested)),
        )
    else:
        changes.update(pending_level=None, pending_cause=None, data_requested=())
    if decision.bypassed is not None:
        changes["bypassed"] = decision.bypassed
    if decision.rejected_level:
        changes["rejected_level"] = decision.rejected_level
    updates = [t for t in (base.last_public_update_at, ticket.last_public_agent_reply_at) if t is not None]
    if decision.public_reply:
        updates.append(decision.decided_at)
    if updates:
        changes["last_public_update_at"] = max(updates)
    return replace(base, **changes)


# ------------------------------------------------------------------------------ applying, explaining
def apply_to_ticket(ticket: Ticket, decision: Decision) -> Ticket:
    """The ticket as a connector leaves it after carrying out `decision` (for simulation and tests).
    The service's own replies are not agent replies, so reply timestamps do not change."""
    changes: dict[str, Any] = {}
    if decision.priority:
        changes["priority"] = decision.priority
    if decision.owner_group:
        changes["group"] = decision.owner_group
    if decision.add_tags or decision.remove_tags:
        changes["tags"] = (ticket.tags - set(decision.remove_tags)) | set(decision.add_tags)
    if decision.field_updates:
        changes["fields"] = {**ticket.fields, **decision.field_updates}
    return replace(ticket, **changes) if changes else ticket


@dataclass(frozen=True)
class Explanation:
    traces: tuple[RuleTrace, ...]
    matched_rule: str | None
    decision: Decision


def explain(
    ticket: Ticket,
    state: TicketState | None,
    matrix: Matrix,
    now: datetime,
    *,
    version: str | None = None,
    all_rules: bool = False,
) -> Explanation:
    """The rules tried (each condition with what it wants and what the ticket has) and the decision."""
    compiled = compile_matrix(matrix, version)
    traces = tuple(compiled.index.explain(ticket, all_rules=all_rules))
    matched = next((t.rule_id for t in traces if t.matched), None)
    return Explanation(traces, matched, _decide(compiled, ticket, state, now))
