"""Admin views over what the service stored: `escalation history`, `escalation metrics`, and
`escalation send-test-webhook` to check a deployment's webhook wiring end to end."""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import click

from cli.common import configured_database as _database, configured_settings as _settings


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


def _changes_by_part(decision: dict) -> list[tuple[str, str]]:
    """(part, change) for what a recorded decision writes, in an admin's words; the part is how the
    pipeline delivers and recovers it (connectors.base.PART_*: fields, reply, note)."""
    changes = []
    if decision.get("priority"):
        changes.append(("fields", f"priority {decision['priority']}"))
    if decision.get("owner_group"):
        changes.append(("fields", f"group {decision['owner_group']}"))
    for name, value in (decision.get("field_updates") or {}).items():
        changes.append(("fields", f"{name} {value}"))
    if decision.get("add_tags"):
        changes.append(("fields", "add tags " + ", ".join(decision["add_tags"])))
    if decision.get("remove_tags"):
        changes.append(("fields", "remove tags " + ", ".join(decision["remove_tags"])))
    if decision.get("public_reply") and decision.get("missing_data"):
        changes.append(("reply", "ask the customer for " + ", ".join(decision["missing_data"])))
    elif decision.get("public_reply"):
        changes.append(("reply", "public reply" + (f" ({decision['reply_template']})" if decision.get("reply_template") else "")))
    elif decision.get("missing_data"):
        changes.append(("fields", "ask the customer for " + ", ".join(decision["missing_data"])))
    if decision.get("internal_note"):
        changes.append(("note", "internal note"))
    return changes


def _changes(decision: dict) -> list[str]:
    """What a recorded decision writes (or, in a dry run, would write), in an admin's words."""
    return [change for _part, change in _changes_by_part(decision)]


# How a part of a decision reached the vendor (decisions.parts "outcome", see integration.pipeline).
_REACHED = {"written": "", "visible": " (found on the ticket after a crash)", "resent": " (sent again after a crash)",
            "assumed": " (assumed written with the rest)"}
_NOT_REACHED = {"unconfirmed": "not confirmed: may have reached the customer, never sent twice",
                "not sent": "not sent", "missing": "not on the ticket"}
_NOTHING_WRITTEN = {"abandoned", "conflict", "failed"}  # closed without anything of it on the ticket


def _delivery(row) -> tuple[list[str], list[str]]:
    """(what reached the vendor, what did not and why) for one decision row: per part where the row
    records it, else by status (`applied`: all of it; `abandoned`/`conflict`/`failed`: none of it)."""
    changes = _changes_by_part(row.decision or {})
    outcome = (row.parts or {}).get("outcome")
    if outcome is None:
        if row.status in _NOTHING_WRITTEN:
            return [], [f"{change} (not written)" for _part, change in changes]
        if row.status == "applying":
            return [], [f"{change} (in flight, or waiting for recovery)" for _part, change in changes]
        return [change for _part, change in changes], []
    reached, missed = [], []
    for part, change in changes:
        status = outcome.get(part, "written")
        if status in _REACHED:
            reached.append(change + _REACHED[status])
        else:
            missed.append(f"{change} ({_NOT_REACHED.get(status, status)})")
    return reached, missed


def ticket_history(db, vendor: str, ticket_id: str) -> dict:
    from sqlalchemy import select

    from integration.store.db import DecisionRow, TicketStateRow

    with db.session() as session:
        state = session.get(TicketStateRow, (vendor, ticket_id))
        decisions = session.scalars(
            select(DecisionRow)
            .where(DecisionRow.vendor == vendor, DecisionRow.ticket_id == ticket_id)
            .order_by(DecisionRow.decided_at, DecisionRow.id)
        ).all()
        return {
            "vendor": vendor,
            "ticket_id": ticket_id,
            "state": None if state is None else {
                "level": state.level,
                "entered_level_at": _iso(state.entered_level_at),
                "matrix_version": state.matrix_version,
                "rule_id": state.rule_id,
                "bypassed": state.bypassed,
                "pending_level": state.pending_level,
                "data_requested": list(state.data_requested or []),
                "milestones": dict(state.milestones or {}),
            },
            "decisions": [
                {
                    "decided_at": _iso(row.decided_at),
                    "trigger": row.trigger,
                    "from_level": row.from_level,
                    "to_level": row.to_level,
                    "reason": row.reason,
                    "rule_id": row.rule_id,
                    "matrix_version": row.matrix_version,
                    "status": row.status,
                    "writes": row.writes,
                    "dry_run": row.dry_run,
                    "error": row.error,
                    "changes": _changes(row.decision or {}),
                    "parts": dict((row.parts or {}).get("outcome") or {}),
                    "written": _delivery(row)[0],
                    "not_written": _delivery(row)[1],
                }
                for row in decisions
            ],
        }


def register(group: click.Group) -> None:
    @group.command("history")
    @click.argument("vendor", type=click.Choice(["zendesk", "jira"]))
    @click.argument("ticket_id")
    @click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
    def history(vendor: str, ticket_id: str, fmt: str) -> None:
        """What the service knows about one ticket and every decision it made, with the matrix version."""
        data = ticket_history(_database(), vendor, ticket_id)
        if data["state"] is None and not data["decisions"]:
            raise click.ClickException(f"no record of {vendor} ticket {ticket_id}")
        if fmt == "json":
            click.echo(json.dumps(data, indent=2))
            return
        state = data["state"]
        if state:
            click.echo(f"{vendor} {ticket_id}: level {state['level'] or '-'} since {state['entered_level_at']}, "
                       f"matrix version {state['matrix_version']}, placed by {state['rule_id'] or '-'}"
                       + (", bypassed" if state["bypassed"] else ""))
            if state["pending_level"]:
                click.echo(f"  waiting to enter {state['pending_level']} for: {', '.join(state['data_requested'])}")
            for clock, met_at in state["milestones"].items():
                click.echo(f"  {clock} met at {met_at}")
        for row in data["decisions"]:
            move = f"{row['from_level'] or 'new'} -> {row['to_level']}" if row["to_level"] else "no move"
            dry_run_note = " (dry run)" if row["dry_run"] and row["status"] != "dry_run" else ""
            outcome = f"{row['status']}{dry_run_note}, {row['writes']} write(s)"
            click.echo(f"{row['decided_at']}  {move:<12} {row['reason']}  [matrix {row['matrix_version']}; {outcome}]")
            if row["dry_run"] and row["changes"]:
                click.echo(f"    would write: {'; '.join(row['changes'])}")
            elif not row["dry_run"]:
                if row["written"]:
                    click.echo(f"    wrote: {'; '.join(row['written'])}")
                if row["not_written"]:
                    click.echo(f"    did not write: {'; '.join(row['not_written'])}")
            if row["error"]:
                click.echo(f"    error: {row['error']}")

    @group.command("metrics")
    @click.option("--since", type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]), default=None,
                  help="Only what happened from this UTC date/time on.")
    @click.option("--live-only", is_flag=True, help="Leave out what the service did in dry run (shown apart by default).")
    @click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
    def metrics(since: datetime | None, live_only: bool, fmt: str) -> None:
        """Time to acknowledge / diagnose / interim fix / resolve per level (p50, p90, max; wall-clock and
        business time), escalations into each level (placed, moved up, set by hand), CSAT escalated vs never
        escalated, hand-set levels entered without required data, bypass hits per rule. Dry-run figures are
        shown apart from live ones. `escalation report` gives the weekly report."""
        from cli.report_commands import load_configured_matrix, metrics_sections, print_metrics_text

        db = _database()
        since_utc = since.replace(tzinfo=timezone.utc) if since else None
        matrix = load_configured_matrix(_settings().matrix_path)
        report = metrics_sections(db, matrix.matrix, since=since_utc, dry_run=False)
        if not live_only:
            dry = metrics_sections(db, matrix.matrix, since=since_utc, dry_run=True)
            if any(dry[key] for key in dry if isinstance(dry[key], list)):
                report["dry_run"] = dry
        if fmt == "json":
            click.echo(json.dumps(report, indent=2, default=str))
            return
        print_metrics_text(report)
        if report.get("dry_run"):
            click.echo("")
            click.echo("Dry run (what the service would have done; not part of the figures above):")
            print_metrics_text(report["dry_run"], indent="  ")

    @group.command("send-test-webhook")
    @click.argument("vendor", type=click.Choice(["zendesk", "jira"]))
    @click.argument("payload", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--url", default=None, help="Default: http://127.0.0.1:$PORT/webhooks/VENDOR")
    def send_test_webhook(vendor: str, payload: Path, url: str | None) -> None:
        """Sign PAYLOAD with the configured webhook secret and POST it, as the helpdesk would.

        Jira: signed with JIRA_WEBHOOK_SECRET, or else sent with the JSM automation's shared-secret header.
        Sending the same file twice is answered as a duplicate (identical bodies are deduplicated)."""
        import uuid

        import requests

        from webhooks.signatures import jira_signature, zendesk_signature

        settings = _settings()
        body = payload.read_bytes()
        url = url or f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/webhooks/{vendor}"
        headers = {"Content-Type": "application/json"}
        if vendor == "zendesk":
            if settings.zendesk_webhook_secret is None:
                raise click.ClickException("ZENDESK_WEBHOOK_SECRET is not set")
            stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            headers["X-Zendesk-Webhook-Signature-Timestamp"] = stamp
            headers["X-Zendesk-Webhook-Signature"] = zendesk_signature(
                settings.zendesk_webhook_secret.get_secret_value(), stamp, body)
            headers["X-Zendesk-Webhook-Invocation-Id"] = str(uuid.uuid4())
        elif settings.jira_webhook_secret is not None:
            headers["X-Hub-Signature"] = jira_signature(settings.jira_webhook_secret.get_secret_value(), body)
            headers["X-Atlassian-Webhook-Identifier"] = str(uuid.uuid4())
        elif settings.jira_shared_secret is not None:
            headers[settings.jira_shared_secret_header] = settings.jira_shared_secret.get_secret_value()
        else:
            raise click.ClickException("neither JIRA_WEBHOOK_SECRET nor JIRA_SHARED_SECRET is set")
        try:
            response = requests.post(url, data=body, headers=headers, timeout=10)
        except requests.RequestException as exc:
            raise click.ClickException(f"could not reach {url}: {type(exc).__name__}") from None
        click.echo(f"{response.status_code} {response.text.strip()}")
        if response.status_code >= 300:
            raise SystemExit(1)
