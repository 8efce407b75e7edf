"""SLA clocks: which timers a ticket needs, and what a timer does when it fires.

The timer host (`integration.store.timers`) stores every due time as a row plus a huey task and calls:
- `plan_timers(state_before, state_after, decision, ticket, matrix, now)` after each processing pass;
  the returned `TimerSpec`s are inserted (the row's unique key makes re-planning the same due time a no-op);
- `on_timer(timer, ticket, state, matrix, now)` when a timer fires, with a freshly fetched ticket and the
  stored state; the returned `TimerOutcome` carries the decision to apply, the state to store and more
  timers to schedule.
and, once per pass before storing the state, `track(state, ticket, matrix, now)`, which keeps the pause
accounting in `TicketState.clock_state`.

Clocks. Entering a level starts its clocks (`acknowledge`, `diagnose`, `interim_fix`, `resolve`, as
the level's `sla:` sets them) at `entered_level_at`: the vendor's time of the change that caused the entry
(see `integration.engine.decide._entry_time`; a breach-caused entry starts at the breached clock's due time),
never the time a pass or a timer ran. Each clock gets one warning timer per `clocks.warn_at`
fraction and a breach timer at 100 %. With a calendar (the level's `calendar:` or `clocks.calendar`),
targets are business time. A clock stops when its milestone is in `state.milestones`; its timers then do
nothing when they fire (the host may also cancel them).

Pausing. While the ticket's status is one of `clocks.pause_statuses`, no clock advances: timers that come
due do nothing, and on resume the remaining due times move later by the paused (business) time, which
`plan_timers` schedules as new timers. A timer whose due time the pause moved is recognised when it fires
(its due time is earlier than the clock's current one) and does nothing.

Warnings are internal notes, never customer messages, sent once per threshold and level. When the
worker was down and several thresholds are overdue at once, only the highest one reached is sent; once the
target itself is reached the breach speaks instead.

Breach: the clock goes into `state.pending_breaches` and `integration.engine.decide()` applies the
level's `on_breach` policy and its required-data gate; the internal note says which clock breached by how
much. Each clock breaches once per level.

Role deadlines (`roles:` entries with `within`): a role still empty `within` after the level entry (business
time of the level's calendar; pauses do not stretch it) gets an internal reminder to the owner group, again
every `within` until it is filled; the first reminder also escalates to the role's `on_missing` level. A
role filled by then ends it: the timer finds it filled and does nothing, and plans no further reminder.

Customer-update cadence (`update_cadence` on a level): `every` after the latest of (entering the level,
the last public agent update, the last cadence message, the end of the last pause), `mode: send` posts
the cadence template as a public reply, `mode: remind` an internal note. A public update that went out in
between moves the due time, so the timer that fires finds nothing to do and reschedules itself.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Mapping

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, TypeAdapter

from integration.calendar import add_business_time, business_seconds_between
from integration.engine import compile_matrix, decide, is_empty_value, next_state, template_context
from integration.incident import digest_context
from integration.model import Decision, Ticket, TicketState, TimerOutcome, TimerSpec
from matrix_config.schema import Calendar, Level, Matrix, format_duration
from matrix_config.templates import TemplateRenderError, render_template

log = logging.getLogger(__name__)

WARNING = "warning"
BREACH = "breach"
CADENCE = "cadence"
CADENCE_CLOCK = "update_cadence"
ROLE = "role"  # a role's deadline (`roles: {name: {within: ...}}`); the timer's clock is the role's attribute
RESOLVED_STATUSES = frozenset({"solved", "closed"})
# A timer that fires this close to its clock's current due time counts as on time: huey's eta and the
# reconciler are not exact, and a clock computed a second later must not look "not yet due".
TOLERANCE = timedelta(seconds=2)


# ------------------------------------------------------------------------------------ bookkeeping
def _utc(moment: datetime | None) -> datetime | None:
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=timezone.utc)


# How the book's fields are stored in `TicketState.clock_state` (the format rows have had from the start):
# times as UTC ISO text (a time stored without an offset is UTC; an empty value is none), the alerts sent as
# a sorted list, the clock offsets as an object; a value at its default is left out.
_StoredTime = Annotated[
    datetime | None,
    BeforeValidator(lambda value: value or None),
    AfterValidator(_utc),
    PlainSerializer(lambda moment: moment.astimezone(timezone.utc).isoformat() if moment else None, when_used="json"),
]
_StoredAlerts = Annotated[frozenset[str], BeforeValidator(lambda value: value or ()),
                          PlainSerializer(sorted, when_used="json")]
_StoredOffsets = Annotated[
    tuple[tuple[str, float], ...],
    BeforeValidator(lambda value: tuple(sorted((str(k), float(v)) for k, v in value.items()))
                    if isinstance(value, Mapping) else value or ()),
    PlainSerializer(dict, when_used="json"),
]


@dataclass(frozen=True)
class ClockBook:
    """The clock bookkeeping for one stay at one level (`TicketState.clock_state`, parsed)."""

    level: str | None = None
    entered_at: _StoredTime = None
    paused_since: _StoredTime = None  # the ticket is paused now, since then
    # business seconds of finished pauses at this level
    paused_seconds: Annotated[float, BeforeValidator(lambda value: value or 0.0)] = 0.0
    resumed_at: _StoredTime = None  # end of the last pause
    alerts: _StoredAlerts = frozenset()  # "acknowledge:0.75", "acknowledge:breach": already sent
    cadence_at: _StoredTime = None  # last cadence message (public reply or reminder)
    resolved_at: _StoredTime = None  # resolved now (clocks stand still), since then
    # clock -> active seconds already run when that clock restarted (resolve, on reopening)
    offsets: _StoredOffsets = ()

    def offset(self, clock: str) -> float:
        return dict(self.offsets).get(clock, 0.0)

    @classmethod
    def of(cls, state: TicketState) -> "ClockBook":
        fresh = cls(level=state.level, entered_at=state.entered_level_at)
        if not state.clock_state:
            return fresh
        book = _STORED_BOOK.validate_python(state.clock_state)
        if (book.level, book.entered_at) != (state.level, state.entered_level_at):
            return fresh  # bookkeeping of an earlier level (or none yet): this stay starts clean
        return replace(book, entered_at=state.entered_level_at)

    def to_json(self) -> dict[str, Any]:
        if self == ClockBook(level=self.level, entered_at=self.entered_at):
            return {}
        data = _STORED_BOOK.dump_python(self, mode="json", exclude_defaults=True)
        return {"level": self.level, "entered_at": data.pop("entered_at", None), **data}

    def store(self, state: TicketState) -> TicketState:
        data = self.to_json()
        if dict(state.clock_state or {}) == data:
            return state
        return state.with_(clock_state=data)


_STORED_BOOK: TypeAdapter[ClockBook] = TypeAdapter(ClockBook)


def level_calendar(matrix: Matrix, level: Level) -> Calendar | None:
    name = level.calendar or matrix.clocks.calendar
    return matrix.calendars.get(name) if name else None


def _level_of(matrix: Matrix, level_id: str | None) -> Level | None:
    if not level_id:
        return None
    try:
        return matrix.level(level_id)
    except KeyError:
        return None


def _is_paused(ticket: Ticket, matrix: Matrix) -> bool:
    return ticket.status in matrix.clocks.pause_statuses


def _is_resolved(ticket: Ticket, state: TicketState, matrix: Matrix) -> bool:
    return (
        ticket.status in RESOLVED_STATUSES
        or ticket.status in matrix.milestones.resolve.statuses
        or "resolve" in (state.milestones or {})
    )


def _status_changed_at(ticket: Ticket, floor: datetime, now: datetime) -> datetime:
    # The pass may run late (webhook retries, catch-up scan): the ticket's own update time is the best
    # record of when its status changed. It is an upper bound when other edits followed, which errs on
    # the side of crediting less pause, never more.
    moment = ticket.updated_at or now
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return min(max(moment, floor), now)


def track(state: TicketState, ticket: Ticket, matrix: Matrix, now: datetime) -> TicketState:
    """Update the pause accounting from the ticket's status; returns `state` itself when nothing changed.
    Call once per processing pass, on the state about to be stored (after `next_state`).

    A resolved ticket's clocks stand still like a paused one's. When it is reopened, the clocks that
    were not met go on where they stopped, and the resolve clock starts again from zero."""
    if not state.level or state.entered_level_at is None:
        return state if not state.clock_state else state.with_(clock_state={})
    level = _level_of(matrix, state.level)
    calendar = level_calendar(matrix, level) if level else None
    book = ClockBook.of(state)
    resolved = _is_resolved(ticket, state, matrix)
    paused = resolved or _is_paused(ticket, matrix)
    if paused and book.paused_since is None:
        book = replace(book, paused_since=_status_changed_at(ticket, state.entered_level_at, now))
    elif not paused and book.paused_since is not None:
        resumed = _status_changed_at(ticket, book.paused_since, now)
        book = replace(
            book,
            paused_seconds=book.paused_seconds + business_seconds_between(calendar, book.paused_since, resumed),
            paused_since=None,
            resumed_at=resumed,
        )
    if resolved and book.resolved_at is None:
        book = replace(book, resolved_at=book.paused_since or now)
    elif not resolved and book.resolved_at is not None:
        reopened = _status_changed_at(ticket, book.resolved_at, now)
        offsets = dict(book.offsets)
        offsets["resolve"] = active_seconds(book, calendar, reopened)
        book = replace(
            book,
            resolved_at=None,
            offsets=tuple(sorted(offsets.items())),
            alerts=frozenset(a for a in book.alerts if not a.startswith("resolve:")),
        )
    return book.store(state)


# ------------------------------------------------------------------------------------ clock math
def active_seconds(book: ClockBook, calendar: Calendar | None, at: datetime) -> float:
    """Business seconds the level's clocks have run by `at` (paused time excluded)."""
    if book.entered_at is None:
        return 0.0
    total = business_seconds_between(calendar, book.entered_at, at) - book.paused_seconds
    if book.paused_since is not None and at > book.paused_since:
        total -= business_seconds_between(calendar, book.paused_since, at)
    return max(0.0, total)


def due_at(book: ClockBook, calendar: Calendar | None, active: float) -> datetime | None:
    """When the clocks will have run `active` business seconds; None while paused (no due time exists)."""
    if book.paused_since is not None or book.entered_at is None:
        return None
    return add_business_time(calendar, book.entered_at, active + book.paused_seconds)


def _last_public_update(ticket: Ticket, state: TicketState) -> datetime | None:
    candidates = [t for t in (ticket.last_public_agent_reply_at, state.last_public_update_at) if t]
    return max(candidates) if candidates else None


def cadence_due(book: ClockBook, calendar: Calendar | None, level: Level, ticket: Ticket, state: TicketState) -> datetime | None:
    if level.update_cadence is None or book.entered_at is None or book.paused_since is not None:
        return None
    base = max(t for t in (book.entered_at, _last_public_update(ticket, state), book.cadence_at, book.resumed_at) if t)
    return add_business_time(calendar, base, level.update_cadence.every.total_seconds())


def _running_clocks(level: Level, state: TicketState, decision: Decision | None) -> list[tuple[str, timedelta]]:
    met = set(state.milestones or {}) | set(decision.stop_clocks if decision else ()) | set(decision.milestones if decision else {})
    return [(name, target) for name, target in level.sla.items() if name not in met]


def _timers_for(state: TicketState, ticket: Ticket, matrix: Matrix, decision: Decision | None) -> list[TimerSpec]:
    level = _level_of(matrix, state.level)
    if level is None or state.bypassed or state.entered_level_at is None or _is_resolved(ticket, state, matrix):
        return []
    book = ClockBook.of(state)
    if book.paused_since is not None:
        return []
    calendar = level_calendar(matrix, level)
    version = state.matrix_version or matrix.version()
    common = dict(vendor=state.vendor, ticket_id=state.ticket_id, level=level.id, matrix_version=version)
    specs: list[TimerSpec] = []
    for clock, target in _running_clocks(level, state, decision):
        seconds, offset = target.total_seconds(), book.offset(clock)
        if f"{clock}:breach" in book.alerts:
            continue
        for fraction in sorted(set(matrix.clocks.warn_at)):
            if f"{clock}:{fraction}" not in book.alerts:
                due = due_at(book, calendar, seconds * fraction + offset)
                specs.append(TimerSpec(kind=WARNING, clock=clock, due_at=due, fraction=fraction, **common))
        specs.append(TimerSpec(kind=BREACH, clock=clock, due_at=due_at(book, calendar, seconds + offset), fraction=1.0, **common))
    for name, role in level.roles.items():
        if role.within is not None and f"role:{name}:1" not in book.alerts and is_empty_value(ticket.attribute(name)):
            due = add_business_time(calendar, book.entered_at, role.within.total_seconds())
            specs.append(TimerSpec(kind=ROLE, clock=name, due_at=due, fraction=1.0, **common))
    cadence = cadence_due(book, calendar, level, ticket, state)
    if cadence is not None:
        specs.append(TimerSpec(kind=CADENCE, clock=CADENCE_CLOCK, due_at=cadence, fraction=None, **common))
    return specs


def plan_timers(
    state_before: TicketState | None,
    state_after: TicketState,
    decision: Decision | None,
    ticket: Ticket,
    matrix: Matrix,
    now: datetime,
) -> list[TimerSpec]:
    """Timers to schedule after a processing pass: all of the level's pending thresholds when the ticket
    entered a level, resumed from a pause, or changed matrix version; the cadence timer when its due time
    moved (a public update went out). Empty while paused, resolved or bypassed.

    `now` is reserved: due times come from the stored clock state, not from the pass's time. The pipeline
    passes it, so the signature stays for a future use (e.g. skipping thresholds already past)."""
    specs = _timers_for(state_after, ticket, matrix, decision)
    if not specs:
        return []
    before = state_before or TicketState(vendor=state_after.vendor, ticket_id=state_after.ticket_id)
    book_before, book_after = ClockBook.of(before), ClockBook.of(state_after)
    entered = (before.level, before.entered_level_at) != (state_after.level, state_after.entered_level_at)
    resumed = book_before.paused_since is not None and book_after.paused_since is None and not entered
    repinned = before.matrix_version != state_after.matrix_version
    if entered or resumed or repinned or (decision is not None and decision.start_clocks):
        return specs
    # Otherwise only the cadence can have moved (a public update restarts its interval). Re-offering an
    # unchanged due time is free: the timer row's unique key (kind, clock, level, due_at) absorbs it.
    return [s for s in specs if s.kind == CADENCE]


# ------------------------------------------------------------------------------------ firing
def _human(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{int(round(seconds))}s"
    return format_duration(timedelta(seconds=seconds))


def _owner(matrix: Matrix, level: Level, ticket: Ticket) -> str:
    """The owner group's label, chosen exactly as the engine chooses it (by issue type, else default)."""
    return str(template_context(compile_matrix(matrix), ticket, level.id)["level"]["owner"])


def _render(matrix: Matrix, name: str, level: Level, ticket: Ticket, clock: Mapping[str, Any], version: str,
            *, state: TicketState | None = None, now: datetime | None = None) -> str:
    incident = None
    if state is not None and now is not None:
        incident = digest_context(matrix, ticket, state, clock_report(state, ticket, matrix, now), level)
    context = template_context(compile_matrix(matrix, version), ticket, level.id, clock=clock, incident=incident)
    return render_template(matrix, name, context)


def clock_report(state: TicketState, ticket: Ticket, matrix: Matrix, now: datetime) -> list[dict[str, Any]]:
    """Each SLA clock of the ticket's level as templates and reports show it: {name, target, remaining,
    overdue_by, state}; state is `met`, `breached` (ran out, not met), `paused` or `running`."""
    level = _level_of(matrix, state.level)
    if level is None or state.entered_level_at is None:
        return []
    calendar = level_calendar(matrix, level)
    book = ClockBook.of(track(state, ticket, matrix, now))
    met = state.milestones or {}
    out = []
    for clock, target in level.sla.items():
        seconds = target.total_seconds()
        left = seconds - (active_seconds(book, calendar, now) - book.offset(clock))
        if clock in met:
            condition = "met"
        elif left <= 0 or f"{clock}:breach" in book.alerts:
            condition = "breached"
        else:
            condition = "paused" if book.paused_since is not None else "running"
        out.append({"name": clock, "target": format_duration(target),
                    "remaining": _human(left) if condition in ("running", "paused") else None,
                    "overdue_by": _human(-left) if condition == "breached" and left < 0 else None,
                    "state": condition})
    return out


def _decision(state: TicketState, now: datetime, version: str, **fields: Any) -> Decision:
    return Decision(vendor=state.vendor, ticket_id=state.ticket_id, matrix_version=version, decided_at=now,
                    from_level=state.level, **fields)


def _calendar_phrase(level: Level, matrix: Matrix) -> str:
    name = level.calendar or matrix.clocks.calendar
    return f" (business hours, calendar {name})" if name and name in matrix.calendars else ""


@dataclass(frozen=True)
class _Firing:
    """One timer being handled: the re-read ticket, its state (tracked up to `now`; `changed_state` is that
    state when tracking changed it, else None), its level and calendar, the bookkeeping, the version."""

    timer: TimerSpec
    ticket: Ticket
    state: TicketState
    changed_state: TicketState | None
    matrix: Matrix
    level: Level
    calendar: Calendar | None
    book: ClockBook
    now: datetime
    version: str


def on_timer(timer: TimerSpec, ticket: Ticket, state: TicketState, matrix: Matrix, now: datetime) -> TimerOutcome:
    """React to a fired timer. Re-reads everything: nothing happens when the milestone was met, the level
    or the matrix version changed, the ticket is resolved, bypassed or paused, the warning was already
    sent, or the timer's due time is stale (a pause moved the clock)."""
    if state.level != timer.level or state.entered_level_at is None:
        return TimerOutcome()
    if timer.matrix_version and state.matrix_version and timer.matrix_version != state.matrix_version:
        return TimerOutcome()
    level = _level_of(matrix, state.level)
    if level is None or state.bypassed or _is_resolved(ticket, state, matrix):
        return TimerOutcome()
    tracked = track(state, ticket, matrix, now)
    changed_state = tracked if tracked is not state else None
    book = ClockBook.of(tracked)
    if book.paused_since is not None:
        return TimerOutcome(state=changed_state)  # resume re-plans the shifted due times
    calendar = level_calendar(matrix, level)
    version = tracked.matrix_version or matrix.version()
    firing = _Firing(timer, ticket, tracked, changed_state, matrix, level, calendar, book, now, version)
    if timer.kind == CADENCE:
        return _on_cadence(firing)
    if timer.kind == ROLE:
        return _on_role(firing)
    if timer.kind not in (WARNING, BREACH):
        log.warning("unknown timer kind %r for %s %s", timer.kind, timer.vendor, timer.ticket_id)
        return TimerOutcome(state=changed_state)
    clock = timer.clock
    target = getattr(level.sla, clock, None)
    if target is None or clock in (tracked.milestones or {}):
        return TimerOutcome(state=changed_state)
    target_seconds = target.total_seconds()
    fraction = 1.0 if timer.kind == BREACH else float(timer.fraction)
    offset = book.offset(clock)
    current_due = due_at(book, calendar, target_seconds * fraction + offset)
    if timer.due_at < current_due - TOLERANCE:
        # A pause moved this clock; the timer planned on resume (re-offered here in case it was lost) acts.
        return TimerOutcome(state=changed_state, schedule=[replace_due(timer, current_due)] if current_due > now else [])
    at = max(now, current_due)
    elapsed = active_seconds(book, calendar, at) - offset
    if timer.kind == WARNING:
        return _on_warning(firing, clock, target_seconds, elapsed)
    return _on_breach(firing, clock, target_seconds, elapsed, due=current_due)


def replace_due(timer: TimerSpec, due: datetime) -> TimerSpec:
    return replace(timer, due_at=due)


def _on_warning(firing: _Firing, clock: str, target_seconds: float, elapsed: float) -> TimerOutcome:
    timer, ticket, state, changed_state = firing.timer, firing.ticket, firing.state, firing.changed_state
    matrix, level, book, now, version = firing.matrix, firing.level, firing.book, firing.now, firing.version
    key = f"{clock}:{timer.fraction}"
    used = elapsed / target_seconds
    if key in book.alerts or used >= 1.0 or f"{clock}:breach" in book.alerts:
        return TimerOutcome(state=changed_state)
    reached = [f for f in matrix.clocks.warn_at if f <= used + 1e-9]
    if not reached or max(reached) != timer.fraction:
        return TimerOutcome(state=changed_state)  # a higher threshold is already due: that warning speaks
    remaining = target_seconds - elapsed
    note = (
        f"SLA warning for {_owner(matrix, level, ticket)}: the {clock} clock at {level.id} ({level.name}) "
        f"is {int(round(timer.fraction * 100))} % used: {_human(elapsed)} elapsed of {_human(target_seconds)}, "
        f"{_human(remaining)} remaining{_calendar_phrase(level, matrix)}."
    )
    new_state = replace(book, alerts=book.alerts | {key}).store(state)
    decision = _decision(state, now, version, reason=f"sla warning {clock} {int(round(timer.fraction * 100))}%",
                         internal_note=note)
    return TimerOutcome(decision=decision, state=new_state)


def _on_breach(firing: _Firing, clock: str, target_seconds: float, elapsed: float, *, due: datetime) -> TimerOutcome:
    ticket, state, changed_state = firing.ticket, firing.state, firing.changed_state
    matrix, level, book, now, version = firing.matrix, firing.level, firing.book, firing.now, firing.version
    key = f"{clock}:breach"
    if key in book.alerts:
        return TimerOutcome(state=changed_state)
    overdue = max(0.0, elapsed - target_seconds)
    breached = replace(book, alerts=book.alerts | {key}).store(state)
    if clock not in breached.pending_breaches:
        breached = breached.with_(pending_breaches=tuple(breached.pending_breaches) + (clock,))
    # The next level starts when this clock ran out, not when a late timer (worker down, queue backlog)
    # got round to it.
    decision = decide(ticket, breached, matrix, now, version=version, breached_at=due)
    target_level = level.on_breach.get(clock)
    consequence = ""
    if decision.to_level:
        consequence = f" Escalated to {decision.to_level}."
    elif decision.held_level:
        held = decision.held_level
        if decision.missing_data:
            # This pass asks the customer; the engine's note below lists the data and says so.
            consequence = f" The escalation to {held} is on hold for missing data."
        else:
            # The customer was asked in an earlier pass (not again: one data request per level); the owner
            # group still hears of this breach and of what the escalation waits for.
            compiled = compile_matrix(matrix, version)
            missing = [name for name in matrix.level(held).required_data
                       if is_empty_value(ticket.attribute(name))]
            labels = ", ".join(compiled.label(name) for name in missing)
            asked = ("the customer was already asked for it" if matrix.level(held).data_request
                     else f"level {held} has no data_request template: please ask the customer")
            consequence = (f" The escalation to {held} is on hold for missing data ({labels}); {asked}. "
                           f"The ticket moves to {held} when the data arrives.")
    elif target_level:
        consequence = f" The breach policy points to {target_level}."
    breach_note = (
        f"SLA breach: the {clock} clock at {level.id} ({level.name}) ran out. Target {_human(target_seconds)}, "
        f"elapsed {_human(elapsed)}, overdue by {_human(overdue)}{_calendar_phrase(level, matrix)}.{consequence}"
    )
    note = breach_note if not decision.internal_note else f"{breach_note}\n\n{decision.internal_note}"
    decision = replace(decision, internal_note=note, reason=decision.reason or f"breach {clock}")
    new_state = track(next_state(breached, ticket, decision), ticket, matrix, now)  # clears pending_breaches
    schedule = plan_timers(breached, new_state, decision, ticket, matrix, now) if new_state.level != state.level else []
    return TimerOutcome(decision=decision, state=new_state, schedule=schedule)


def _on_cadence(firing: _Firing) -> TimerOutcome:
    timer, ticket, state, changed_state = firing.timer, firing.ticket, firing.state, firing.changed_state
    matrix, level, calendar, book = firing.matrix, firing.level, firing.calendar, firing.book
    now, version = firing.now, firing.version
    cadence = level.update_cadence
    if cadence is None:
        return TimerOutcome(state=changed_state)
    current_due = cadence_due(book, calendar, level, ticket, state)
    if current_due is None:
        return TimerOutcome(state=changed_state)
    if current_due > now + TOLERANCE:
        # A public update (or an earlier cadence message) went out since: the interval restarted from it.
        return TimerOutcome(state=changed_state, schedule=[replace_due(timer, current_due)])
    last = _last_public_update(ticket, state) or book.entered_at
    silent_for = business_seconds_between(calendar, last, now)
    clock = {"name": CADENCE_CLOCK, "target": format_duration(cadence.every), "elapsed": _human(silent_for),
             "overdue_by": _human(silent_for - cadence.every.total_seconds()), "fraction": round(silent_for / cadence.every.total_seconds(), 2)}
    new_book = replace(book, cadence_at=now)
    failure = None
    if cadence.mode == "send":
        try:
            text = _render(matrix, cadence.template, level, ticket, clock, version, state=state, now=now)
        except TemplateRenderError as exc:
            text, failure = None, exc.message
    if cadence.mode == "send" and text:
        decision = _decision(state, now, version, reason="update cadence: status update sent", public_reply=text,
                             reply_template=cadence.template)
        new_state = new_book.store(state).with_(last_public_update_at=now)
    else:
        text = None
        if cadence.template and cadence.mode == "remind":
            try:
                text = _render(matrix, cadence.template, level, ticket, clock, version, state=state, now=now)
            except TemplateRenderError as exc:
                failure = exc.message
        if not text:
            text = (f"Reminder for {_owner(matrix, level, ticket)}: no public update on {ticket.id} for "
                    f"{_human(silent_for)} (cadence at {level.id}: every {format_duration(cadence.every)}). "
                    f"Please update the customer.")
            if failure:
                text += f" (Template {cadence.template!r} could not be rendered: {failure})"
        decision = _decision(state, now, version, reason="update cadence: reminder", internal_note=text)
        new_state = new_book.store(state)
    next_due = cadence_due(ClockBook.of(new_state), calendar, level, ticket, new_state)
    schedule = [replace_due(timer, next_due)] if next_due else []
    return TimerOutcome(decision=decision, state=new_state, schedule=schedule)


def _on_role(firing: _Firing) -> TimerOutcome:
    """A role's deadline (or a later reminder) came: remind the owner group while the role is still empty;
    the first reminder escalates to the role's `on_missing` level. Reminder n is `timer.fraction` == n."""
    timer, ticket, state, changed_state = firing.timer, firing.ticket, firing.state, firing.changed_state
    matrix, level, calendar, book = firing.matrix, firing.level, firing.calendar, firing.book
    now, version = firing.now, firing.version
    name = timer.clock or ""
    role = level.roles.get(name)
    if role is None or role.within is None or not is_empty_value(ticket.attribute(name)):
        return TimerOutcome(state=changed_state)
    number = int(timer.fraction or 1)
    key = f"role:{name}:{number}"
    if key in book.alerts:
        return TimerOutcome(state=changed_state)
    label = compile_matrix(matrix, version).label(name)
    note = (f"Role missing: {ticket.id} has no {label} {format_duration(role.within * number)} after entering "
            f"{level.id} ({level.name}); the deadline is {format_duration(role.within)}. "
            f"{_owner(matrix, level, ticket)}: please assign the {label} now.")
    marked = replace(book, alerts=book.alerts | {key}).store(state)
    next_reminder = replace(timer, due_at=add_business_time(calendar, timer.due_at, role.within.total_seconds()),
                            fraction=float(number + 1), timer_id=None)
    if number == 1 and role.on_missing is not None:
        missing = marked.with_(pending_breaches=tuple(marked.pending_breaches) + (f"{ROLE}:{name}",))
        decision = decide(ticket, missing, matrix, now, version=version, breached_at=timer.due_at)
        if decision.to_level:
            note += f" Escalated to {decision.to_level} (on_missing)."
        elif decision.held_level:
            note += f" The escalation to {decision.held_level} (on_missing) is on hold for missing data."
        decision = replace(decision, internal_note=_join_notes(note, decision.internal_note),
                           reason=decision.reason or f"role missing {name}")
        new_state = track(next_state(missing, ticket, decision), ticket, matrix, now)
        if new_state.level != state.level:
            return TimerOutcome(decision=decision, state=new_state,
                                schedule=plan_timers(missing, new_state, decision, ticket, matrix, now))
        return TimerOutcome(decision=decision, state=new_state, schedule=[next_reminder])
    decision = _decision(state, now, version, reason=f"role missing {name}", internal_note=note)
    return TimerOutcome(decision=decision, state=marked, schedule=[next_reminder])


def _join_notes(*notes: str | None) -> str:
    return "\n\n".join(n for n in notes if n)
