"""A DATABASE_URL the service cannot use is a one-line error naming it from every command that reads the
store, never a traceback."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from cli.main import cli

COMMANDS = [
    ["history", "zendesk", "7"],
    ["alerts", "list"],
    ["report", "--matrix", "matrix_config/examples/enterprise.yaml"],
    ["replay", "--matrix", "matrix_config/examples/enterprise.yaml", "--since", "1d"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda args: " ".join(args[:2]))
def test_unusable_database_url_is_a_one_line_error(args, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "mysql://db.internal/escalations")

    result = CliRunner().invoke(cli, args)

    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.output.strip().splitlines() == [
        "Error: DATABASE_URL mysql://db.internal/escalations cannot be used (ModuleNotFoundError)"]
