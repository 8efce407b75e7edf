"""`escalation incident report VENDOR TICKET [--format md|json]` and `escalation incident actions VENDOR TICKET
[--add SUMMARY --owner ACCOUNT --due DATE]`: the incident report the service stored when the ticket was resolved
(built on demand from the records when there is none yet), and the corrective actions (Jira issues with an owner
and a due date, linked to the ticket). See integration.incident_report and connectors.jira.actions."""
from __future__ import annotations

import json
from datetime import date, datetime, timezone

import click

from cli.common import configured_settings as _settings


def _runtime():
    from service.runtime import get_runtime

    return get_runtime(_settings())


def register(group: click.Group) -> None:
    @group.group("incident")
    def incident() -> None:
        """Incident reports and corrective actions of tickets that reached an incident level."""

    @incident.command("report")
    @click.argument("vendor", type=click.Choice(["zendesk", "jira"]))
    @click.argument("ticket")
    @click.option("--format", "fmt", type=click.Choice(["md", "json"]), default="md", show_default=True)
    def report(vendor: str, ticket: str, fmt: str) -> None:
        """The incident report of TICKET: the stored one, else built now from what the service recorded."""
        from integration.incident_report import build_report, report_markdown, stored_report
        from integration.store.codec import from_json
        from integration.store.db import TicketStateRow
        from integration.model import TicketState

        runtime = _runtime()
        row = stored_report(runtime.db, vendor, ticket)
        if row is not None:
            data, markdown = row.report, row.markdown
        else:
            loaded = runtime.matrix()
            fetched = runtime.connector(vendor).fetch_ticket(ticket)
            with runtime.db.session() as session:
                stored = session.get(TicketStateRow, (vendor, ticket))
                state = from_json(TicketState, stored.state) if stored is not None else None
                data = build_report(session, loaded.matrix, fetched, state, datetime.now(timezone.utc),
                                    version=loaded.version)
            if data is None:
                raise click.ClickException(f"{vendor} ticket {ticket} never reached an incident level "
                                           f"(a level with roles): no report")
            markdown = report_markdown(data)
        click.echo(json.dumps(data, indent=2, sort_keys=True) if fmt == "json" else markdown)

    @incident.command("actions")
    @click.argument("vendor", type=click.Choice(["zendesk", "jira"]))
    @click.argument("ticket")
    @click.option("--add", "summary", help="Create a corrective action with this summary.")
    @click.option("--owner", help="The action's owner: Jira accountId or e-mail address (required with --add).")
    @click.option("--due", type=click.DateTime(formats=["%Y-%m-%d"]), help="Due date, YYYY-MM-DD (required with --add).")
    @click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
    def actions(vendor: str, ticket: str, summary: str | None, owner: str | None, due: datetime | None,
                fmt: str) -> None:
        """List the corrective actions of TICKET, or add one (--add SUMMARY --owner ACCOUNT --due DATE): a Jira
        issue in the matrix's `incident.actions.project`, assigned to the owner with the due date and linked to
        the ticket."""
        from integration.incident_report import list_actions

        runtime = _runtime()
        if summary is not None:
            if not owner or due is None:
                raise click.UsageError("--add needs --owner and --due: a corrective action has an owner and a due date")
            created = _create_action(runtime, vendor, ticket, summary, owner, due.date())
            click.echo(f"created {created['key']}: {summary} (owner {created['owner']}, due {due.date().isoformat()})")
            return
        rows = list_actions(runtime.db, vendor, ticket)
        if fmt == "json":
            click.echo(json.dumps(rows, indent=2))
            return
        if not rows:
            click.echo(f"no corrective actions for {vendor} {ticket}")
            return
        for row in rows:
            click.echo(f"{row['key']}\t{row['owner'] or 'NO OWNER'}\t{row['due'] or 'NO DUE DATE'}\t{row['summary']}")


def _create_action(runtime, vendor: str, ticket: str, summary: str, owner: str, due: date) -> dict:
    from connectors.base import ConnectorError
    from connectors.jira.actions import create_corrective_action
    from connectors.jira.settings import JiraSettings
    from integration.incident_report import record_action

    settings = runtime.matrix().matrix.incident
    config = settings.actions if settings is not None else None
    if config is None:
        raise click.ClickException("the matrix has no `incident.actions` (the Jira project for corrective actions)")
    try:
        fetched = runtime.connector(vendor).fetch_ticket(ticket)
        created = create_corrective_action(JiraSettings(), config, ticket=fetched, summary=summary, owner=owner,
                                           due=due)
    except ConnectorError as exc:
        raise click.ClickException(str(exc)) from None
    record_action(runtime.db, vendor=vendor, ticket_id=ticket, issue_key=created["key"], summary=summary,
                  owner=created["owner"], owner_name=created["owner_name"], due=due, url=created["url"],
                  now=datetime.now(timezone.utc))
    return created
