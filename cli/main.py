"""`escalation` command line. Each area registers its commands from its own module."""
from __future__ import annotations

import click

from cli import (
    admin_commands,  # history, metrics, send-test-webhook
    alert_commands,  # notify test, alerts list/retry/send
    engine_commands,  # explain, simulate
    incident_commands,  # incident report, incident actions
    matrix_commands,  # validate
    matrix_version_commands,  # matrix versions, matrix diff
    replay_commands,  # snapshots export, replay
    report_commands,  # report
    service_commands,  # serve, worker, events, reconcile
    sla_commands,  # sla plan/apply/check
)

# Modules that define a `register(group: click.Group)` function, in help order.
COMMAND_MODULES = (matrix_commands, engine_commands, service_commands, sla_commands, admin_commands, report_commands,
                   alert_commands, replay_commands, matrix_version_commands, incident_commands)


@click.group()
def cli() -> None:
    """Enforce a support escalation matrix on Zendesk and Jira Service Management."""


for _module in COMMAND_MODULES:
    _module.register(cli)


def main() -> None:
    cli()
