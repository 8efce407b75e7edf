"""What the console pages show, read from the service's database and the matrix: plain dicts and lists the
templates render. Reads only; the two writes (retry, repin) go through integration's own functions."""
from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import func, select

from connectors.jira.sla import expected_goals
from connectors.zendesk.sla import plan as zendesk_plan
from integration import metrics
from integration.engine import is_empty_value
from integration.clocks import ClockBook, active_seconds, clock_report, level_calendar, track
from integration.store.events import list_events
from integration.matrix_diff import diff as matrix_diff, stored_source, stored_versions
from integration.model import TicketState
from integration.pipeline.deps import DELETED, RESOLVED
from integration.snapshots import decode, ticket_from_json
from integration.store.codec import from_json
from integration.store.db import (Database, DecisionRow, EventRow, MilestoneRow, SnapshotRow, TicketStateRow,
                                  TimerRow)
from integration.store.matrix_versions import load_version
from matrix_config.lint import lint
from matrix_config.loader import LoadedMatrix, load_matrix_text
from matrix_config.schema import Matrix

CLOCK_STATES = ("ok", "warning", "breached", "met", "paused")
TICKETS_PER_PAGE = 500  # tickets in flight listed at once (2,000 open tickets: the page took 0.6 s on SQLite)


def _duration(delta: timedelta | None) -> str:
    if delta is None:
        return ""
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    return " ".join(p for p in parts if p) or f"{seconds}s"


def _human_seconds(seconds: float) -> str:
    return _duration(timedelta(seconds=abs(seconds)))


def _calendar_name(matrix: Matrix, level: Any) -> str:
    return level.calendar or matrix.clocks.calendar or "24x7"


# ------------------------------------------------------------------------------------ matrix page
def matrix_levels(matrix: Matrix) -> list[dict[str, Any]]:
    rows = []
    for level in matrix.levels:
        calendar = _calendar_name(matrix, level)
        rows.append({
            "id": level.id, "name": level.name, "priority": level.priority,
            "owner_default": level.owner.default, "owner_by_issue_type": dict(level.owner.by_issue_type),
            "sla": [(clock, _duration(target), calendar) for clock, target in level.sla.items()],
            "required_data": list(level.required_data),
            "roles": [(name, _duration(getattr(role, "within", None))) for name, role in level.roles.items()],
            "cadence": (f"every {_duration(level.update_cadence.every)} ({level.update_cadence.mode})"
                        if level.update_cadence else ""),
            "on_breach": dict(level.on_breach),
        })
    return rows


def _condition_text(condition: Any) -> str:
    value = condition.model_dump(mode="json", exclude_none=True) if hasattr(condition, "model_dump") else condition
    return str(value)


def rule_hits(db: Database) -> Counter:
    """Live (not dry-run) decisions each rule made (placements and moves) plus its bypass hits."""
    with db.session() as session:
        rows = session.execute(select(DecisionRow.rule_id, func.count()).where(
            DecisionRow.dry_run.is_(False), DecisionRow.rule_id.is_not(None)).group_by(DecisionRow.rule_id)).all()
    hits = Counter({rule: int(count) for rule, count in rows})
    for bypass in metrics.bypass_hits(db, include_dry_run=False):
        hits[bypass.rule] = max(hits[bypass.rule], bypass.hits)
    return hits


def matrix_rules(matrix: Matrix, hits: Counter) -> list[dict[str, Any]]:
    return [{"position": i, "id": rule.id, "description": rule.description or "",
             "when": ", ".join(f"{name} {_condition_text(cond)}" for name, cond in rule.when.items()) or "always",
             "outcome": "bypass" if rule.bypass else f"level {rule.level}" + (f", priority {rule.priority}" if rule.priority else ""),
             "hits": hits.get(rule.id, 0)}
            for i, rule in enumerate(matrix.rules, start=1)]


def versions(db: Database, current: str) -> list[dict[str, Any]]:
    return [{**v.as_dict(), "current": v.version == current} for v in stored_versions(db)]


def version_diff(db: Database, old_ref: str, new_ref: str) -> dict[str, Any]:
    """The semantic changes (integration.matrix_diff, as `escalation matrix diff`) and the text diff."""
    old, new = stored_source(db, old_ref), stored_source(db, new_ref)
    missing = [ref for ref, found in ((old_ref, old), (new_ref, new)) if found is None]
    if missing:
        return {"error": f"no stored matrix version {', '.join(missing)}"}
    old_matrix = load_matrix_text(old[2], old[1]).matrix
    new_matrix = load_matrix_text(new[2], new[1]).matrix
    text = difflib.unified_diff(old[2].splitlines(), new[2].splitlines(), f"{old[0][:12]}", f"{new[0][:12]}",
                                lineterm="", n=2)
    return {"old": old[0], "new": new[0], "changes": [c.line() for c in matrix_diff(old_matrix, new_matrix)],
            "text": list(text)}


def warnings(loaded: LoadedMatrix) -> list[str]:
    return [finding.line() for finding in lint(loaded)]


def zendesk_policies(matrix: Matrix) -> dict[str, Any]:
    """The SLA policies the matrix implies (offline: not compared with the account; `escalation sla plan`
    does that with credentials)."""
    try:
        found = zendesk_plan(matrix, [])
    except ValueError as exc:  # the matrix cannot be expressed in Zendesk's SLA terms
        return {"error": str(exc), "policies": [], "notes": []}
    policies = [{"title": p.get("title", ""),
                 "metrics": ", ".join(sorted({f"{m['priority']}: {m['metric']} {m['target']}m"
                                              for m in p.get("policy_metrics", [])}))}
                for p in found.desired]
    return {"error": None, "policies": policies, "notes": list(found.notes)}


def jsm_goals(matrix: Matrix) -> list[dict[str, Any]]:
    try:
        return [vars(goal) for goal in expected_goals(matrix)]
    except (KeyError, ValueError):
        return []


# ------------------------------------------------------------------------------------ tickets
def _latest_tickets(session: Any, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """The ticket each pass last decided on (snapshots table), by (vendor, id)."""
    if not keys:
        return {}
    latest = (select(SnapshotRow.vendor, SnapshotRow.ticket_id, func.max(SnapshotRow.id).label("id"))
              .where(SnapshotRow.ticket_id.in_(sorted({ticket_id for _, ticket_id in keys})))
              .group_by(SnapshotRow.vendor, SnapshotRow.ticket_id).subquery())
    rows = session.execute(select(SnapshotRow).join(latest, SnapshotRow.id == latest.c.id)).scalars()
    wanted = set(keys)
    return {(r.vendor, r.ticket_id): ticket_from_json(decode(r.ticket)) for r in rows if (r.vendor, r.ticket_id) in wanted}


def _clocks(state: TicketState, ticket: Any, matrix: Matrix, now: datetime) -> list[dict[str, Any]]:
    """Each clock of the ticket's level: remaining time and ok / warning / breached / met / paused. Warning:
    past the matrix's first warning fraction (clocks.warn_at) of the target."""
    reported = {c["name"]: c for c in clock_report(state, ticket, matrix, now)}
    try:
        level = matrix.level(state.level or "")
    except KeyError:
        return []
    book = ClockBook.of(track(state, ticket, matrix, now))
    used = active_seconds(book, level_calendar(matrix, level), now)
    first_warning = min(matrix.clocks.warn_at) if matrix.clocks.warn_at else 1.0
    out = []
    for clock, target in level.sla.items():
        info = reported.get(clock, {})
        seconds = target.total_seconds()
        left = seconds - (used - book.offset(clock))
        condition = info.get("state", "running")
        if condition == "running":
            condition = "warning" if (seconds - left) >= first_warning * seconds else "ok"
        out.append({"name": clock, "target": _duration(target), "remaining_seconds": left,
                    "remaining": _human_seconds(left) if left > 0 and condition not in ("met",) else "",
                    "overdue": _human_seconds(left) if left <= 0 and condition == "breached" else "",
                    "state": condition, "calendar": _calendar_name(matrix, level)})
    return out


def _matrix_for(session: Any, version: str | None, current: LoadedMatrix) -> Matrix:
    if version and version != current.version:
        loaded = load_version(session, version)
        if loaded is not None:
            return loaded.matrix
    return current.matrix


def _summary(row: TicketStateRow, ticket: Any, matrix: Matrix, now: datetime) -> dict[str, Any]:
    state = from_json(TicketState, row.state)
    clocks = _clocks(state, ticket, matrix, now) if ticket is not None else []
    missing_roles: list[str] = []
    try:
        level = matrix.level(row.level or "")
        if ticket is not None:
            missing_roles = [name for name in level.roles if is_empty_value(ticket.attribute(name))]
    except KeyError:
        pass
    states = {c["state"] for c in clocks}
    overall = next((s for s in ("breached", "warning", "ok") if s in states), "ok")
    return {"vendor": row.vendor, "ticket_id": row.ticket_id, "url": getattr(ticket, "url", None),
            "subject": getattr(ticket, "subject", ""), "level": row.level, "since": row.entered_level_at,
            "status": row.status, "priority": row.priority, "issue_type": row.issue_type,
            "organization": row.organization, "matrix_version": row.matrix_version,
            "held_for": {"level": row.pending_level, "missing": list(row.data_requested or [])} if row.pending_level else None,
            "missing_roles": missing_roles, "clocks": clocks, "state": overall}


def tickets_in_flight(db: Database, current: LoadedMatrix, now: datetime, *, level: str | None = None,
                      vendor: str | None = None, state: str | None = None,
                      limit: int = TICKETS_PER_PAGE) -> list[dict[str, Any]]:
    """Open tickets (not solved/closed/deleted), longest at their level first. `state`: ok, warning,
    breached (the worst of its clocks) or held (waiting for required data)."""
    with db.session() as session:
        still_open = TicketStateRow.status.is_(None) | TicketStateRow.status.not_in(sorted(RESOLVED | {DELETED}))
        query = select(TicketStateRow).where(still_open, TicketStateRow.level.is_not(None))
        if level:
            query = query.where(TicketStateRow.level == level)
        if vendor:
            query = query.where(TicketStateRow.vendor == vendor)
        if state == "held":
            query = query.where(TicketStateRow.pending_level.is_not(None))
        rows = list(session.scalars(query.order_by(TicketStateRow.entered_level_at).limit(limit)))
        tickets = _latest_tickets(session, [(r.vendor, r.ticket_id) for r in rows])
        found = [_summary(r, tickets.get((r.vendor, r.ticket_id)), _matrix_for(session, r.matrix_version, current), now)
                 for r in rows]
    if state == "held":
        return [t for t in found if t["held_for"]]
    if state:
        return [t for t in found if t["state"] == state]
    return found


def ticket_timeline(db: Database, current: LoadedMatrix, vendor: str, ticket_id: str, now: datetime) -> dict[str, Any] | None:
    """Everything the service did and saw for one ticket, oldest first: decisions (reason, rule, matrix
    version, what it wrote, notes), events, milestones and timers; with its clocks now."""
    with db.session() as session:
        row = session.get(TicketStateRow, (vendor, ticket_id))
        if row is None:
            return None
        ticket = _latest_tickets(session, [(vendor, ticket_id)]).get((vendor, ticket_id))
        summary = _summary(row, ticket, _matrix_for(session, row.matrix_version, current), now)
        entries: list[dict[str, Any]] = []
        for d in session.scalars(select(DecisionRow).where(DecisionRow.vendor == vendor, DecisionRow.ticket_id == ticket_id)):
            body = d.decision or {}
            writes = [f"{name}: {body[name]}" for name in ("priority", "owner_group") if body.get(name)]
            writes += [f"field {k} = {v}" for k, v in (body.get("field_updates") or {}).items()]
            writes += [f"tag +{t}" for t in body.get("add_tags") or []] + [f"tag -{t}" for t in body.get("remove_tags") or []]
            entries.append({"at": d.decided_at, "kind": "decision", "id": d.id,
                            "title": (f"{d.from_level or '-'} -> {d.to_level}" if d.to_level else "no level change"),
                            "reason": d.reason, "rule": d.rule_id, "version": d.matrix_version, "status": d.status,
                            "trigger": d.trigger, "dry_run": d.dry_run, "writes": writes, "write_count": d.writes,
                            "public_reply": body.get("public_reply"), "internal_note": body.get("internal_note"),
                            "missing_data": body.get("missing_data") or [], "error": d.error})
        for e in session.scalars(select(EventRow).where(EventRow.vendor == vendor, EventRow.ticket_id == ticket_id)):
            entries.append({"at": e.occurred_at or e.received_at, "kind": "event", "id": e.id, "title": e.event_type,
                            "status": e.status, "attempts": e.attempts, "error": e.last_error})
        for m in session.scalars(select(MilestoneRow).where(MilestoneRow.vendor == vendor, MilestoneRow.ticket_id == ticket_id)):
            entries.append({"at": m.met_at, "kind": "milestone", "id": m.id,
                            "title": f"{m.clock} met at {m.level} after {_human_seconds(m.elapsed_seconds)}",
                            "dry_run": m.dry_run})
        for t in session.scalars(select(TimerRow).where(TimerRow.vendor == vendor, TimerRow.ticket_id == ticket_id)):
            fraction = f" {int(t.fraction * 100)} %" if t.fraction is not None else ""
            entries.append({"at": t.fired_at or t.due_at, "kind": "timer", "id": t.id,
                            "title": f"{t.kind}{fraction} {t.clock} at {t.level}".strip(), "status": t.status,
                            "version": t.matrix_version, "error": t.last_error})
    order = {"event": 0, "decision": 1, "milestone": 2, "timer": 3}
    entries.sort(key=lambda e: (e["at"] or now, order[e["kind"]], e["id"]))
    return {"ticket": summary, "entries": entries}


def dead_letters(db: Database, limit: int = 200) -> list[Any]:
    return list_events(db, status="dead", limit=limit)


def recent_retried(db: Database, ids: list[int]) -> list[Any]:
    with db.session() as session:
        return [(r.id, r.status) for r in session.scalars(select(EventRow).where(EventRow.id.in_(ids)))]


# ------------------------------------------------------------------------------------ metrics page
def _week_start(moment: datetime) -> datetime:
    day = moment.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


def chart_data(db: Database, matrix: Matrix, now: datetime, weeks: int = 8) -> dict[str, Any]:
    """The series the metrics page draws, live rows only (dry run kept apart: not drawn). Weeks are ISO
    weeks in UTC, the last `weeks` up to `now`."""
    first = _week_start(now) - timedelta(weeks=weeks - 1)
    starts = [first + timedelta(weeks=i) for i in range(weeks)]
    labels = [s.strftime("%G-W%V") for s in starts]
    level_ids = [level.id for level in matrix.levels]

    times: dict[str, dict[str, list[float | None]]] = {c: {lv: [None] * weeks for lv in level_ids}
                                                        for c in ("acknowledge", "diagnose")}
    for i, start in enumerate(starts):
        for t in metrics.clock_times(db, matrix, clocks=("acknowledge", "diagnose"), by_issue_type=False,
                                     dry_run=False, since=start, until=start + timedelta(weeks=1)):
            if t.level in times[t.clock]:
                value = t.business_p50_seconds if t.business_p50_seconds is not None else t.wall_p50_seconds
                times[t.clock][t.level][i] = round(value / 60, 1)

    escalations = {lv: [0] * weeks for lv in level_ids}
    for count in metrics.escalation_frequency(db, by=("week",), dry_run=False, since=first, until=now):
        if count.week in labels and count.level in escalations:
            escalations[count.level][labels.index(count.week)] = count.escalations

    attainment = [{"level": a.level, "clock": a.clock, "met": a.met, "breached": a.breached, "open": a.open,
                   "warnings": a.warnings,
                   "percent": round(a.attainment * 100, 1) if a.attainment is not None else None}
                  for a in _attainment_by_level(db, matrix, first, now)]
    incident_levels = metrics.default_incident_levels(matrix)
    csat = [{"ticket": f"{c.vendor} {c.ticket_id}", "customer": c.customer, "started_at": c.started_at.isoformat(),
             "before": round(c.before_score * 100, 1) if c.before_score is not None else None,
             "before_ratings": c.before_ratings,
             "after": round(c.after_score * 100, 1) if c.after_score is not None else None,
             "after_ratings": c.after_ratings}
            for c in metrics.csat_around_incidents(db, incident_levels, dry_run=False, since=first, until=now)]
    return {"weeks": labels, "levels": level_ids, "tta_minutes": times["acknowledge"],
            "ttd_minutes": times["diagnose"], "escalations": escalations, "attainment": attainment, "csat": csat,
            "since": first.isoformat(), "until": now.isoformat()}


def _attainment_by_level(db: Database, matrix: Matrix, since: datetime, now: datetime) -> list[metrics.Attainment]:
    """Attainment per level x clock (issue types summed)."""
    outcomes = metrics.clock_outcomes(db, matrix, dry_run=False, since=since, until=now, now=now)
    return metrics.attainment_of(replace(o, issue_type=None) for o in outcomes)
