"""`escalation notify test CHANNEL` (wiring check) and `escalation alerts list|retry|send` (the alert outbox:
what was sent, what waits for a retry, the dead letters with their reason). See integration.alerts."""
from __future__ import annotations

import json
import sys
from datetime import datetime

import click

from cli.common import configured_database as _database, configured_settings as _settings


def _matrix(path: str | None):
    from matrix_config.loader import MatrixInvalid, load_matrix

    try:
        return load_matrix(path or _settings().matrix_path)
    except MatrixInvalid as exc:
        raise click.ClickException("the matrix is invalid:\n" + "\n".join(exc.errors)) from None


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


def _row_dict(row) -> dict:
    return {"id": row.id, "status": row.status, "vendor": row.vendor, "ticket_id": row.ticket_id, "event": row.event,
            "level": row.level, "clock": row.clock or None, "channel": row.channel, "attempts": row.attempts,
            "created_at": _iso(row.created_at), "sent_at": _iso(row.sent_at) if row.sent_at else None,
            "next_attempt_at": _iso(row.next_attempt_at) if row.status == "pending" else None,
            "error": row.last_error, "title": (row.message or {}).get("title")}


def register(group: click.Group) -> None:
    @group.group("notify")
    def notify() -> None:
        """Alert channels of the matrix's `notify:` section."""

    @notify.command("test")
    @click.argument("channel")
    @click.option("--matrix", "matrix_path", type=click.Path(dir_okay=False), default=None,
                  help="Matrix file (default: MATRIX_PATH).")
    def notify_test(channel: str, matrix_path: str | None) -> None:
        """Send a test message to CHANNEL now, through the retry layer (checks URL, secret, SMTP login)."""
        from connectors.alert_channels import send_with_retry
        from connectors.base import ConnectorError
        from integration.alerts import test_message

        loaded = _matrix(matrix_path)
        channels = loaded.matrix.notify.channels if loaded.matrix.notify is not None else {}
        if channel not in channels:
            known = ", ".join(channels) or "none are declared under notify.channels"
            raise click.ClickException(f"unknown channel '{channel}': {known}")
        settings = channels[channel]
        try:
            send_with_retry(channel, settings, test_message(loaded, channel))
        except ConnectorError as exc:
            click.echo(f"test alert to '{channel}' ({settings.kind}) failed: {exc}", err=True)
            sys.exit(1)
        click.echo(f"test alert sent to '{channel}' ({settings.kind})")

    @group.group("alerts")
    def alerts() -> None:
        """The alert outbox: sent, pending and dead-lettered alerts."""

    @alerts.command("list")
    @click.option("--status", type=click.Choice(["pending", "sending", "sent", "dead"]), default=None)
    @click.option("--ticket", default=None, metavar="VENDOR:ID", help="Only this ticket's alerts.")
    @click.option("--limit", type=int, default=50, show_default=True)
    @click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
    def alerts_list(status: str | None, ticket: str | None, limit: int, fmt: str) -> None:
        """Newest alerts first; dead letters and pending retries with their reason."""
        from integration.alerts import list_alerts

        vendor = ticket_id = None
        if ticket:
            vendor, _, ticket_id = ticket.partition(":")
            if not ticket_id:
                raise click.UsageError("--ticket takes VENDOR:ID, e.g. zendesk:5158")
        rows = list_alerts(_database(), status=status, vendor=vendor, ticket_id=ticket_id, limit=limit)
        if fmt == "json":
            click.echo(json.dumps([_row_dict(r) for r in rows], indent=2))
            return
        if not rows:
            click.echo("no alerts")
            return
        for r in rows:
            clock = f"/{r.clock}" if r.clock else ""
            line = (f"{r.id:>6} {r.status:<8} {r.vendor}:{r.ticket_id} {r.event} {r.level}{clock} -> {r.channel} "
                    f"attempts={r.attempts} created={_iso(r.created_at)}")
            if r.status == "sent":
                line += f" sent={_iso(r.sent_at)}"
            if r.last_error and r.status in ("dead", "pending"):
                line += f"  error: {r.last_error}"
            click.echo(line)

    @alerts.command("retry")
    @click.argument("ids", nargs=-1, type=int)
    @click.option("--all-dead", is_flag=True, help="Retry every dead alert.")
    def alerts_retry(ids: tuple[int, ...], all_dead: bool) -> None:
        """Put dead alerts back in the outbox with a fresh attempt budget (after fixing the channel)."""
        from integration.alerts import retry_alerts

        if not ids and not all_dead:
            raise click.UsageError("give alert ids or --all-dead")
        count = retry_alerts(_database(), ids, all_dead=all_dead)
        click.echo(f"{count} alert(s) back in the outbox; a worker sends them within its next alert sweep")
        if not count:
            sys.exit(1)

    @alerts.command("send")
    def alerts_send() -> None:
        """Send the due alerts now (what the worker does continuously)."""
        from connectors.alert_channels import send_with_retry
        from integration.alerts import deliver_due

        report = deliver_due(_database(), send=send_with_retry)
        click.echo(f"alerts: {report}")
