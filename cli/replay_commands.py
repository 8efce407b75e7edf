"""`escalation snapshots export` and `escalation replay`: what a draft matrix would have done to the
tickets the service recorded (integration.snapshots, integration.replay).

    escalation snapshots export [--since 30d] [--vendor zendesk] > history.jsonl.gz
    escalation replay --matrix DRAFT.yaml [--since 30d] [--vendor V] [--from-file history.jsonl.gz]
                      [--format table|json|md]

Exit status of `replay`: 0 the report was made (differences or not; an empty history says so), 1 the draft
is invalid (its `FILE:LINE:COL` lines on stderr) or the history file cannot be read, 2 usage.
"""
from __future__ import annotations

import gzip
import json
import re
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import click

from cli.common import configured_database as _database

_RELATIVE = re.compile(r"^\s*(\d+)\s*([dhm])\s*$", re.IGNORECASE)
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_since(value: str | None, now: datetime | None = None) -> datetime | None:
    """`30d`, `12h`, `90m`, or an ISO date/time (UTC when it names no offset)."""
    if not value:
        return None
    now = now or datetime.now(timezone.utc)
    match = _RELATIVE.match(value)
    if match:
        amount, unit = int(match.group(1)), match.group(2).lower()
        return now - timedelta(**{_UNITS[unit]: amount})
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: give a duration such as 30d, 12h or 90m, or a date such as 2026-11-01")
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _load_draft(path: str):
    """The draft, or exit 1 with its `FILE:LINE:COL` lines (schema, cross-references and lint errors)."""
    from cli.matrix_commands import validate_matrix
    from matrix_config.loader import load_matrix

    result = validate_matrix(path)
    if not result["valid"]:
        for line in result["errors"]:
            click.echo(line, err=True)
        click.echo(f"{path}: invalid, {len(result['errors'])} problem(s): nothing replayed", err=True)
        sys.exit(1)
    return load_matrix(path)


# ------------------------------------------------------------------------------------ rendering
def _path(levels: list[str]) -> str:
    return " > ".join(levels) if levels else "-"


def _ticket_rows(report: Any) -> list[list[str]]:
    rows = []
    for d in report.differences:
        cells = [f"{d.vendor}:{d.ticket_id}"]
        cells.append(f"{_path(d.levels[0])} => {_path(d.levels[1])}" if d.levels else "same")
        cells.append(f"{_path(d.owners[0])} => {_path(d.owners[1])}" if d.owners else "same")
        cells.append(f"{_path(d.priorities[0])} => {_path(d.priorities[1])}" if d.priorities else "same")
        cells.append(f"+{len(d.messages_added)} -{len(d.messages_removed)}")
        breaches = [f"+{level} {clock}" for level, clock in d.breaches_added]
        breaches += [f"-{level} {clock}" for level, clock in d.breaches_removed]
        cells.append(", ".join(breaches) or "same")
        rows.append(cells)
    return rows


HEADERS = ["ticket", "level path (now => draft)", "owner", "priority", "messages", "breaches"]


def _summary_lines(report: Any) -> list[tuple[str, str]]:
    s = report.summary()
    return [
        ("tickets replayed", str(s["tickets"])), ("recorded passes", str(s["passes"])),
        ("tickets that differ", str(s["tickets_differing"])), ("level path changes", str(s["level_path_changes"])),
        ("customer messages added", str(s["messages_added"])), ("customer messages removed", str(s["messages_removed"])),
        ("breaches", f"{s['breaches_baseline']} => {s['breaches_draft']} ({s['breach_delta']:+d})"),
    ]


def _level_rows(report: Any) -> list[list[str]]:
    rows = []
    for level, c in sorted(report.per_level.items()):
        rows.append([level, f"{c['entries_baseline']} => {c['entries_draft']}",
                     f"{c['breaches_baseline']} => {c['breaches_draft']} ({c['breaches_draft'] - c['breaches_baseline']:+d})"])
    return rows


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * width for width in widths))
    lines += ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return lines


def _md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]


def render(report: Any, fmt: str, draft_path: str, source: str) -> str:
    if fmt == "json":
        return json.dumps({"draft": draft_path, "history": source, **report.as_dict()}, indent=2)
    skipped = [f"{len(keys)} ticket(s) decided with matrix version {version}, which the history does not hold: "
               f"not replayed" for version, keys in sorted(report.skipped.items())]
    if fmt == "md":
        lines = [f"### Replay of `{draft_path}` (version {report.draft_version}) over {source}", ""]
        lines += _md_table(["summary", "count"], [[k, v] for k, v in _summary_lines(report)])
        if report.per_level:
            lines += ["", "**Per level** (now => draft)", ""]
            lines += _md_table(["level", "entries", "breaches"], _level_rows(report))
        lines += [""]
        if report.differences:
            lines += [f"**Tickets that would differ** ({len(report.differences)})", ""]
            lines += _md_table(HEADERS, _ticket_rows(report))
        else:
            lines += ["No ticket would be handled differently."]
        lines += [f"", *[f"> {line}" for line in skipped]] if skipped else []
        return "\n".join(lines).rstrip()
    lines = [f"Replay of {draft_path} (version {report.draft_version}) over {source}, clocks up to "
             f"{report.end.isoformat(timespec='minutes') if report.end else '-'}"]
    lines += [f"  {k}: {v}" for k, v in _summary_lines(report)]
    if report.per_level:
        lines += ["", *_table(["level", "entries (now => draft)", "breaches (now => draft)"], _level_rows(report))]
    lines.append("")
    if report.differences:
        lines += _table(HEADERS, _ticket_rows(report))
        for d in report.differences:
            for message in d.messages_added:
                lines.append(f"{d.vendor}:{d.ticket_id}: + message {message.splitlines()[0][:100]}")
            for message in d.messages_removed:
                lines.append(f"{d.vendor}:{d.ticket_id}: - message {message.splitlines()[0][:100]}")
    else:
        lines.append("No ticket would be handled differently.")
    lines += skipped
    return "\n".join(lines)


def register(group: click.Group) -> None:
    @group.group("snapshots")
    def snapshots_group() -> None:
        """The ticket snapshots each pass stored (kept SNAPSHOT_RETENTION_DAYS, default 90)."""

    @snapshots_group.command("export")
    @click.option("--since", "since_text", default=None, metavar="30d|DATE",
                  help="Tickets with a pass since then (a duration back from now, or a date), whole.")
    @click.option("--vendor", type=click.Choice(["zendesk", "jira"]), default=None)
    @click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
                  help="Write here instead of standard output.")
    def export_command(since_text: str | None, vendor: str | None, output: str | None) -> None:
        """Write the recorded history as gzipped JSON Lines (no credentials), for `replay --from-file`."""
        from integration.snapshots import export_lines

        since = parse_since(since_text)
        db = _database()
        now = datetime.now(timezone.utc)
        if not output and sys.stdout.isatty():
            raise click.UsageError("the export is gzip data: redirect it to a file (> history.jsonl.gz) or use -o")
        with click.open_file(output or "-", "wb") as target:
            with gzip.GzipFile(fileobj=target, mode="wb", mtime=0) as packed:
                for line in export_lines(db, since=since, vendor=vendor, exported_at=now):
                    packed.write(line.encode("utf-8") + b"\n")

    @group.command("replay")
    @click.option("--matrix", "draft_path", required=True, type=click.Path(dir_okay=False),
                  help="The draft matrix to replay the history with.")
    @click.option("--since", "since_text", default=None, metavar="30d|DATE",
                  help="Tickets with a pass since then (a duration back from now, or a date), from their first pass.")
    @click.option("--vendor", type=click.Choice(["zendesk", "jira"]), default=None)
    @click.option("--from-file", "from_file", type=click.Path(exists=True, dir_okay=False), default=None,
                  help="A `snapshots export` file instead of the database.")
    @click.option("--format", "fmt", type=click.Choice(["table", "json", "md"]), default="table", show_default=True)
    def replay_command(draft_path: str, since_text: str | None, vendor: str | None, from_file: str | None,
                       fmt: str) -> None:
        """Re-run the engine and the SLA clocks over recorded tickets with DRAFT and report what would differ
        from the recorded matrix versions. Reads only: no vendor call, no write."""
        from integration.replay import replay
        from integration.snapshots import HistoryFileError, load_history, read_history_file

        draft = _load_draft(draft_path)
        since = parse_since(since_text)
        if from_file:
            try:
                history = read_history_file(from_file, since=since, vendor=vendor)
            except HistoryFileError as exc:
                click.echo(str(exc), err=True)
                sys.exit(1)
            source = from_file
        else:
            history = load_history(_database(), since=since, vendor=vendor)
            source = "the database"
        if not history.passes:
            scope = "".join([f" since {since.isoformat(timespec='minutes')}" if since else "",
                             f" for {vendor}" if vendor else ""])
            message = f"Nothing to replay: {source} holds no recorded passes{scope}."
            if fmt == "json":
                click.echo(json.dumps({"draft": draft_path, "history": source, "empty": True, "message": message},
                                      indent=2))
            else:
                click.echo(message)
            return
        if sys.stderr.isatty():
            with click.progressbar(length=len(history.passes), label="replaying", file=sys.stderr) as bar:
                report = replay(history, draft, progress=bar.update)
        else:
            report = replay(history, draft)
        click.echo(render(report, fmt, draft_path, source))
