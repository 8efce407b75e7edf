"""The metrics the matrix exists for, as plain SQL over the pipeline's tables (SQLite and PostgreSQL).

- time to acknowledge / diagnose / interim fix / resolve per level: `milestones.elapsed_seconds`
  (wall-clock seconds from entering the level to the milestone), grouped by level (and issue type);
- escalation frequency by level and issue type: `decisions` with `direction = 'up'`;
- CSAT before and after escalation: `csat.escalated` says whether the ticket had been escalated above
  its first level when the rating arrived;
- hand-set levels entered without their required data (`decisions.decision.entered_without`) and bypass
  hits per rule (`decisions.decision.bypass_rule`).

Dry run: only the counts from `decisions` (`escalation_frequency`, `entered_without_required_data`,
`bypass_hits`) can tell dry-run from live numbers, because only the `decisions`
table has a `dry_run` column. It counts dry-run decisions by default (what the service would have done);
`include_dry_run=False` leaves out every decision row with `dry_run = true` (`escalation metrics
--live-only`). The `milestones` and `csat` tables have no such column, so `time_to_milestone` /
`time_to_acknowledge` / `time_to_diagnose` and `csat_before_after_escalation` always include tickets
handled in dry run (their milestones are still detected, as the service reads the ticket either way), and
`--live-only` does not change them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text

from integration.store.db import Database, DecisionRow


@dataclass(frozen=True)
class MilestoneStat:
    level: str
    issue_type: str | None
    clock: str
    count: int
    avg_seconds: float
    min_seconds: float
    max_seconds: float


def time_to_milestone(db: Database, clock: str, *, by_issue_type: bool = False,
                      since: datetime | None = None) -> list[MilestoneStat]:
    """Seconds from entering a level to meeting `clock` there, per level (and issue type), for levels
    entered at or after `since`. Dry-run and live tickets alike: `milestones` has no dry-run column."""
    group = "level, issue_type" if by_issue_type else "level"
    select_issue = "issue_type" if by_issue_type else "NULL AS issue_type"
    sql = f"""
        SELECT level, {select_issue}, COUNT(*) AS n, AVG(elapsed_seconds), MIN(elapsed_seconds), MAX(elapsed_seconds)
        FROM milestones
        WHERE clock = :clock {"AND entered_level_at >= :since" if since else ""}
        GROUP BY {group}
        ORDER BY {group}
    """
    with db.engine.connect() as conn:
        rows = conn.execute(text(sql), {"clock": clock, "since": _naive(since)}).all()
    return [MilestoneStat(r[0], r[1], clock, int(r[2]), float(r[3]), float(r[4]), float(r[5])) for r in rows]


def time_to_acknowledge(db: Database, **kwargs: Any) -> list[MilestoneStat]:
    return time_to_milestone(db, "acknowledge", **kwargs)


def time_to_diagnose(db: Database, **kwargs: Any) -> list[MilestoneStat]:
    return time_to_milestone(db, "diagnose", **kwargs)


@dataclass(frozen=True)
class EscalationCount:
    level: str
    issue_type: str | None
    escalations: int  # moves up into this level
    tickets: int  # distinct tickets escalated into it


def escalation_frequency(db: Database, *, include_dry_run: bool = True,
                         since: datetime | None = None) -> list[EscalationCount]:
    """Moves up into each level, per issue type: decisions with direction `up` and status applied,
    recovered (found applied after a crash), dry_run or noop (not failed, conflict, abandoned or
    still applying), decided at or after `since`.
    `include_dry_run=False` leaves out decision rows recorded in dry run (`decisions.dry_run`)."""
    sql = f"""
        SELECT to_level, issue_type, COUNT(*), COUNT(DISTINCT vendor || ':' || ticket_id)
        FROM decisions
        WHERE direction = 'up'
          AND status IN ('applied', 'recovered', 'dry_run', 'noop')
          {"" if include_dry_run else "AND dry_run = :false"}
          {"AND decided_at >= :since" if since else ""}
        GROUP BY to_level, issue_type
        ORDER BY to_level, issue_type
    """
    with db.engine.connect() as conn:
        rows = conn.execute(text(sql), {"false": False, "since": _naive(since)}).all()
    return [EscalationCount(r[0], r[1], int(r[2]), int(r[3])) for r in rows]


@dataclass(frozen=True)
class EnteredWithoutData:
    level: str
    attribute: str  # a required_data attribute that was missing when a person set the level
    entries: int
    tickets: int


_COUNTED_STATUSES = ("applied", "recovered", "dry_run", "noop")


def entered_without_required_data(db: Database, *, include_dry_run: bool = True,
                                  since: datetime | None = None) -> list[EnteredWithoutData]:
    """Hand-set levels entered without their required data (gate `manual: flag`), per level and missing
    attribute: decisions whose `entered_without` lists it, counted like `escalation_frequency` (status,
    `include_dry_run`, `since`). The attribute list lives in the decision's JSON, so SQL picks the level
    entries and Python reads the list."""
    sql = f"""
        SELECT to_level, vendor || ':' || ticket_id, decision
        FROM decisions
        WHERE to_level IS NOT NULL
          AND status IN ('applied', 'recovered', 'dry_run', 'noop')
          {"" if include_dry_run else "AND dry_run = :false"}
          {"AND decided_at >= :since" if since else ""}
    """
    entries: dict[tuple[str, str], int] = {}
    tickets: dict[tuple[str, str], set[str]] = {}
    with db.engine.connect() as conn:
        for level, ticket, decision in conn.execute(text(sql), {"false": False, "since": _naive(since)}):
            if isinstance(decision, str):  # JSON read back as text by a raw query on some drivers
                decision = json.loads(decision)
            for attribute in (decision or {}).get("entered_without") or ():
                key = (level, attribute)
                entries[key] = entries.get(key, 0) + 1
                tickets.setdefault(key, set()).add(ticket)
    return [EnteredWithoutData(level, attribute, entries[(level, attribute)], len(tickets[(level, attribute)]))
            for level, attribute in sorted(entries)]


@dataclass(frozen=True)
class BypassCount:
    rule: str
    hits: int  # times a ticket became bypassed by this rule (new, or its facts changed to match)
    tickets: int


def bypass_hits(db: Database, *, include_dry_run: bool = True, since: datetime | None = None) -> list[BypassCount]:
    """Bypass hits per rule: decisions whose `bypass_rule` names it, counted like `escalation_frequency`."""
    rule = DecisionRow.decision["bypass_rule"].as_string()
    query = (
        select(rule, func.count(), func.count(func.distinct(DecisionRow.vendor + ":" + DecisionRow.ticket_id)))
        .where(rule.is_not(None), DecisionRow.status.in_(_COUNTED_STATUSES))
        .group_by(rule)
        .order_by(rule)
    )
    if not include_dry_run:
        query = query.where(DecisionRow.dry_run.is_(False))
    if since is not None:
        query = query.where(DecisionRow.decided_at >= since)
    with db.engine.connect() as conn:
        return [BypassCount(r[0], int(r[1]), int(r[2])) for r in conn.execute(query)]


@dataclass(frozen=True)
class CsatSplit:
    escalated: bool
    ratings: int
    avg_score: float  # 0..1 (good = 1, bad = 0; 1..5 scaled)


def csat_before_after_escalation(db: Database, *, since: datetime | None = None) -> list[CsatSplit]:
    """Ratings split by whether the ticket had been escalated above its first level when rated (at or
    after `since`). Dry-run and live tickets alike: `csat` has no dry-run column."""
    sql = f"""
        SELECT escalated, COUNT(*), AVG(score)
        FROM csat
        {"WHERE rated_at >= :since" if since else ""}
        GROUP BY escalated
        ORDER BY escalated
    """
    with db.engine.connect() as conn:
        rows = conn.execute(text(sql), {"since": _naive(since)}).all()
    return [CsatSplit(bool(r[0]), int(r[1]), float(r[2])) for r in rows]


def _naive(value: datetime | None) -> datetime | None:
    """Timestamps are stored as naive UTC (integration.store.db.UtcDateTime)."""
    if value is None:
        return None
    from datetime import timezone

    return value.astimezone(timezone.utc).replace(tzinfo=None)
