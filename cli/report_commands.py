"""`escalation report`: the weekly report a support lead sends upward (Markdown, CSV or JSON), and the
renderers `escalation metrics` shares. The figures come from `integration.metrics`; this module only
shapes and prints them."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, fields
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterable, Sequence

import click

from cli.common import configured_database, configured_settings as _settings

FORMATS = ("md", "csv", "json")


# ------------------------------------------------------------------------------------ shared helpers
def load_configured_matrix(path: str):
    from matrix_config.loader import MatrixInvalid, load_matrix

    try:
        return load_matrix(path)
    except MatrixInvalid as exc:
        raise click.ClickException(f"matrix {path} is invalid:\n{exc}") from None
    except OSError as exc:
        raise click.ClickException(f"cannot read matrix {path}: {exc.strerror or exc}") from None


def duration(seconds: float | None) -> str:
    """A duration for people: 45s, 12m, 3h 5m, 2d 4h."""
    if seconds is None:
        return "-"
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes = round(seconds / 60)
    days, minutes = divmod(minutes, 1440)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{days}d"] if days else []
    if hours:
        parts.append(f"{hours}h")
    if minutes and not days:
        parts.append(f"{minutes}m")
    return " ".join(parts) or "0m"


def share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _stamp(value: datetime | None) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M") if value else "-"


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _rows(items: Iterable[Any], *, drop: Sequence[str] = ("dry_run",)) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in asdict(item).items() if k not in drop} for item in items]


# ------------------------------------------------------------------------------------ escalation metrics
def metrics_sections(db: Any, matrix: Any, *, since: datetime | None, dry_run: bool) -> dict[str, Any]:
    """The figures `escalation metrics` shows, live or dry-run only (the rows then carry no flag)."""
    from integration import metrics as queries

    window = dict(dry_run=dry_run, since=since)
    sections: dict[str, Any] = {"percentile_method": queries.PERCENTILE_METHOD}
    for clock in ("acknowledge", "diagnose", "interim_fix", "resolve"):
        sections[f"time_to_{clock}"] = _rows(queries.clock_times(db, matrix, clocks=(clock,), **window))
    commander = matrix.incident.commander_role if matrix is not None and matrix.incident else "incident_commander"
    sections["time_to_incident_commander"] = _rows(queries.time_to_role(db, commander, **window))
    sections["escalation_frequency"] = _rows(queries.escalation_frequency(db, **window),
                                             drop=("dry_run", "organization", "week"))
    sections["csat"] = _rows(queries.csat_before_after_escalation(db, **window))
    sections["entered_without_required_data"] = _rows(queries.entered_without_required_data(db, **window))
    sections["bypass_hits"] = _rows(queries.bypass_hits(db, **window))
    return sections


def print_metrics_text(report: dict[str, Any], indent: str = "") -> None:
    def say(line: str) -> None:
        click.echo(indent + line)

    for clock, title in (("acknowledge", "Time to acknowledge"), ("diagnose", "Time to diagnose"),
                         ("interim_fix", "Time to interim fix"), ("resolve", "Time to resolve")):
        say(f"{title} (per level and issue type; p50 / p90 / max, nearest rank):")
        for stat in report[f"time_to_{clock}"] or [None]:
            if stat is None:
                say("  no milestones recorded yet")
                continue
            say(f"  {stat['level']:<6} {stat['issue_type'] or '-':<14} n={stat['count']:<5} "
                f"wall {duration(stat['wall_p50_seconds'])} / {duration(stat['wall_p90_seconds'])} / "
                f"{duration(stat['wall_max_seconds'])}  business ({stat['calendar']}) "
                f"{duration(stat['business_p50_seconds'])} / {duration(stat['business_p90_seconds'])} / "
                f"{duration(stat['business_max_seconds'])}")
    say("Time to incident commander assigned (per level entry; p50 / p90 / max, nearest rank, wall-clock):")
    for stat in report.get("time_to_incident_commander") or [None]:
        if stat is None:
            say("  no commander assigned yet")
            continue
        say(f"  {stat['level']:<6} n={stat['count']:<5} {duration(stat['p50_seconds'])} / "
            f"{duration(stat['p90_seconds'])} / {duration(stat['max_seconds'])}")
    say("Escalations into each level (every entry: placed, moved up, set by hand):")
    for count in report["escalation_frequency"] or [None]:
        if count is None:
            say("  none yet")
            continue
        say(f"  {count['level']:<6} {count['issue_type'] or '-':<14} {count['escalations']} escalation(s), "
            f"{count['tickets']} ticket(s): {count['placed']} placed, {count['moved_up']} moved up, "
            f"{count['set_by_hand']} set by hand")
    say("CSAT (share of good ratings):")
    for split in report["csat"] or [None]:
        if split is None:
            say("  no ratings yet")
            continue
        label = "after escalation" if split["escalated"] else "never escalated"
        say(f"  {label:<17} {split['ratings']} rating(s), {split['avg_score']:.0%}")
    say("Hand-set levels entered without required data:")
    for count in report["entered_without_required_data"] or [None]:
        if count is None:
            say("  none")
            continue
        say(f"  {count['level']:<6} without {count['attribute']:<14} {count['entries']} entr"
            f"{'y' if count['entries'] == 1 else 'ies'}, {count['tickets']} ticket(s)")
    say("Bypass hits per rule:")
    for count in report["bypass_hits"] or [None]:
        if count is None:
            say("  none")
            continue
        say(f"  {count['rule']:<20} {count['hits']} hit(s), {count['tickets']} ticket(s)")


# ------------------------------------------------------------------------------------ escalation report
def report_window(since: date | None, until: date | None, today: date) -> tuple[datetime, datetime]:
    """[since 00:00 UTC, the day after `until` 00:00 UTC): `--until` is inclusive. Default: the seven days
    up to yesterday; one bound given: the week starting or ending there."""
    if since is None and until is None:
        until = today - timedelta(days=1)
    if since is None:
        since = until - timedelta(days=6)
    if until is None:
        until = since + timedelta(days=6)
    if since > until:
        raise click.BadParameter(f"--since {since.isoformat()} is after --until {until.isoformat()}",
                                 param_hint="--since")
    start = datetime.combine(since, time(0), tzinfo=timezone.utc)
    end = datetime.combine(until + timedelta(days=1), time(0), tzinfo=timezone.utc)
    return start, end


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    if not rows:
        return ["_None in this period._"]
    cell = lambda v: str(v).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def render_markdown(report: Any) -> str:
    last_day = (report.until - timedelta(days=1)).date()
    mode = "dry run: what the service would have done, not what it did" if report.dry_run else "live"
    out = [
        f"# Escalation report: {report.matrix_name}, {report.since.date().isoformat()} to {last_day.isoformat()}",
        "",
        f"Matrix version {report.matrix_version}; {mode}. Times in UTC; percentiles are nearest-rank (p50, p90 "
        f"are observed values); business time counts each level's calendar. Incident levels: "
        f"{', '.join(report.incident_levels)}. SLA outcomes and durations as known when the report ran.",
        "",
    ]
    for title, items in (("Time to acknowledge", report.time_to_acknowledge),
                         ("Time to diagnose", report.time_to_diagnose)):
        out += [f"## {title}", ""]
        out += _table(["Level", "Issue type", "Tickets", "p50", "p90", "Max", "p50 business", "p90 business",
                       "Max business", "Calendar"],
                      [[t.level, t.issue_type or "-", t.count, duration(t.wall_p50_seconds),
                        duration(t.wall_p90_seconds), duration(t.wall_max_seconds), duration(t.business_p50_seconds),
                        duration(t.business_p90_seconds), duration(t.business_max_seconds), t.calendar]
                       for t in items])
        out.append("")
    out += ["## Escalations by level", "",
            "Every entry into a level: a ticket placed straight at a level counts there.", ""]
    out += _table(["Level", "Issue type", "Escalations", "Placed", "Moved up", "Set by hand", "Tickets"],
                  [[c.level, c.issue_type or "-", c.escalations, c.placed, c.moved_up, c.set_by_hand, c.tickets]
                   for c in report.escalations_by_level])
    out += ["", "### Per organization", ""]
    out += _table(["Organization", "Level", "Escalations", "Placed", "Moved up", "Set by hand"],
                  [[c.organization or "-", c.level, c.escalations, c.placed, c.moved_up, c.set_by_hand]
                   for c in sorted(report.escalations_by_organization,
                                   key=lambda c: (-c.escalations, c.organization or "", c.level))])
    out += ["", "### Per week", ""]
    out += _table(["ISO week", "Level", "Escalations", "Placed", "Moved up", "Set by hand"],
                  [[c.week, c.level, c.escalations, c.placed, c.moved_up, c.set_by_hand]
                   for c in sorted(report.escalations_by_week, key=lambda c: (c.week, c.level))])
    window = f"{report.csat_window_days:g} days"
    out += ["", "## CSAT before and after incidents", "",
            f"Ratings of the affected organization (or requester) in the {window} before the incident started "
            f"and the {window} after it was resolved. Before: {share(report.csat_before_incidents)} good of "
            f"{sum(c.before_ratings for c in report.csat_around_incidents)} rating(s); after: "
            f"{share(report.csat_after_incidents)} good of "
            f"{sum(c.after_ratings for c in report.csat_around_incidents)} rating(s).", ""]
    out += _table(["Ticket", "Customer", "Started", "Resolved", "Ratings before", "CSAT before", "Ratings after",
                   "CSAT after"],
                  [[f"{c.vendor} {c.ticket_id}", c.customer, _stamp(c.started_at), _stamp(c.resolved_at),
                    c.before_ratings, share(c.before_score), c.after_ratings, share(c.after_score)]
                   for c in report.csat_around_incidents])
    out += ["", "Ratings in the period by whether the ticket had been escalated:", ""]
    out += _table(["Tickets", "Ratings", "CSAT"],
                  [["escalated" if s.escalated else "never escalated", s.ratings, share(s.avg_score)]
                   for s in report.csat_by_escalation])
    out += ["", "## SLA attainment", "",
            "Share of clocks met within target, of those met or breached (open clocks are not in the share).", ""]
    out += _table(["Level", "Clock", "Issue type", "Clocks", "Met", "Breached", "Open", "Warnings", "Attainment"],
                  [[a.level, a.clock, a.issue_type or "-", a.clocks, a.met, a.breached, a.open, a.warnings,
                    share(a.attainment)] for a in report.attainment])
    out += ["", "## Top breach reasons", ""]
    out += _table(["Level", "Clock", "Reason", "Breaches"],
                  [[b.level, b.clock, b.reason, b.breaches] for b in report.top_breach_reasons])
    out += ["", "## Bypass hits", ""]
    out += _table(["Rule", "Hits", "Tickets"], [[b.rule, b.hits, b.tickets] for b in report.bypass_hits])
    out += ["", "Hand-set levels entered without required data:", ""]
    out += _table(["Level", "Missing", "Entries", "Tickets"],
                  [[e.level, e.attribute, e.entries, e.tickets] for e in report.entered_without_required_data])
    out += ["", f"## Incidents at {'/'.join(report.incident_levels)}", ""]
    out += _table(["Ticket", "Level", "Entered as", "Issue type", "Organization", "Started", "Resolved", "Duration"],
                  [[f"{i.vendor} {i.ticket_id}", i.level, i.entered_as.replace("_", " "), i.issue_type or "-",
                    i.organization or "-", _stamp(i.started_at), _stamp(i.resolved_at) if i.resolved_at else "open",
                    duration(i.duration_seconds)] for i in report.incidents])
    out += ["", "## Time to incident commander assigned", "",
            "From entering the level to the commander role being filled there (the field's change time on the "
            "ticket), per level entry; wall-clock.", ""]
    out += _table(["Level", "Entries", "p50", "p90", "Max"],
                  [[t.level, t.count, duration(t.p50_seconds), duration(t.p90_seconds), duration(t.max_seconds)]
                   for t in report.time_to_incident_commander])
    out += ["", "## Time in each level", ""]
    out += _table(["Level", "Stays", "Still open", "p50", "p90", "Max"],
                  [[t.level, t.stays, t.open, duration(t.p50_seconds), duration(t.p90_seconds), duration(t.max_seconds)]
                   for t in report.time_in_level])
    return "\n".join(out) + "\n"


def report_json(report: Any) -> dict[str, Any]:
    data = {}
    for item in fields(report):
        value = getattr(report, item.name)
        if isinstance(value, list):
            data[item.name] = _rows(value)
        else:
            data[item.name] = _plain(list(value) if isinstance(value, tuple) else value)
    return data


# CSV: one tidy table (a row per figure), so a spreadsheet can pivot any section.
CSV_COLUMNS = ("section", "level", "clock", "issue_type", "subject", "measure", "value")
_KEYS = ("level", "clock", "issue_type")
_SUBJECTS = ("week", "rule", "reason", "attribute", "customer", "ticket_id", "organization", "role")


def render_csv(report: Any) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    data = report_json(report)
    for name in ("since", "until", "dry_run", "matrix_name", "matrix_version", "incident_levels",
                 "csat_window_days", "percentile_method", "csat_before_incidents", "csat_after_incidents"):
        value = data[name]
        writer.writerow(["report", "", "", "", "", name, " ".join(value) if isinstance(value, list) else value])
    for item in fields(report):
        rows = data[item.name]
        if not isinstance(rows, list) or item.name == "incident_levels":
            continue
        for row in rows:
            keys = [row.get(k) if row.get(k) is not None else "" for k in _KEYS]
            subject_parts = [f"{row['vendor']} {row['ticket_id']}"] if "vendor" in row else []
            subject_parts += [str(row[k]) for k in _SUBJECTS if k != "ticket_id" and row.get(k) not in (None, "")]
            subject = " / ".join(subject_parts)
            for measure, value in row.items():
                if measure in _KEYS or measure in _SUBJECTS or measure == "vendor":
                    continue
                writer.writerow([item.name, *keys, subject, measure, "" if value is None else value])
    return buffer.getvalue()


# ------------------------------------------------------------------------------------ registration
def register(group: click.Group) -> None:
    @group.command("report")
    @click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
                  help="First day (UTC) of the period. Default: six days before --until (a week).")
    @click.option("--until", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
                  help="Last day (UTC) of the period, included. Default: yesterday.")
    @click.option("--format", "fmt", type=click.Choice(FORMATS), default="md", show_default=True)
    @click.option("--dry-run", "dry_run", is_flag=True,
                  help="Report what the service did in dry run (what it would have done) instead of live work.")
    @click.option("--incident-level", "incident_levels", multiple=True,
                  help="A level that makes a ticket an incident (repeatable). Default: the third level and up.")
    @click.option("--csat-window", type=click.IntRange(min=1), default=30, show_default=True,
                  help="Days of CSAT ratings compared before an incident started and after it was resolved.")
    @click.option("--matrix", "matrix_path", default=None, help="The matrix file. Default: MATRIX_PATH.")
    @click.option("--now", "now_value", type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]), default=None,
                  help="Judge clocks and stays still running as of this UTC time (default: now), e.g. to "
                       "reproduce a report sent earlier.")
    def report_command(since: datetime | None, until: datetime | None, fmt: str, dry_run: bool,
                       incident_levels: tuple[str, ...], csat_window: int, matrix_path: str | None,
                       now_value: datetime | None) -> None:
        """The weekly escalation report: time to acknowledge and to diagnose, escalations by level, CSAT
        before/after incidents, SLA attainment, top breach reasons, bypass hits and the incidents, with
        their durations, for a period (default: the last seven full days)."""
        from integration import metrics as queries

        settings = _settings()
        start, end = report_window(since.date() if since else None, until.date() if until else None,
                                   datetime.now(timezone.utc).date())
        loaded = load_configured_matrix(matrix_path or settings.matrix_path)
        try:
            report = queries.build_report(configured_database(), loaded.matrix, since=start, until=end, version=loaded.version,
                                          dry_run=dry_run, incident_levels=incident_levels or None,
                                          csat_window=timedelta(days=csat_window),
                                          now=now_value.replace(tzinfo=timezone.utc) if now_value else None)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--incident-level") from None
        if fmt == "json":
            click.echo(json.dumps(report_json(report), indent=2))
        elif fmt == "csv":
            click.echo(render_csv(report), nl=False)
        else:
            click.echo(render_markdown(report), nl=False)
