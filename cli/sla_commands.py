"""`escalation sla plan|apply|check`: each vendor's module does the work.

connectors.zendesk_sla and connectors.jira_sla each define
`cli_plan(matrix_path, fmt) -> int`, and where the vendor supports it `cli_apply(matrix_path) -> int`
(Zendesk) and `cli_check(matrix_path, fmt) -> int` (Jira); the return value is the exit code.
"""
from __future__ import annotations

import importlib
import sys

import click

VENDORS = ("zendesk", "jira")


def _vendor_call(vendor: str, function: str, *args) -> None:
    module = importlib.import_module({"zendesk": "connectors.zendesk_sla", "jira": "connectors.jira.sla"}[vendor])
    handler = getattr(module, function, None)
    if handler is None:
        raise click.UsageError(f"`sla {function.removeprefix('cli_')}` is not available for {vendor}")
    sys.exit(handler(*args))


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
        _vendor_call(vendor, "cli_plan", matrix, fmt)

    @sla.command("apply")
    @click.option("--vendor", type=click.Choice(["zendesk"]), default="zendesk", show_default=True)
    @click.argument("matrix", type=click.Path(exists=True, dir_okay=False), envvar="MATRIX_PATH")
    def apply(vendor: str, matrix: str) -> None:
        """Create, update, delete and reorder the managed Zendesk SLA policies."""
        _vendor_call(vendor, "cli_apply", matrix)

    @sla.command("check")
    @click.option("--vendor", type=click.Choice(["jira"]), default="jira", show_default=True)
    @click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
    @click.argument("matrix", type=click.Path(exists=True, dir_okay=False), envvar="MATRIX_PATH")
    def check(vendor: str, fmt: str, matrix: str) -> None:
        """Compare the SLA goals JSM applies to open requests with the matrix."""
        _vendor_call(vendor, "cli_check", matrix, fmt)
