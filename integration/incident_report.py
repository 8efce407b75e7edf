"""The incident report of a ticket that reached an incident level (a level with `roles:`), built from what the
service recorded (vendor-neutral), and the corrective actions tracked against it.

    build_report(session, matrix, ticket, state, now)      # the report (a dict, JSON-ready) from the records
    report_markdown(report)                                # the same as Markdown (the internal note)
    with_report(db, decision, matrix, ticket, state, now)  # the pipeline's hook on the resolution pass
    stored_report(db, vendor, ticket_id) / record_action(...) / list_actions(...)

When it is built. On the pass that sees the ticket solved or closed after it reached an incident level, the
report is stored (table `incident_reports`, one row per ticket and incident, migration 0006) and its Markdown
becomes an internal note of that pass's decision, so it is posted through the write-ahead intent like any
note. Exactly once: a later pass (a redelivered resolution webhook, a catch-up scan) finds the decision that
carried the report (reason REPORT_REASON, applied or recovered) and adds nothing; a worker killed mid-pass
leaves the intent `applying`, and the next pass's recovery either finds the note on the ticket (the decision
is `recovered`: done) or finds nothing (the intent is `abandoned` and the report is decided again).

What it says: the timeline of levels with their reasons, the clocks with their milestones (met, and time from
entering the level) and breaches, SLA warnings, the roles at the top incident level, the customer updates the
service sent, and the time from the incident's start (first entry into an incident level) to acknowledge,
diagnose, interim fix and resolution; and the corrective actions recorded so far.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import JSON, Date, Index, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from integration.engine import is_empty_value
from integration.incident import level_timezone, show_time
from integration.model import Decision, Person, Ticket, TicketState
from integration.store.db import Base, BigId, Database, DecisionRow, MilestoneRow, UtcDateTime
from matrix_config.schema import CLOCKS, Matrix, format_duration
from matrix_config.templates import MILESTONE_LABELS

REPORT_REASON = "incident report posted"
RESOLVED = frozenset({"solved", "closed"})
# Decision rows that reached the ticket (or will: `applying` is settled by the recovery before any decision).
_DONE = ("applied", "recovered")


class IncidentReportRow(Base):
    """The stored report of one incident (migration 0006)."""

    __tablename__ = "incident_reports"
    __table_args__ = (UniqueConstraint("vendor", "ticket_id", "started_at", name="uq_incident_report"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    vendor: Mapped[str] = mapped_column(String(16))
    ticket_id: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)  # first entry into an incident level
    built_at: Mapped[datetime] = mapped_column(UtcDateTime)
    matrix_version: Mapped[str] = mapped_column(String(64))
    report: Mapped[dict] = mapped_column(JSON)
    markdown: Mapped[str] = mapped_column(Text)


class CorrectiveActionRow(Base):
    """A corrective action of an incident: a Jira issue with an owner and a due date (migration 0006)."""

    __tablename__ = "corrective_actions"
    __table_args__ = (UniqueConstraint("vendor", "ticket_id", "issue_key", name="uq_corrective_action"),
                      Index("ix_corrective_actions_ticket", "vendor", "ticket_id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    vendor: Mapped[str] = mapped_column(String(16))
    ticket_id: Mapped[str] = mapped_column(String(64))
    issue_key: Mapped[str] = mapped_column(String(64))
    summary: Mapped[str] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(200))  # Jira accountId of the assignee
    owner_name: Mapped[str | None] = mapped_column(String(200))
    due: Mapped[date | None] = mapped_column(Date)
    url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


# ------------------------------------------------------------------------------------ building
def incident_levels(matrix: Matrix) -> list[str]:
    return [level.id for level in matrix.levels if level.roles]


def _utc(moment: datetime | None) -> datetime | None:
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _iso(moment: datetime | None) -> str | None:
    return _utc(moment).isoformat() if moment else None


def _span(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    from datetime import timedelta

    return format_duration(timedelta(seconds=max(0.0, seconds))) if seconds >= 60 else f"{int(max(seconds, 0))}s"


def _display(value: Any) -> str | None:
    if is_empty_value(value):
        return None
    if isinstance(value, Person):
        return value.name or value.email or value.id
    if isinstance(value, dict):
        return str(value.get("displayName") or value.get("name") or value.get("emailAddress") or value.get("id"))
    return str(value)


def _entered_at(row: DecisionRow) -> datetime:
    entered = (row.decision or {}).get("entered_at")
    return _utc(datetime.fromisoformat(entered)) if entered else _utc(row.decided_at)


def build_report(session: Session, matrix: Matrix, ticket: Ticket, state: TicketState | None, now: datetime,
                 *, version: str = "") -> dict[str, Any] | None:
    """The report of the ticket's incident, or None when it never reached an incident level."""
    incident = set(incident_levels(matrix))
    rows = session.scalars(select(DecisionRow).where(DecisionRow.vendor == ticket.vendor,
                                                     DecisionRow.ticket_id == ticket.id,
                                                     DecisionRow.status.in_(_DONE + ("noop",)))
                           .order_by(DecisionRow.decided_at, DecisionRow.id)).all()
    moves = [r for r in rows if r.to_level]
    starts = [_entered_at(r) for r in moves if r.to_level in incident]
    if not starts and state is not None and state.level in incident and state.entered_level_at:
        starts = [_utc(state.entered_level_at)]
    if not starts:
        return None
    start = min(starts)
    top = max((r.to_level for r in moves if r.to_level in incident), default=state.level if state else None,
              key=lambda level_id: matrix.level_index(level_id) if level_id in incident else -1)
    zone = level_timezone(matrix, matrix.level(top) if top in incident else None)
    timeline = [{"at": _iso(_entered_at(r)), "from": r.from_level, "to": r.to_level, "reason": r.reason}
                for r in moves]
    milestone_rows = session.scalars(select(MilestoneRow).where(
        MilestoneRow.vendor == ticket.vendor, MilestoneRow.ticket_id == ticket.id,
        MilestoneRow.dry_run.is_(False)).order_by(MilestoneRow.met_at)).all()
    milestones = [{"level": m.level, "clock": m.clock, "label": MILESTONE_LABELS.get(m.clock, m.clock),
                   "met_at": _iso(m.met_at), "after": _span(m.elapsed_seconds)} for m in milestone_rows]
    breaches = [{"at": _iso(r.decided_at), "level": r.from_level, "what": r.reason,
                 "note": ((r.decision or {}).get("internal_note") or "").split("\n")[0]}
                for r in rows if r.reason.startswith(("breach", "role missing")) or "breach of" in r.reason]
    warnings = [{"at": _iso(r.decided_at), "level": r.from_level, "what": r.reason}
                for r in rows if r.reason.startswith("sla warning")]
    updates = [{"at": _iso(r.decided_at), "template": (r.decision or {}).get("reply_template")}
               for r in rows if r.status in _DONE and (r.decision or {}).get("public_reply")]
    resolved_at = _utc(ticket.updated_at) if ticket.status in RESOLVED and ticket.updated_at else None
    time_to: dict[str, str | None] = {}
    for clock in CLOCKS:
        met = [_utc(m.met_at) for m in milestone_rows if m.clock == clock and _utc(m.met_at) >= start]
        if clock == "resolve" and resolved_at is not None:
            met.append(resolved_at)
        time_to[clock] = _span((min(met) - start).total_seconds()) if met else None
    roles = []
    if top in incident:
        for name in matrix.level(top).roles:
            label = matrix.fields[name].label if name in matrix.fields and matrix.fields[name].label else name
            roles.append({"name": name, "label": label, "person": _display(ticket.attribute(name))})
    actions = [_action_dict(a) for a in session.scalars(select(CorrectiveActionRow).where(
        CorrectiveActionRow.vendor == ticket.vendor, CorrectiveActionRow.ticket_id == ticket.id)
        .order_by(CorrectiveActionRow.id)).all()]
    return {
        "vendor": ticket.vendor, "ticket_id": ticket.id, "subject": ticket.subject, "url": ticket.url,
        "organization": ticket.organization, "matrix_version": version,
        "started_at": _iso(start), "resolved_at": _iso(resolved_at), "top_level": top, "timezone": str(zone),
        "timeline": timeline, "milestones": milestones, "breaches": breaches, "warnings": warnings,
        "roles": roles, "customer_updates": updates, "time_to": time_to, "corrective_actions": actions,
    }


def _action_dict(row: CorrectiveActionRow) -> dict[str, Any]:
    return {"key": row.issue_key, "summary": row.summary, "owner": row.owner_name or row.owner,
            "due": row.due.isoformat() if row.due else None, "url": row.url}


def _show(iso: str | None, zone_name: str) -> str:
    if not iso:
        return "-"
    from zoneinfo import ZoneInfo

    zone = timezone.utc if zone_name == "UTC" else ZoneInfo(zone_name)
    return show_time(datetime.fromisoformat(iso), zone) or "-"


def report_markdown(report: dict[str, Any]) -> str:
    zone = report["timezone"]
    lines = [f"## Incident report: ticket {report['ticket_id']}" + (f" — {report['subject']}" if report["subject"] else ""),
             "", f"Incident from {_show(report['started_at'], zone)} to {_show(report['resolved_at'], zone)}, "
             f"highest level {report['top_level']}.", "", "### Time to"]
    for clock in CLOCKS:
        lines.append(f"- {MILESTONE_LABELS[clock]}: {report['time_to'].get(clock) or 'not reached'}")
    lines += ["", "### Timeline"]
    for entry in report["timeline"]:
        moved = f"{entry['from']} → {entry['to']}" if entry["from"] else f"placed at {entry['to']}"
        lines.append(f"- {_show(entry['at'], zone)}: {moved} ({entry['reason']})")
    lines += ["", "### Milestones"]
    lines += [f"- {m['level']} {m['label']}: {_show(m['met_at'], zone)} ({m['after']} after entering {m['level']})"
              for m in report["milestones"]] or ["- none recorded"]
    lines += ["", "### Breaches and warnings"]
    lines += [f"- {_show(b['at'], zone)} at {b['level']}: {b['what']}" for b in report["breaches"]]
    lines += [f"- {_show(w['at'], zone)} at {w['level']}: {w['what']}" for w in report["warnings"]]
    if not report["breaches"] and not report["warnings"]:
        lines.append("- none")
    lines += ["", "### Roles"]
    lines += [f"- {r['label']}: {r['person'] or 'not assigned'}" for r in report["roles"]] or ["- none"]
    lines += ["", f"### Customer updates sent by the service: {len(report['customer_updates'])}"]
    lines += [f"- {_show(u['at'], zone)}" + (f" ({u['template']})" if u["template"] else "")
              for u in report["customer_updates"]]
    if report.get("exit_unmet"):
        lines += ["", f"### Exit criteria of {report['exit_level']} not met (the ticket stays solved)"]
        lines += [f"- {problem}" for problem in report["exit_unmet"]]
    lines += ["", "### Corrective actions"]
    lines += [f"- {a['key']}: {a['summary']} — owner {a['owner'] or 'MISSING'}, due {a['due'] or 'MISSING'}"
              for a in report["corrective_actions"]] or ["- none recorded yet (`escalation incident actions "
                                                         f"{report['vendor']} {report['ticket_id']} --add ...`)"]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ the pipeline hook
def report_already_posted(session: Session, vendor: str, ticket_id: str) -> bool:
    return session.scalars(select(DecisionRow.id).where(
        DecisionRow.vendor == vendor, DecisionRow.ticket_id == ticket_id, DecisionRow.status.in_(_DONE),
        DecisionRow.reason.contains(REPORT_REASON))).first() is not None


def with_report(db: Database, decision: Decision, matrix: Matrix, ticket: Ticket, state: TicketState | None,
                now: datetime, *, version: str, dry_run: bool) -> Decision:
    """On the pass that sees an incident's ticket resolved: store the report and add it to `decision` as an
    internal note, once per incident (see the module docstring)."""
    if ticket.status not in RESOLVED or decision.to_level or not incident_levels(matrix):
        return decision
    with db.session() as session:
        if report_already_posted(session, ticket.vendor, ticket.id):
            return decision
        report = build_report(session, matrix, ticket, state, now, version=version)
        if report is None:
            return decision
        unmet = exit_unmet(matrix, state, report)
        report["exit_unmet"], report["exit_level"] = unmet, state.level if state else None
        markdown = report_markdown(report)
        if not dry_run:
            _store(session, report, markdown, now)
            if unmet and state is not None:
                _alert_exit_unmet(session, matrix, version, ticket, state, now)
    reasons = (decision.reason, REPORT_REASON, EXIT_UNMET_REASON if unmet else None)
    summary, failure = _customer_summary(matrix, version, ticket, state, report)
    note = "\n\n".join(n for n in (decision.internal_note, markdown, failure) if n)
    decision = replace(decision, internal_note=note, reason="; ".join(r for r in reasons if r))
    if summary and not decision.public_reply:
        decision = replace(decision, public_reply=summary, reply_template=matrix.incident.summary_reply)
    return decision


def _customer_summary(matrix: Matrix, version: str, ticket: Ticket, state: TicketState | None,
                      report: dict[str, Any]) -> tuple[str | None, str | None]:
    """(the `incident.summary_reply` text for the customer, or the reason it could not be rendered)."""
    from integration.engine import compile_matrix, template_context
    from integration.incident import digest_context
    from matrix_config.templates import TemplateRenderError, render_template

    name = matrix.incident.summary_reply if matrix.incident else None
    level_id = report["top_level"]
    if not name or level_id not in incident_levels(matrix):
        return None, None
    level = matrix.level(level_id)
    zone = report["timezone"]
    incident = digest_context(matrix, ticket, state or TicketState(vendor=ticket.vendor, ticket_id=ticket.id), [],
                              level)
    incident["report"] = {"started_at": _show(report["started_at"], zone), "resolved_at": _show(report["resolved_at"], zone),
                          "top_level": level_id, "time_to": dict(report["time_to"]),
                          "corrective_actions": list(report["corrective_actions"])}
    context = template_context(compile_matrix(matrix, version or None), ticket, level_id, incident=incident)
    try:
        return render_template(matrix, name, context), None
    except TemplateRenderError as exc:
        return None, f"Template {name!r} could not be rendered: {exc.message}"


EXIT_UNMET_REASON = "exit criteria unmet"


def exit_unmet(matrix: Matrix, state: TicketState | None, report: dict[str, Any]) -> list[str]:
    """What the exit criteria of the level the ticket was solved at miss (empty: met, or none set)."""
    if state is None or not state.level:
        return []
    try:
        criteria = matrix.level(state.level).exit
    except KeyError:
        return []
    if criteria is None or not criteria.actions_owned:
        return []
    actions = report["corrective_actions"]
    if not actions:
        return ["no corrective action is recorded"]
    return [f"corrective action {a['key']} has no {' and no '.join(what)}"
            for a in actions
            for what in [[w for w, v in (("owner", a["owner"]), ("due date", a["due"])) if not v]] if what]


def _alert_exit_unmet(session: Session, matrix: Matrix, version: str, ticket: Ticket, state: TicketState,
                      now: datetime) -> None:
    from integration import alerts
    from matrix_config.loader import LoadedMatrix

    event = alerts.AlertEvent("exit_unmet", state.level or "", state.entered_level_at, detail="actions_owned")
    alerts.record_events(session, LoadedMatrix(matrix=matrix, version=version, path=""), ticket, [event],
                         decision_id=None, now=now)


def _store(session: Session, report: dict[str, Any], markdown: str, now: datetime) -> IncidentReportRow:
    started = datetime.fromisoformat(report["started_at"])
    row = session.scalars(select(IncidentReportRow).where(
        IncidentReportRow.vendor == report["vendor"], IncidentReportRow.ticket_id == report["ticket_id"],
        IncidentReportRow.started_at == started)).first()
    if row is None:
        row = IncidentReportRow(vendor=report["vendor"], ticket_id=report["ticket_id"], started_at=started)
        session.add(row)
    row.built_at, row.matrix_version, row.report, row.markdown = now, report["matrix_version"], report, markdown
    return row


def stored_report(db: Database, vendor: str, ticket_id: str) -> IncidentReportRow | None:
    """The latest stored report of the ticket (detached copy)."""
    with db.session() as session:
        row = session.scalars(select(IncidentReportRow).where(
            IncidentReportRow.vendor == vendor, IncidentReportRow.ticket_id == ticket_id)
            .order_by(IncidentReportRow.started_at.desc())).first()
        if row is not None:
            session.expunge(row)
        return row


# ------------------------------------------------------------------------------------ corrective actions
def record_action(db: Database, *, vendor: str, ticket_id: str, issue_key: str, summary: str, owner: str | None,
                  owner_name: str | None, due: date | None, url: str | None, now: datetime) -> None:
    with db.session() as session:
        exists = session.scalars(select(CorrectiveActionRow.id).where(
            CorrectiveActionRow.vendor == vendor, CorrectiveActionRow.ticket_id == ticket_id,
            CorrectiveActionRow.issue_key == issue_key)).first()
        if exists is None:
            session.add(CorrectiveActionRow(vendor=vendor, ticket_id=ticket_id, issue_key=issue_key, summary=summary,
                                            owner=owner, owner_name=owner_name, due=due, url=url, created_at=now))


def list_actions(db: Database, vendor: str, ticket_id: str) -> list[dict[str, Any]]:
    with db.session() as session:
        return [_action_dict(row) for row in session.scalars(select(CorrectiveActionRow).where(
            CorrectiveActionRow.vendor == vendor, CorrectiveActionRow.ticket_id == ticket_id)
            .order_by(CorrectiveActionRow.id)).all()]
