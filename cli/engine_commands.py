"""`escalation explain` and `escalation simulate`: run the decision engine on tickets in the neutral JSON
format (docs/ticket-format.md) without touching a helpdesk.

Exit status: 0 when the command ran (whatever it decided), 1 when the matrix or a ticket file is invalid
(the problem is printed to stderr, one line each).
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Sequence

import click

from integration.engine import compile_matrix, decide, explain
from integration.model import Decision
from integration.ticket_json import TicketFormatError, TicketRecord, load_ticket_file, load_ticket_files
from matrix_config.loader import LoadedMatrix, MatrixInvalid, load_matrix
from matrix_config.schema import format_duration
from datetime import timedelta

FORMATS = click.Choice(["text", "json"])


def _load_matrix_or_exit(path: str) -> LoadedMatrix:
    try:
        return load_matrix(path)
    except MatrixInvalid as invalid:
        for line in invalid.errors:
            click.echo(line, err=True)
        click.echo(f"{path}: the matrix is invalid (run `escalation validate {path}`)", err=True)
        sys.exit(1)


def _tickets_or_exit(paths: Sequence[str]) -> list[TicketRecord]:
    try:
        return load_ticket_files(paths)
    except TicketFormatError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)


def _parse_now(value: str | None) -> datetime:
    if value is None:
        return datetime.now(timezone.utc).replace(microsecond=0)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date-time, e.g. 2026-11-27T10:00:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value, key=str) if isinstance(value, (set, frozenset)) else list(value)
    return str(value)


def _dump(data: Any) -> str:
    return json.dumps(data, indent=2, default=_json_default, ensure_ascii=False)


def _clock_text(seconds: int) -> str:
    return format_duration(timedelta(seconds=seconds))


def _value(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, (list, tuple, set, frozenset)):
        return "[" + ", ".join(str(v) for v in value) + "]" if value else "(empty)"
    return str(value)


def _indented(text: str, prefix: str = "    | ") -> list[str]:
    return [prefix + line if line else prefix.rstrip() for line in text.splitlines()]


def decision_lines(decision: Decision, ticket_priority: str | None, ticket_group: str | None) -> list[str]:
    """A decision, for people."""
    lines: list[str] = []
    if decision.to_level:
        move = f"{decision.from_level or '(new)'} -> {decision.to_level}"
    else:
        move = f"stays at {decision.from_level or '(unplaced)'}"
    lines.append(f"Decision: {move}  ({decision.reason})")
    lines.append(f"  matrix version: {decision.matrix_version}")
    if decision.held_level:
        lines.append(f"  held before {decision.held_level}: required data missing")
    if decision.missing_data:
        lines.append(f"  missing data (asked now): {', '.join(decision.missing_data)}")
    if decision.priority:
        lines.append(f"  priority: {ticket_priority or '(unset)'} -> {decision.priority}")
    if decision.owner_group:
        lines.append(f"  owner group: {ticket_group or '(unset)'} -> {decision.owner_group}")
    for key, value in sorted(decision.field_updates.items()):
        lines.append(f"  set field {key} = {_value(value)}")
    for tag in decision.add_tags:
        lines.append(f"  add tag {tag}")
    for tag in decision.remove_tags:
        lines.append(f"  remove tag {tag}")
    if decision.bypassed is not None:
        lines.append(f"  bypassed: {'yes' if decision.bypassed else 'no'}")
    if decision.start_clocks:
        clocks = ", ".join(
            f"{c.clock} {_clock_text(c.target_seconds)}" + (f" ({c.calendar})" if c.calendar else "")
            for c in decision.start_clocks
        )
        lines.append(f"  start clocks: {clocks}")
    if decision.milestones:
        met = ", ".join(f"{name} at {at.isoformat()}" for name, at in decision.milestones.items())
        lines.append(f"  milestones: {met}")
    if decision.stop_clocks:
        lines.append(f"  stop clocks: {', '.join(decision.stop_clocks)}")
    if decision.public_reply:
        lines.append(f"  public reply ({decision.reply_template}):")
        lines.extend(_indented(decision.public_reply))
    if decision.internal_note:
        lines.append("  internal note:")
        lines.extend(_indented(decision.internal_note))
    if decision.is_empty:
        lines.append("  nothing to do (the ticket already reflects the matrix)")
    return lines


# ------------------------------------------------------------------------------------ simulate
@dataclass(frozen=True)
class Outcome:
    """What `simulate` shows per ticket; two matrices "differ" for a ticket when these differ."""

    ticket: str
    source: str
    level: str | None
    held_level: str | None
    owner: str | None
    priority: str | None
    reply_template: str | None
    missing_data: tuple[str, ...]
    rule_id: str | None
    reason: str

    COMPARED = ("level", "held_level", "owner", "priority", "reply_template", "missing_data", "rule_id")

    def as_dict(self) -> dict[str, Any]:
        return {
            "ticket": self.ticket, "source": self.source, "level": self.level, "held_level": self.held_level,
            "owner": self.owner, "priority": self.priority, "reply_template": self.reply_template,
            "missing_data": list(self.missing_data), "rule_id": self.rule_id, "reason": self.reason,
        }


def outcome(record: TicketRecord, loaded: LoadedMatrix, now: datetime) -> tuple[Outcome, Decision]:
    decision = decide(record.ticket, record.state, loaded.matrix, now, version=loaded.version)
    ticket = record.ticket
    current = record.state.level if record.state else None
    return Outcome(
        ticket=ticket.id,
        source=record.source,
        level=decision.to_level or current,
        held_level=decision.held_level,
        owner=decision.owner_group or ticket.group,
        priority=decision.priority or ticket.priority,
        reply_template=decision.reply_template,
        missing_data=decision.missing_data,
        rule_id=decision.rule_id,
        reason=decision.reason,
    ), decision


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*headers).rstrip(), fmt.format(*("-" * w for w in widths)).rstrip()]
    lines.extend(fmt.format(*(str(x) for x in row)).rstrip() for row in rows)
    return lines


def _level_cell(o: Outcome) -> str:
    return f"{o.level} (held: {o.held_level})" if o.held_level else (o.level or "-")


def _simulate_rows(outcomes: Sequence[Outcome]) -> list[list[str]]:
    return [
        [o.ticket, _level_cell(o), o.owner or "-", o.priority or "-", o.reply_template or "-", o.reason]
        for o in outcomes
    ]


def _differences(a: Outcome, b: Outcome) -> dict[str, tuple[Any, Any]]:
    return {name: (getattr(a, name), getattr(b, name)) for name in Outcome.COMPARED if getattr(a, name) != getattr(b, name)}


def register(group: click.Group) -> None:
    @group.command("explain")
    @click.argument("matrix", type=click.Path(exists=True, dir_okay=False))
    @click.argument("ticket", type=click.Path(exists=True, dir_okay=False))
    @click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
    @click.option("--now", "now_text", metavar="ISO8601", help="Time of the decision (default: now, UTC).")
    @click.option("--all-rules", is_flag=True, help="Evaluate every rule, not only those up to the first match.")
    def explain_command(matrix: str, ticket: str, fmt: str, now_text: str | None, all_rules: bool) -> None:
        """Show which rules were tried for TICKET.json, which matched and why, and the decision."""
        loaded = _load_matrix_or_exit(matrix)
        try:
            records = load_ticket_file(ticket)
        except TicketFormatError as exc:
            click.echo(str(exc), err=True)
            sys.exit(1)
        if len(records) != 1:
            click.echo(f"{ticket}: holds {len(records)} tickets; explain takes one (use `simulate` for many)", err=True)
            sys.exit(1)
        record = records[0]
        now = _parse_now(now_text)
        result = explain(record.ticket, record.state, loaded.matrix, now, version=loaded.version, all_rules=all_rules)
        total = len(compile_matrix(loaded.matrix, loaded.version).index.rules)
        not_tried = total - len(result.traces)
        if fmt == "json":
            click.echo(_dump({
                "matrix": {"name": loaded.matrix.name, "version": loaded.version, "path": loaded.path},
                "ticket": record.ticket.id,
                "state": {"level": record.state.level if record.state else None},
                "rules": [
                    {
                        "id": t.rule_id, "position": t.position + 1, "matched": t.matched,
                        "level": t.level, "bypass": t.bypass,
                        "conditions": [
                            {"attribute": c.attribute, "wants": c.wants, "actual": c.actual, "holds": c.holds}
                            for c in t.checks
                        ],
                    }
                    for t in result.traces
                ],
                "matched_rule": result.matched_rule,
                "rules_not_tried": not_tried,
                "decision": result.decision.to_dict(),
            }))
            return
        state = record.state
        lines = [
            f"Matrix: {loaded.matrix.name} (version {loaded.version})",
            f"Ticket: {record.ticket.id} {record.ticket.subject!r}",
            "State: " + (
                f"at {state.level} since {state.entered_level_at.isoformat() if state.entered_level_at else '?'}"
                + (f", pending breaches: {', '.join(state.pending_breaches)}" if state.pending_breaches else "")
                + (f", waiting for data before {state.pending_level}" if state.pending_level else "")
                if state and state.level else "new to the service"
            ),
            "",
            "Rules, in file order (the first match wins):",
        ]
        for t in result.traces:
            outcome_text = ("bypass" if t.bypass else f"-> {t.level}")
            verdict = "MATCH" if t.matched else "no match"
            lines.append(f"  {t.position + 1}. {t.rule_id}  {verdict}  ({outcome_text})")
            if not t.checks:
                lines.append("       (no conditions: matches every ticket)")
            width = max((len(f"{c.attribute} {c.wants}") for c in t.checks), default=0)
            for c in t.checks:
                mark = "✓" if c.holds else "✗"
                lines.append(f"       {mark} {f'{c.attribute} {c.wants}':<{width}}   ticket has {_value(c.actual)}")
        if not result.traces:
            lines.append("  (the matrix has no rules)")
        if not_tried:
            lines.append(f"  ... {not_tried} later rule(s) not tried (use --all-rules to see them)")
        if result.matched_rule is None:
            lines.append(f"  no rule matched: the entry level {loaded.matrix.levels[0].id} applies")
        lines.append("")
        lines.extend(decision_lines(result.decision, record.ticket.priority, record.ticket.group))
        click.echo("\n".join(lines))

    @group.command("simulate")
    @click.argument("matrix", type=click.Path(exists=True, dir_okay=False))
    @click.argument("tickets", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
    @click.option("--diff", "other", type=click.Path(exists=True, dir_okay=False), metavar="OTHER_MATRIX",
                  help="Show only the tickets whose outcome differs under OTHER_MATRIX.")
    @click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
    @click.option("--now", "now_text", metavar="ISO8601", help="Time of the decisions (default: now, UTC).")
    def simulate_command(matrix: str, tickets: tuple[str, ...], other: str | None, fmt: str,
                         now_text: str | None) -> None:
        """Decide every ticket in TICKETS (JSON objects, JSON arrays or JSONL) and summarise the outcomes."""
        loaded = _load_matrix_or_exit(matrix)
        other_loaded = _load_matrix_or_exit(other) if other else None
        records = _tickets_or_exit(tickets)
        now = _parse_now(now_text)
        outcomes = [outcome(record, loaded, now)[0] for record in records]
        if other_loaded is None:
            _print_simulation(loaded, outcomes, fmt)
            return
        others = [outcome(record, other_loaded, now)[0] for record in records]
        _print_diff(loaded, other_loaded, outcomes, others, fmt)


def _print_simulation(loaded: LoadedMatrix, outcomes: list[Outcome], fmt: str) -> None:
    levels = Counter(o.level for o in outcomes)
    held = sum(1 for o in outcomes if o.held_level)
    if fmt == "json":
        click.echo(_dump({
            "matrix": {"name": loaded.matrix.name, "version": loaded.version, "path": loaded.path},
            "tickets": [o.as_dict() for o in outcomes],
            "summary": {"tickets": len(outcomes), "by_level": dict(sorted(levels.items(), key=lambda kv: str(kv[0]))),
                        "held_for_data": held},
        }))
        return
    click.echo(f"Matrix: {loaded.matrix.name} (version {loaded.version})")
    click.echo("\n".join(_table(["TICKET", "LEVEL", "OWNER", "PRIORITY", "REPLY", "REASON"], _simulate_rows(outcomes))))
    by_level = ", ".join(f"{level} {levels[level]}" for level in [lv.id for lv in loaded.matrix.levels] if levels[level])
    click.echo(f"\n{len(outcomes)} ticket(s): {by_level or 'none placed'}; {held} held for missing data")


def _print_diff(base: LoadedMatrix, other: LoadedMatrix, before: list[Outcome], after: list[Outcome], fmt: str) -> None:
    changed = [(a, b, _differences(a, b)) for a, b in zip(before, after)]
    changed = [c for c in changed if c[2]]
    if fmt == "json":
        click.echo(_dump({
            "base": {"name": base.matrix.name, "version": base.version, "path": base.path},
            "other": {"name": other.matrix.name, "version": other.version, "path": other.path},
            "tickets": len(before),
            "changed": [
                {"ticket": a.ticket, "source": a.source,
                 "changes": {k: {"base": v[0], "other": v[1]} for k, v in diff.items()},
                 "base": a.as_dict(), "other": b.as_dict()}
                for a, b, diff in changed
            ],
        }))
        return
    click.echo(f"Base:  {base.path} (version {base.version})")
    click.echo(f"Other: {other.path} (version {other.version})")
    if base.version == other.version:
        click.echo("The two matrices have the same version: no outcome can differ.")
    rows = []
    for a, b, diff in changed:
        for name, (old, new) in diff.items():
            rows.append([a.ticket, name, _value(old), _value(new)])
    if rows:
        click.echo("\n".join(_table(["TICKET", "CHANGES", "BASE", "OTHER"], rows)))
    click.echo(f"\n{len(changed)} of {len(before)} ticket(s) change outcome")
