"""`escalation` command line. Each area registers its commands from its own module."""
from __future__ import annotations

import importlib

import click

# Modules that define a `register(group: click.Group)` function.
COMMAND_MODULES = (
    "cli.matrix_commands",  # validate
    "cli.engine_commands",  # explain, simulate
    "cli.service_commands",  # serve, worker, events, reconcile
    "cli.sla_commands",  # sla plan/apply/check
    "cli.admin_commands",  # history, metrics, send-test-webhook
    "cli.alert_commands",  # notify test, alerts list/retry/send
)


@click.group()
def cli() -> None:
    """Enforce a support escalation matrix on Zendesk and Jira Service Management."""


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(cli)


def main() -> None:
    cli()
