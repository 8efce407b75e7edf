"""`escalation sla plan|apply|check`: the vendor plugin (connectors.vendors) does the work and returns a
report object (`render()`, `to_dict()`, `ok`); this module prints it and chooses the exit status.

Exit status: 0 done (and, for `check`, no drift); 1 the matrix cannot be expressed, the vendor refused, a
re-read after `apply` still differs, or `check` found drift; 2 the settings are invalid or incomplete (and,
for `check`, the vendor could not be read: drift unknown).
"""
from __future__ import annotations

import json
import sys
from typing import Any, Callable

import click

VENDORS = ("zendesk", "jira")


def _run(vendor: str, command: str, matrix_path: str) -> Any:
    """The plugin's report for `command`; exits with the message and status the module doc names."""
    from pydantic import ValidationError

    from connectors.base import ConfigurationError, ConnectorError
    from connectors.vendors import PLUGINS
    from connectors.ratelimit import shared_redis_url
    from service.settings import Settings
    from matrix_config.loader import load_matrix

    plugin = PLUGINS[vendor]
    run: Callable[..., Any] | None = {"plan": plugin.sla_plan, "apply": plugin.sla_apply,
                                      "check": plugin.sla_check}[command]
    if run is None:
        raise click.UsageError(f"`sla {command}` is not available for {vendor}")
    loaded = load_matrix(matrix_path)
    try:
        settings = Settings()
        return run(loaded, database_url=settings.database_url,
                   redis_url=shared_redis_url(settings.redis_url, settings.queue_url))
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
        _fail(f"invalid configuration: {problems}", 2)
    except ConfigurationError as error:
        _fail(str(error), 2)
    except ConnectorError as error:
        _fail(str(error), 2 if command == "check" else 1)
    except ValueError as error:  # the matrix cannot be expressed in the vendor's SLA terms
        _fail(str(error), 1)


def _fail(message: str, status: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(status)


def _show(report: Any, fmt: str) -> None:
    click.echo(json.dumps(report.to_dict(), indent=2) if fmt == "json" else report.render())


def register(group: click.Group) -> None:
    @group.group("sla")
    def sla() -> None:
        """SLA policies (Zendesk) and SLA goals (JSM) implied by the matrix."""

    @sla.command("plan")
    @click.option("--vendor", type=click.Choice(VENDORS), default="zendesk", show_default=True)
    @click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
    @click.argument("matrix", type=click.Path(exists=True, dir_okay=False), envvar="MATRIX_PATH")
    def plan(vendor: str, fmt: str, matrix: str) -> None:
        """Show what the matrix implies for the vendor's SLA configuration and how it differs."""
        _show(_run(vendor, "plan", matrix), fmt)

    @sla.command("apply")
    @click.option("--vendor", type=click.Choice(["zendesk"]), default="zendesk", show_default=True)
    @click.argument("matrix", type=click.Path(exists=True, dir_okay=False), envvar="MATRIX_PATH")
    def apply(vendor: str, matrix: str) -> None:
        """Create, update, delete and reorder the managed Zendesk SLA policies."""
        report = _run(vendor, "apply", matrix)
        click.echo(report.render())
        if not report.ok:
            _fail(report.outcome(), 1)
        if report.outcome():
            click.echo(report.outcome())

    @sla.command("check")
    @click.option("--vendor", type=click.Choice(["jira"]), default="jira", show_default=True)
    @click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
    @click.argument("matrix", type=click.Path(exists=True, dir_okay=False), envvar="MATRIX_PATH")
    def check(vendor: str, fmt: str, matrix: str) -> None:
        """Compare the SLA goals JSM applies to open requests with the matrix."""
        report = _run(vendor, "check", matrix)
        _show(report, fmt)
        sys.exit(0 if report.ok else 1)
