"""The metrics the matrix exists for, as queries over the pipeline's tables (SQLite and PostgreSQL).

SQL (SQLAlchemy Core over the store's models, no vendor-specific SQL) selects and filters the rows;
Python does what SQL cannot do the same way on both databases: business time on a level's calendar,
percentiles, ISO weeks, and pairing a level entry with what happened after it.

What is counted, and from which table:
- **Level entries / escalation frequency** (`escalation_frequency`): every entry into a level recorded in
  `decisions` (`to_level` set, status applied / recovered / dry_run / noop — not failed, conflict, abandoned
  or still applying). Each entry is one of: `placed` (a new ticket placed there, e.g. straight at L3 by a
  rule), `moved_up` (an automatic move up: a rule or a breach), `set_by_hand` (a person set the level:
  `rule_id = manual`; a new ticket whose level field already named the level the rules chose counts as
  `placed`), or `moved_down` (a hand-made de-escalation: an entry, but not an escalation; it is not part
  of `escalations`). The entry time is the decision's `entered_at` (the vendor's time of the cause), else
  its `decided_at`; `since`/`until` and ISO weeks (in UTC) use it. The organization is the ticket's as last seen
  (`ticket_state.organization`).
- **Time to acknowledge / diagnose / interim fix / resolve** (`clock_times`): `milestones`, from entering
  the level to meeting the milestone, as wall-clock seconds and as business seconds on the level's calendar
  (`integration.clocks.level_calendar` of the matrix passed in, the configured one for the CLI; no
  calendar: 24x7, business = wall-clock). Time the ticket spent in
  a pause status is not subtracted (the milestone row does not record it).
- **SLA attainment** (`sla_attainment`, `breach_reasons`): each clock a level entry started
  (`decision.start_clocks`, with the target and calendar the matrix version of the time gave it; a
  milestone already met on entry counts as met). A clock is *breached* when the service recorded its breach
  (a decision made by that clock's breach timer), or its milestone came after the target in business time,
  or it has no milestone and the target ran out before the ticket left the level or was resolved there (or,
  still running, before `now`); it is *met* when its milestone came within the target; otherwise it is
  *open* (still running, or the ticket left the level or was resolved before the target). Outcomes are as
  known at `now`, for the clocks started in the window. Attainment = met / (met + breached); open clocks are not in the share.
  Warnings are the decisions made by the clock's warning timers. Entries of a bypassed ticket start no
  clocks. A breach's reason is the recorded breach decision's reason ("L1 -> L2: breach of acknowledge"),
  else "met after the target" / "ran out without a milestone" (computed, no breach recorded).
- **Time in each level** (`time_in_level`): from a level entry to the ticket's next entry, or to the
  resolve milestone met at that entry, wall-clock; a stay still running is counted as open.
- **Incidents** (`incidents`): a ticket's first entry into an incident level (by default the third level
  of the matrix and above: L3/L4 in the example) until its first resolve milestone after it.
- **CSAT around an incident** (`csat_around_incidents`): for the incident ticket's organization (its
  requester when it has none), the `csat` ratings in a window (default 30 days) before the incident
  started versus after it was resolved: [start - window, start) and [resolved, resolved + window].
  Ratings are Zendesk satisfaction ratings and JSM request feedback as the connectors report them
  (`Ticket.satisfaction`), normalised to 0..1 (good = 1, bad = 0, 1..5 scaled).
- **CSAT escalated vs never escalated** (`csat_before_after_escalation`): `csat.escalated` says whether
  the ticket had been escalated above its first level when the rating arrived.
- **Time to incident commander assigned** (`time_to_role`): `milestones` rows `role:<role>` (the commander
  role: `incident.commander_role`, default incident_commander), recorded once per level entry when a pass
  first sees the role filled, at the field's vendor change time (else the ticket's `updated_at`), from
  entering the level; wall-clock. Entries whose role is still empty are not counted.
- **Hand-set levels entered without required data** and **bypass hits per rule**: `decisions.decision`
  `entered_without` / `bypass_rule`.

Percentiles are **nearest-rank**: the p-th percentile of n values is the smallest value with at least p %
of the values at or below it, `sorted(values)[ceil(p / 100 * n) - 1]`; it is always one of the observed
values (p50 of 10, 20, 30, 40 is 20; p90 is 40).

Dry run is kept apart everywhere: `decisions`, `milestones` and `csat` each carry `dry_run` (set from the
pass that wrote the row; rows from before migration 0004 read as live). Every result row has a `dry_run`
field and live and dry-run rows are never summed together. `dry_run=None` returns both, as separate rows;
`dry_run=False` only live rows, `dry_run=True` only dry-run rows. The older `include_dry_run=False` is
`dry_run=False`.

Windows are half-open, `[since, until)`, on the time named per metric above; all times are aware UTC.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Sequence

from sqlalchemy import func, null, select

from integration.calendar import business_seconds_between
from integration.clocks import level_calendar
from integration.engine.compile import MANUAL
from integration.store.db import (
    CsatRow,
    Database,
    DecisionRow,
    MilestoneRow,
    TicketStateRow,
    TimerRow,
)
from matrix_config.schema import CLOCKS, Calendar, Matrix

PERCENTILE_METHOD = "nearest-rank"
COUNTED_STATUSES = ("applied", "recovered", "dry_run", "noop")
ENTRY_KINDS = ("placed", "moved_up", "set_by_hand")  # the entries that are escalations
DEFAULT_CSAT_WINDOW = timedelta(days=30)


# ------------------------------------------------------------------------------------ helpers
def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (see the module docstring). `values` must not be empty."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _spread(values: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    if not values:
        return None, None, None
    return percentile(values, 50), percentile(values, 90), max(values)


def _dry_filter(include_dry_run: bool, dry_run: bool | None) -> bool | None:
    """The one dry-run selector: None = both (as separate rows), False = live only, True = dry run only."""
    if not include_dry_run:
        return False
    return dry_run


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _in_window(moment: datetime, since: datetime | None, until: datetime | None) -> bool:
    return (since is None or moment >= since) and (until is None or moment < until)


def _decision_json(value: Any) -> dict[str, Any]:
    if isinstance(value, str):  # JSON read back as text by a raw query on some drivers
        return json.loads(value)
    return value or {}


def _iso_week(moment: datetime) -> str:
    year, week, _ = moment.astimezone(timezone.utc).isocalendar()
    return f"{year}-W{week:02d}"


def _sort_key(*parts: Any) -> tuple:
    return tuple((p is None, p if p is not None else "") for p in parts)


def _calendar_for(matrix: Matrix | None, level_id: str, calendar_name: str | None = None) -> tuple[Calendar | None, str]:
    """The calendar a level's clocks count (a recorded calendar name wins), and its name ("24x7": none)."""
    if matrix is None:
        return None, "24x7"
    if calendar_name:
        calendar = matrix.calendars.get(calendar_name)
        return calendar, calendar_name if calendar else "24x7"
    try:
        level = matrix.level(level_id)
    except KeyError:
        return None, "24x7"
    name = level.calendar or matrix.clocks.calendar
    calendar = level_calendar(matrix, level)
    return calendar, name if calendar else "24x7"


# ------------------------------------------------------------------------------------ level entries
@dataclass(frozen=True)
class LevelEntry:
    """One entry into a level, from `decisions`."""

    decision_id: int
    vendor: str
    ticket_id: str
    level: str
    from_level: str | None
    kind: str  # placed | moved_up | set_by_hand | moved_down | same
    issue_type: str | None
    organization: str | None
    entered_at: datetime
    dry_run: bool
    bypassed: bool
    decision: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)


def _entry_kind(direction: str | None, rule_id: str | None) -> str:
    if direction == "down":
        return "moved_down"
    if direction == "same":
        return "same"
    if rule_id == MANUAL:
        return "set_by_hand"
    return "placed" if direction == "placed" else "moved_up"


def level_entries(db: Database, *, dry_run: bool | None = None, since: datetime | None = None,
                  until: datetime | None = None) -> list[LevelEntry]:
    """Every recorded entry into a level whose entry time is in [since, until), per ticket in time order."""
    query = (
        select(DecisionRow.id, DecisionRow.vendor, DecisionRow.ticket_id, DecisionRow.from_level,
               DecisionRow.to_level, DecisionRow.direction, DecisionRow.rule_id, DecisionRow.issue_type,
               DecisionRow.decided_at, DecisionRow.dry_run, DecisionRow.decision, DecisionRow.state_after,
               TicketStateRow.organization)
        .outerjoin(TicketStateRow, (TicketStateRow.vendor == DecisionRow.vendor)
                   & (TicketStateRow.ticket_id == DecisionRow.ticket_id))
        .where(DecisionRow.to_level.is_not(None), DecisionRow.status.in_(COUNTED_STATUSES))
        .order_by(DecisionRow.vendor, DecisionRow.ticket_id, DecisionRow.decided_at, DecisionRow.id)
    )
    if dry_run is not None:
        query = query.where(DecisionRow.dry_run.is_(dry_run))
    if since is not None:  # an entry is never later than its decision: decided_at >= entered_at >= since
        query = query.where(DecisionRow.decided_at >= since)
    entries = []
    with db.engine.connect() as conn:
        for row in conn.execute(query):
            decision = _decision_json(row.decision)
            state_after = _decision_json(row.state_after)
            entered_raw = decision.get("entered_at")
            entered_at = _aware(datetime.fromisoformat(entered_raw)) if entered_raw else row.decided_at
            if not _in_window(entered_at, since, until):
                continue
            entries.append(LevelEntry(
                decision_id=row.id, vendor=row.vendor, ticket_id=row.ticket_id, level=row.to_level,
                from_level=row.from_level, kind=_entry_kind(row.direction, row.rule_id), issue_type=row.issue_type,
                organization=row.organization, entered_at=entered_at, dry_run=bool(row.dry_run),
                bypassed=bool(state_after.get("bypassed")), decision=decision,
            ))
    return entries


@dataclass(frozen=True)
class EscalationCount:
    level: str
    issue_type: str | None
    escalations: int  # entries into this level: placed + moved_up + set_by_hand
    tickets: int  # distinct tickets among them
    placed: int = 0  # a new ticket placed at this level (a rule's placement straight at L3 counts here)
    moved_up: int = 0  # an automatic move up (rule, breach)
    set_by_hand: int = 0  # a person set the level
    organization: str | None = None  # when grouped by organization
    week: str | None = None  # ISO week ("2026-W49") when grouped by week
    dry_run: bool = False


GROUPINGS = ("issue_type", "organization", "week")


def escalation_frequency(db: Database, *, by: Sequence[str] = ("issue_type",), include_dry_run: bool = True,
                         dry_run: bool | None = None, since: datetime | None = None,
                         until: datetime | None = None) -> list[EscalationCount]:
    """Entries into each level (placed, moved up, set by hand), per level and the `by` groupings
    (`issue_type`, `organization`, `week`), entry time in [since, until). Hand-made moves down are entries
    but not escalations and are not counted here."""
    unknown = set(by) - set(GROUPINGS)
    if unknown:
        raise ValueError(f"cannot group escalations by {', '.join(sorted(unknown))}; choose from {', '.join(GROUPINGS)}")
    counts: dict[tuple, dict[str, int]] = defaultdict(lambda: dict.fromkeys(ENTRY_KINDS, 0))
    tickets: dict[tuple, set[str]] = defaultdict(set)
    for entry in level_entries(db, dry_run=_dry_filter(include_dry_run, dry_run), since=since, until=until):
        if entry.kind not in ENTRY_KINDS:
            continue
        key = (entry.level,
               entry.issue_type if "issue_type" in by else None,
               entry.organization if "organization" in by else None,
               _iso_week(entry.entered_at) if "week" in by else None,
               entry.dry_run)
        counts[key][entry.kind] += 1
        tickets[key].add(f"{entry.vendor}:{entry.ticket_id}")
    return [
        EscalationCount(level=key[0], issue_type=key[1], escalations=sum(counts[key].values()),
                        tickets=len(tickets[key]), placed=counts[key]["placed"], moved_up=counts[key]["moved_up"],
                        set_by_hand=counts[key]["set_by_hand"], organization=key[2], week=key[3], dry_run=key[4])
        for key in sorted(counts, key=lambda k: _sort_key(*k))
    ]


# ------------------------------------------------------------------------------------ time to milestone
@dataclass(frozen=True)
class MilestoneStat:
    level: str
    issue_type: str | None
    clock: str
    count: int
    avg_seconds: float
    min_seconds: float
    max_seconds: float
    dry_run: bool = False


def time_to_milestone(db: Database, clock: str, *, by_issue_type: bool = False, include_dry_run: bool = True,
                      since: datetime | None = None) -> list[MilestoneStat]:
    """Wall-clock seconds from entering a level to meeting `clock` there: count, average, min, max per
    level (and issue type), live and dry-run apart, for levels entered at or after `since`.
    `clock_times` gives the percentiles and business time."""
    group = [MilestoneRow.level, MilestoneRow.dry_run] + ([MilestoneRow.issue_type] if by_issue_type else [])
    query = (
        select(MilestoneRow.level, MilestoneRow.issue_type if by_issue_type else null(), MilestoneRow.dry_run,
               func.count(), func.avg(MilestoneRow.elapsed_seconds), func.min(MilestoneRow.elapsed_seconds),
               func.max(MilestoneRow.elapsed_seconds))
        .where(MilestoneRow.clock == clock)
        .group_by(*group)
    )
    if not include_dry_run:
        query = query.where(MilestoneRow.dry_run.is_(False))
    if since is not None:
        query = query.where(MilestoneRow.entered_level_at >= since)
    with db.engine.connect() as conn:
        rows = conn.execute(query).all()
    stats = [MilestoneStat(r[0], r[1], clock, int(r[3]), float(r[4]), float(r[5]), float(r[6]), bool(r[2]))
             for r in rows]
    return sorted(stats, key=lambda s: _sort_key(s.level, s.issue_type, s.dry_run))


def time_to_acknowledge(db: Database, **kwargs: Any) -> list[MilestoneStat]:
    return time_to_milestone(db, "acknowledge", **kwargs)


def time_to_diagnose(db: Database, **kwargs: Any) -> list[MilestoneStat]:
    return time_to_milestone(db, "diagnose", **kwargs)


@dataclass(frozen=True)
class ClockTime:
    """Time from entering `level` to meeting `clock` there: nearest-rank p50 / p90 and max, in seconds."""

    level: str
    issue_type: str | None
    clock: str
    count: int
    wall_p50_seconds: float
    wall_p90_seconds: float
    wall_max_seconds: float
    business_p50_seconds: float | None  # None: no matrix given, business time unknown
    business_p90_seconds: float | None
    business_max_seconds: float | None
    calendar: str | None  # the level's calendar in `matrix` ("24x7": none), None without a matrix
    dry_run: bool = False


def clock_times(db: Database, matrix: Matrix | None = None, *, clocks: Sequence[str] = CLOCKS,
                by_issue_type: bool = True, dry_run: bool | None = None, since: datetime | None = None,
                until: datetime | None = None) -> list[ClockTime]:
    """Time to acknowledge / diagnose / interim fix / resolve per level (and issue type), levels entered in
    [since, until): wall-clock and business time on the level's calendar in `matrix`."""
    query = select(MilestoneRow.level, MilestoneRow.issue_type, MilestoneRow.clock, MilestoneRow.entered_level_at,
                   MilestoneRow.met_at, MilestoneRow.elapsed_seconds, MilestoneRow.dry_run).where(
        MilestoneRow.clock.in_(list(clocks)))
    if dry_run is not None:
        query = query.where(MilestoneRow.dry_run.is_(dry_run))
    if since is not None:
        query = query.where(MilestoneRow.entered_level_at >= since)
    if until is not None:
        query = query.where(MilestoneRow.entered_level_at < until)
    wall: dict[tuple, list[float]] = defaultdict(list)
    business: dict[tuple, list[float]] = defaultdict(list)
    with db.engine.connect() as conn:
        for row in conn.execute(query):
            key = (row.level, row.issue_type if by_issue_type else None, row.clock, bool(row.dry_run))
            wall[key].append(float(row.elapsed_seconds))
            if matrix is not None:
                calendar, _ = _calendar_for(matrix, row.level)
                business[key].append(max(business_seconds_between(calendar, row.entered_level_at, row.met_at), 0.0))
    order = {name: i for i, name in enumerate(CLOCKS)}
    result = []
    for key in sorted(wall, key=lambda k: (_sort_key(k[0], k[1]), order.get(k[2], 99), k[3])):
        level, issue_type, clock, is_dry = key
        b50, b90, bmax = _spread(business[key]) if matrix is not None else (None, None, None)
        w50, w90, wmax = _spread(wall[key])
        result.append(ClockTime(level, issue_type, clock, len(wall[key]), w50, w90, wmax, b50, b90, bmax,
                                _calendar_for(matrix, level)[1] if matrix is not None else None, is_dry))
    return result


# ------------------------------------------------------------------------------------ roles filled
@dataclass(frozen=True)
class RoleTime:
    """Time from entering `level` to `role` being filled there (minutes to IC assigned for the commander):
    nearest-rank p50 / p90 and max, wall-clock seconds, over the level entries whose role was filled."""

    level: str
    role: str
    count: int
    p50_seconds: float
    p90_seconds: float
    max_seconds: float
    dry_run: bool = False


def time_to_role(db: Database, role: str = "incident_commander", *, dry_run: bool | None = None,
                 since: datetime | None = None, until: datetime | None = None) -> list[RoleTime]:
    """Time to `role` assigned per level, levels entered in [since, until): the `role:<name>` milestone rows
    the pipeline records once per level entry when it first sees the role filled (at the field's vendor
    change time, else the ticket's `updated_at`; a role filled before the entry counts as 0). Entries whose
    role is still empty are not counted."""
    from integration.incident import role_milestone

    query = select(MilestoneRow.level, MilestoneRow.elapsed_seconds, MilestoneRow.dry_run).where(
        MilestoneRow.clock == role_milestone(role))
    if dry_run is not None:
        query = query.where(MilestoneRow.dry_run.is_(dry_run))
    if since is not None:
        query = query.where(MilestoneRow.entered_level_at >= since)
    if until is not None:
        query = query.where(MilestoneRow.entered_level_at < until)
    values: dict[tuple, list[float]] = defaultdict(list)
    with db.engine.connect() as conn:
        for row in conn.execute(query):
            values[(row.level, bool(row.dry_run))].append(float(row.elapsed_seconds))
    result = []
    for (level, is_dry), seconds in sorted(values.items(), key=lambda kv: _sort_key(*kv[0])):
        p50, p90, most = _spread(seconds)
        result.append(RoleTime(level, role, len(seconds), p50, p90, most, is_dry))
    return result


# ------------------------------------------------------------------------------------ SLA attainment
@dataclass(frozen=True)
class ClockOutcome:
    """One clock one level entry started, and how it ended."""

    vendor: str
    ticket_id: str
    level: str
    clock: str
    issue_type: str | None
    entered_at: datetime
    target_seconds: float
    outcome: str  # met | breached | open
    business_seconds: float | None  # to the milestone, or (no milestone) to the end of the stay / now
    breach_reason: str | None
    warnings: int
    dry_run: bool


@dataclass(frozen=True)
class Attainment:
    level: str
    clock: str
    issue_type: str | None
    clocks: int  # started
    met: int
    breached: int
    open: int
    warnings: int  # warning notes the clock's timers sent
    attainment: float | None  # met / (met + breached); None when none finished
    dry_run: bool = False


@dataclass(frozen=True)
class BreachReason:
    level: str
    clock: str
    reason: str
    breaches: int
    dry_run: bool = False


def _timer_decisions(db: Database, dry_run: bool | None,
                     since: datetime | None = None) -> dict[tuple, list[tuple[datetime, str, str]]]:
    """(vendor, ticket, level, clock) -> [(decided_at, timer kind, reason)] for decisions made by warning and
    breach timers (`decisions.trigger = "timer:<id>"`)."""
    query = select(DecisionRow.vendor, DecisionRow.ticket_id, DecisionRow.trigger, DecisionRow.decided_at,
                   DecisionRow.reason).where(DecisionRow.trigger.like("timer:%"),
                                             DecisionRow.status.in_(COUNTED_STATUSES))
    if dry_run is not None:
        query = query.where(DecisionRow.dry_run.is_(dry_run))
    if since is not None:
        query = query.where(DecisionRow.decided_at >= since)
    with db.engine.connect() as conn:
        decisions = conn.execute(query).all()
        ids = {int(d.trigger.split(":", 1)[1]) for d in decisions if d.trigger.split(":", 1)[1].isdigit()}
        timers = {}
        for chunk in [sorted(ids)[i:i + 500] for i in range(0, len(ids), 500)]:
            for t in conn.execute(select(TimerRow.id, TimerRow.kind, TimerRow.level, TimerRow.clock)
                                  .where(TimerRow.id.in_(chunk))):
                timers[t.id] = t
    found: dict[tuple, list[tuple[datetime, str, str]]] = defaultdict(list)
    for d in decisions:
        timer_id = d.trigger.split(":", 1)[1]
        timer = timers.get(int(timer_id)) if timer_id.isdigit() else None
        if timer is None or timer.kind not in ("warning", "breach"):
            continue
        found[(d.vendor, d.ticket_id, timer.level, timer.clock)].append((d.decided_at, timer.kind, d.reason))
    return found


def clock_outcomes(db: Database, matrix: Matrix, *, dry_run: bool | None = None, since: datetime | None = None,
                   until: datetime | None = None, now: datetime | None = None) -> list[ClockOutcome]:
    """Each SLA clock started by a level entry in [since, until), and whether it was met, breached or is
    open (definitions in the module docstring)."""
    horizon = now or datetime.now(timezone.utc)  # outcomes as known now, for clocks started in the window
    # The next entry, whenever it came (also after `until`), ends a stay; it is never before `since`.
    every_entry = level_entries(db, dry_run=dry_run, since=since)
    entries = [e for e in every_entry if _in_window(e.entered_at, since, until)]
    stay_end = _stay_ends(every_entry)
    met = _milestones(db, dry_run, since)
    timer_decisions = _timer_decisions(db, dry_run, since)
    outcomes = []
    for entry in entries:
        if entry.bypassed:
            continue
        started = [(c["clock"], float(c["target_seconds"]), c.get("calendar"))
                   for c in entry.decision.get("start_clocks") or () if c.get("clock") in CLOCKS]
        met_on_entry = set(entry.decision.get("milestones") or {}) - {c for c, _, _ in started}
        try:
            level_sla = matrix.level(entry.level).sla
        except KeyError:
            level_sla = None
        for clock in sorted(met_on_entry):
            target = getattr(level_sla, clock, None) if level_sla is not None else None
            if clock in CLOCKS and target is not None:
                started.append((clock, target.total_seconds(), None))
        end = stay_end.get(entry.decision_id)
        for clock, target, calendar_name in started:
            calendar, _ = _calendar_for(matrix, entry.level, calendar_name)
            key = (entry.vendor, entry.ticket_id, entry.level, clock)
            fired = [(at, kind, reason) for at, kind, reason in timer_decisions.get(key, ())
                     if at >= entry.entered_at and (end is None or at <= end)]
            recorded = [reason for _, kind, reason in fired if kind == "breach"]
            warnings = sum(1 for _, kind, _ in fired if kind == "warning")
            met_at = met.get((entry.vendor, entry.ticket_id, entry.level, entry.entered_at, clock))
            if clock in met_on_entry:
                met_at = entry.entered_at
            resolved_at = met.get((entry.vendor, entry.ticket_id, entry.level, entry.entered_at, "resolve"))
            stop = met_at or min(t for t in (end, resolved_at, horizon) if t is not None)
            elapsed = max(business_seconds_between(calendar, entry.entered_at, stop), 0.0)
            if recorded:
                outcome, reason = "breached", recorded[0]
            elif met_at is not None:
                late = elapsed > target
                outcome, reason = ("breached", "met after the target") if late else ("met", None)
            elif elapsed > target:
                outcome, reason = "breached", "ran out without a milestone"
            else:
                outcome, reason = "open", None
            outcomes.append(ClockOutcome(entry.vendor, entry.ticket_id, entry.level, clock, entry.issue_type,
                                         entry.entered_at, target, outcome, elapsed, reason, warnings, entry.dry_run))
    return outcomes


def _stay_ends(entries: Iterable[LevelEntry]) -> dict[int, datetime]:
    """Decision id of an entry -> when the ticket's next entry (any level) happened."""
    ends: dict[int, datetime] = {}
    by_ticket: dict[tuple, list[LevelEntry]] = defaultdict(list)
    for entry in entries:
        by_ticket[(entry.vendor, entry.ticket_id, entry.dry_run)].append(entry)
    for stays in by_ticket.values():
        stays.sort(key=lambda e: (e.entered_at, e.decision_id))
        for current, following in zip(stays, stays[1:]):
            ends[current.decision_id] = following.entered_at
    return ends


def _milestones(db: Database, dry_run: bool | None, since: datetime | None = None) -> dict[tuple, datetime]:
    """(vendor, ticket, level, entered_level_at, clock) -> met_at, for levels entered at or after `since`."""
    query = select(MilestoneRow.vendor, MilestoneRow.ticket_id, MilestoneRow.level, MilestoneRow.entered_level_at,
                   MilestoneRow.clock, MilestoneRow.met_at)
    if dry_run is not None:
        query = query.where(MilestoneRow.dry_run.is_(dry_run))
    if since is not None:
        query = query.where(MilestoneRow.entered_level_at >= since)
    with db.engine.connect() as conn:
        return {(r.vendor, r.ticket_id, r.level, r.entered_level_at, r.clock): r.met_at for r in conn.execute(query)}


def sla_attainment(db: Database, matrix: Matrix, *, dry_run: bool | None = None, since: datetime | None = None,
                   until: datetime | None = None, now: datetime | None = None) -> list[Attainment]:
    """Share of clocks met within target per level x clock x issue type, with breaches, open clocks and
    warnings counted, for level entries in [since, until)."""
    return attainment_of(clock_outcomes(db, matrix, dry_run=dry_run, since=since, until=until, now=now))


def attainment_of(outcomes: Iterable[ClockOutcome]) -> list[Attainment]:
    groups: dict[tuple, list[ClockOutcome]] = defaultdict(list)
    for outcome in outcomes:
        groups[(outcome.level, outcome.clock, outcome.issue_type, outcome.dry_run)].append(outcome)
    order = {name: i for i, name in enumerate(CLOCKS)}
    result = []
    for key in sorted(groups, key=lambda k: (_sort_key(k[0]), order[k[1]], _sort_key(k[2]), k[3])):
        items = groups[key]
        met = sum(1 for o in items if o.outcome == "met")
        breached = sum(1 for o in items if o.outcome == "breached")
        result.append(Attainment(level=key[0], clock=key[1], issue_type=key[2], clocks=len(items), met=met,
                                 breached=breached, open=len(items) - met - breached,
                                 warnings=sum(o.warnings for o in items),
                                 attainment=met / (met + breached) if met + breached else None, dry_run=key[3]))
    return result


def breach_reasons(db: Database, matrix: Matrix, *, dry_run: bool | None = None, since: datetime | None = None,
                   until: datetime | None = None, now: datetime | None = None) -> list[BreachReason]:
    """Breaches per level, clock and reason, most frequent first."""
    return breach_reasons_of(clock_outcomes(db, matrix, dry_run=dry_run, since=since, until=until, now=now))


def breach_reasons_of(outcomes: Iterable[ClockOutcome]) -> list[BreachReason]:
    counts: dict[tuple, int] = defaultdict(int)
    for outcome in outcomes:
        if outcome.outcome == "breached":
            counts[(outcome.level, outcome.clock, outcome.breach_reason or "", outcome.dry_run)] += 1
    return [BreachReason(level, clock, reason, n, is_dry)
            for (level, clock, reason, is_dry), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


# ------------------------------------------------------------------------------------ time in level
@dataclass(frozen=True)
class LevelTime:
    level: str
    stays: int  # finished stays (the ticket moved on, or was resolved at that entry)
    open: int  # stays still running at `now`
    p50_seconds: float | None  # wall-clock, finished stays
    p90_seconds: float | None
    max_seconds: float | None
    dry_run: bool = False


def time_in_level(db: Database, *, dry_run: bool | None = None, since: datetime | None = None,
                  until: datetime | None = None, now: datetime | None = None) -> list[LevelTime]:
    """Wall-clock time from each level entry in [since, until) to the ticket's next entry or the resolve
    milestone met at that entry, whichever came first; a stay that had ended by neither at `now` is open."""
    horizon = now or datetime.now(timezone.utc)
    every_entry = level_entries(db, dry_run=dry_run, since=since)
    ends = _stay_ends(every_entry)
    met = _milestones(db, dry_run, since)
    durations: dict[tuple, list[float]] = defaultdict(list)
    open_stays: dict[tuple, int] = defaultdict(int)
    for entry in every_entry:
        if not _in_window(entry.entered_at, since, until):
            continue
        candidates = [t for t in (ends.get(entry.decision_id),
                                  met.get((entry.vendor, entry.ticket_id, entry.level, entry.entered_at, "resolve")))
                      if t is not None and t <= horizon]
        key = (entry.level, entry.dry_run)
        if candidates:
            durations[key].append((min(candidates) - entry.entered_at).total_seconds())
        else:
            open_stays[key] += 1
            durations.setdefault(key, [])
    result = []
    for key in sorted(set(durations) | set(open_stays), key=lambda k: (k[0], k[1])):
        p50, p90, top = _spread(durations[key])
        result.append(LevelTime(key[0], len(durations[key]), open_stays[key], p50, p90, top, key[1]))
    return result


# ------------------------------------------------------------------------------------ incidents
def default_incident_levels(matrix: Matrix) -> tuple[str, ...]:
    """The third level and above (L3/L4 in the example matrix); the top level of a smaller matrix."""
    ids = tuple(level.id for level in matrix.levels)
    return ids[2:] if len(ids) > 2 else ids[-1:]


@dataclass(frozen=True)
class Incident:
    vendor: str
    ticket_id: str
    level: str  # the highest incident level the ticket reached
    entered_as: str  # how it first reached an incident level: placed | moved_up | set_by_hand
    issue_type: str | None
    organization: str | None
    requester: str | None
    started_at: datetime
    resolved_at: datetime | None  # first resolve milestone after the start; None: still open
    duration_seconds: float | None  # started -> resolved, wall-clock; None while open
    dry_run: bool = False


def incidents(db: Database, incident_levels: Sequence[str], *, dry_run: bool | None = None,
              since: datetime | None = None, until: datetime | None = None) -> list[Incident]:
    """Tickets that entered an incident level, whose incident overlaps [since, until): started before
    `until` and not resolved before `since`. Ordered by start."""
    rank = {level: i for i, level in enumerate(incident_levels)}
    firsts: dict[tuple, LevelEntry] = {}
    top: dict[tuple, str] = {}
    for entry in level_entries(db, dry_run=dry_run, until=until):
        if entry.level not in rank:
            continue
        key = (entry.vendor, entry.ticket_id, entry.dry_run)
        firsts.setdefault(key, entry)
        if key not in top or rank[entry.level] > rank[top[key]]:
            top[key] = entry.level
    if not firsts:
        return []
    resolves: dict[tuple, list[datetime]] = defaultdict(list)
    people: dict[tuple, tuple[str | None, str | None]] = {}
    with db.engine.connect() as conn:
        for r in conn.execute(select(MilestoneRow.vendor, MilestoneRow.ticket_id, MilestoneRow.met_at,
                                     MilestoneRow.dry_run).where(MilestoneRow.clock == "resolve")):
            resolves[(r.vendor, r.ticket_id, bool(r.dry_run))].append(r.met_at)
        for r in conn.execute(select(TicketStateRow.vendor, TicketStateRow.ticket_id, TicketStateRow.organization,
                                     TicketStateRow.requester)):
            people[(r.vendor, r.ticket_id)] = (r.organization, r.requester)
    result = []
    for key, first in firsts.items():
        resolved = min((t for t in resolves.get(key, ()) if t >= first.entered_at), default=None)
        if since is not None and resolved is not None and resolved < since:
            continue
        organization, requester = people.get((first.vendor, first.ticket_id), (None, None))
        result.append(Incident(first.vendor, first.ticket_id, top[key], first.kind if first.kind in ENTRY_KINDS
                               else "moved_up", first.issue_type, organization, requester, first.entered_at, resolved,
                               (resolved - first.entered_at).total_seconds() if resolved else None, first.dry_run))
    return sorted(result, key=lambda i: (i.started_at, i.vendor, i.ticket_id))


# ------------------------------------------------------------------------------------ CSAT
@dataclass(frozen=True)
class IncidentCsat:
    vendor: str
    ticket_id: str
    customer: str  # "organization <name>" or "requester <id>"
    started_at: datetime
    resolved_at: datetime | None
    before_ratings: int
    before_score: float | None  # average 0..1 of the ratings in [start - window, start)
    after_ratings: int
    after_score: float | None  # average 0..1 of the ratings in [resolved, resolved + window]; None: none yet
    dry_run: bool = False


def csat_around_incidents(db: Database, incident_levels: Sequence[str], *, window: timedelta = DEFAULT_CSAT_WINDOW,
                          dry_run: bool | None = None, since: datetime | None = None,
                          until: datetime | None = None) -> list[IncidentCsat]:
    """For each incident (see `incidents`), the ratings of the affected organization (or the requester,
    when the ticket has no organization) in `window` before it started and after it was resolved.
    A rating counts for an incident when it has the incident's dry-run flag. Incidents with neither an
    organization nor a requester recorded (rows from before migration 0004) are left out."""
    return _csat_around(db, incidents(db, incident_levels, dry_run=dry_run, since=since, until=until), window, dry_run)


def _csat_around(db: Database, found: list[Incident], window: timedelta, dry_run: bool | None) -> list[IncidentCsat]:
    if not found:
        return []
    query = select(CsatRow.organization, CsatRow.requester, CsatRow.rated_at, CsatRow.score, CsatRow.dry_run).where(
        CsatRow.rated_at >= min(i.started_at for i in found) - window)
    if dry_run is not None:
        query = query.where(CsatRow.dry_run.is_(dry_run))
    by_customer: dict[tuple, list[Any]] = defaultdict(list)
    with db.engine.connect() as conn:
        for rating in conn.execute(query):
            customer = (f"organization {rating.organization}" if rating.organization
                        else f"requester {rating.requester}" if rating.requester else None)
            by_customer[(customer, bool(rating.dry_run))].append(rating)
    result = []
    for incident in found:
        if incident.organization:
            customer = f"organization {incident.organization}"
        elif incident.requester:
            customer = f"requester {incident.requester}"
        else:
            continue
        mine = by_customer.get((customer, incident.dry_run), [])
        before = [r.score for r in mine if incident.started_at - window <= r.rated_at < incident.started_at]
        after = ([r.score for r in mine if incident.resolved_at <= r.rated_at <= incident.resolved_at + window]
                 if incident.resolved_at else [])
        result.append(IncidentCsat(incident.vendor, incident.ticket_id, customer, incident.started_at,
                                   incident.resolved_at, len(before), sum(before) / len(before) if before else None,
                                   len(after), sum(after) / len(after) if after else None, incident.dry_run))
    return result


@dataclass(frozen=True)
class CsatSplit:
    escalated: bool
    ratings: int
    avg_score: float  # 0..1 (good = 1, bad = 0; 1..5 scaled)
    dry_run: bool = False


def csat_before_after_escalation(db: Database, *, since: datetime | None = None, until: datetime | None = None,
                                 include_dry_run: bool = True, dry_run: bool | None = None) -> list[CsatSplit]:
    """Ratings split by whether the ticket had been escalated above its first level when rated (rated in
    [since, until)), live and dry-run apart."""
    query = (select(CsatRow.escalated, CsatRow.dry_run, func.count(), func.avg(CsatRow.score))
             .group_by(CsatRow.escalated, CsatRow.dry_run))
    selected = _dry_filter(include_dry_run, dry_run)
    if selected is not None:
        query = query.where(CsatRow.dry_run.is_(selected))
    if since is not None:
        query = query.where(CsatRow.rated_at >= since)
    if until is not None:
        query = query.where(CsatRow.rated_at < until)
    with db.engine.connect() as conn:
        rows = conn.execute(query).all()
    return sorted((CsatSplit(bool(r[0]), int(r[2]), float(r[3]), bool(r[1])) for r in rows),
                  key=lambda s: (s.dry_run, s.escalated))


# ------------------------------------------------------------------------------------ data gate, bypass
@dataclass(frozen=True)
class EnteredWithoutData:
    level: str
    attribute: str  # a required_data attribute that was missing when a person set the level
    entries: int
    tickets: int
    dry_run: bool = False


def entered_without_required_data(db: Database, *, include_dry_run: bool = True, dry_run: bool | None = None,
                                  since: datetime | None = None,
                                  until: datetime | None = None) -> list[EnteredWithoutData]:
    """Hand-set levels entered without their required data (gate `manual: flag`), per level and missing
    attribute: decisions whose `entered_without` lists it, decided in [since, until). The attribute list
    lives in the decision's JSON, so SQL picks the level entries and Python reads the list."""
    query = select(DecisionRow.to_level, DecisionRow.vendor, DecisionRow.ticket_id, DecisionRow.decision,
                   DecisionRow.dry_run).where(DecisionRow.to_level.is_not(None),
                                              DecisionRow.status.in_(COUNTED_STATUSES))
    selected = _dry_filter(include_dry_run, dry_run)
    if selected is not None:
        query = query.where(DecisionRow.dry_run.is_(selected))
    if since is not None:
        query = query.where(DecisionRow.decided_at >= since)
    if until is not None:
        query = query.where(DecisionRow.decided_at < until)
    entries: dict[tuple, int] = defaultdict(int)
    tickets: dict[tuple, set[str]] = defaultdict(set)
    with db.engine.connect() as conn:
        for level, vendor, ticket_id, decision, is_dry in conn.execute(query):
            for attribute in _decision_json(decision).get("entered_without") or ():
                key = (level, attribute, bool(is_dry))
                entries[key] += 1
                tickets[key].add(f"{vendor}:{ticket_id}")
    return [EnteredWithoutData(level, attribute, entries[key], len(tickets[key]), is_dry)
            for key in sorted(entries) for level, attribute, is_dry in [key]]


@dataclass(frozen=True)
class BypassCount:
    rule: str
    hits: int  # times a ticket became bypassed by this rule (new, or its facts changed to match)
    tickets: int
    dry_run: bool = False


def bypass_hits(db: Database, *, include_dry_run: bool = True, dry_run: bool | None = None,
                since: datetime | None = None, until: datetime | None = None) -> list[BypassCount]:
    """Bypass hits per rule: decisions whose `bypass_rule` names it, decided in [since, until)."""
    rule = DecisionRow.decision["bypass_rule"].as_string()
    query = (
        select(rule, DecisionRow.dry_run, func.count(),
               func.count(func.distinct(DecisionRow.vendor + ":" + DecisionRow.ticket_id)))
        .where(rule.is_not(None), DecisionRow.status.in_(COUNTED_STATUSES))
        .group_by(rule, DecisionRow.dry_run)
    )
    selected = _dry_filter(include_dry_run, dry_run)
    if selected is not None:
        query = query.where(DecisionRow.dry_run.is_(selected))
    if since is not None:
        query = query.where(DecisionRow.decided_at >= since)
    if until is not None:
        query = query.where(DecisionRow.decided_at < until)
    with db.engine.connect() as conn:
        rows = conn.execute(query).all()
    return sorted((BypassCount(r[0], int(r[2]), int(r[3]), bool(r[1])) for r in rows), key=lambda c: (c.rule, c.dry_run))


# ------------------------------------------------------------------------------------ the weekly report
@dataclass(frozen=True)
class Report:
    """What `escalation report` renders: the guide's four metrics (time to acknowledge, time to diagnose,
    escalation frequency by level, CSAT before/after an incident), SLA attainment, the top breach reasons,
    bypass counts and the incidents at the incident levels, for [since, until), live or dry run only."""

    since: datetime
    until: datetime
    dry_run: bool
    matrix_name: str
    matrix_version: str
    incident_levels: tuple[str, ...]
    csat_window_days: float
    percentile_method: str
    time_to_acknowledge: list[ClockTime]
    time_to_diagnose: list[ClockTime]
    escalations_by_level: list[EscalationCount]
    escalations_by_organization: list[EscalationCount]
    escalations_by_week: list[EscalationCount]
    csat_around_incidents: list[IncidentCsat]
    csat_before_incidents: float | None  # all ratings before, pooled
    csat_after_incidents: float | None
    csat_by_escalation: list[CsatSplit]
    attainment: list[Attainment]
    top_breach_reasons: list[BreachReason]
    bypass_hits: list[BypassCount]
    entered_without_required_data: list[EnteredWithoutData]
    incidents: list[Incident]
    time_in_level: list[LevelTime]
    time_to_incident_commander: list[RoleTime] = field(default_factory=list)


def build_report(db: Database, matrix: Matrix, *, since: datetime, until: datetime, version: str,
                 dry_run: bool = False, incident_levels: Sequence[str] | None = None,
                 csat_window: timedelta = DEFAULT_CSAT_WINDOW, top_reasons: int = 10,
                 now: datetime | None = None) -> Report:
    levels = tuple(incident_levels) if incident_levels else default_incident_levels(matrix)
    unknown = [level for level in levels if level not in {lv.id for lv in matrix.levels}]
    if unknown:
        raise ValueError(f"incident level {', '.join(unknown)} is not a level of matrix {matrix.name!r} "
                         f"(levels: {', '.join(lv.id for lv in matrix.levels)})")
    window = dict(dry_run=dry_run, since=since, until=until)
    found = incidents(db, levels, **window)
    around = _csat_around(db, found, csat_window, dry_run)
    outcomes = clock_outcomes(db, matrix, now=now, **window)
    before = [c.before_score * c.before_ratings for c in around if c.before_ratings]
    after = [c.after_score * c.after_ratings for c in around if c.after_ratings]
    before_n = sum(c.before_ratings for c in around)
    after_n = sum(c.after_ratings for c in around)
    return Report(
        since=since, until=until, dry_run=dry_run, matrix_name=matrix.name, matrix_version=version,
        incident_levels=levels, csat_window_days=csat_window.total_seconds() / 86400,
        percentile_method=PERCENTILE_METHOD,
        time_to_acknowledge=clock_times(db, matrix, clocks=("acknowledge",), **window),
        time_to_diagnose=clock_times(db, matrix, clocks=("diagnose",), **window),
        escalations_by_level=escalation_frequency(db, by=("issue_type",), **window),
        escalations_by_organization=escalation_frequency(db, by=("organization",), **window),
        escalations_by_week=escalation_frequency(db, by=("week",), **window),
        csat_around_incidents=around,
        csat_before_incidents=sum(before) / before_n if before_n else None,
        csat_after_incidents=sum(after) / after_n if after_n else None,
        csat_by_escalation=csat_before_after_escalation(db, **window),
        attainment=attainment_of(outcomes),
        top_breach_reasons=breach_reasons_of(outcomes)[:top_reasons],
        bypass_hits=bypass_hits(db, **window),
        entered_without_required_data=entered_without_required_data(db, **window),
        incidents=found,
        time_in_level=time_in_level(db, now=now, **window),
        time_to_incident_commander=time_to_role(
            db, matrix.incident.commander_role if matrix.incident else "incident_commander", **window),
    )

