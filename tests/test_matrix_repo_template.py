"""examples/matrix-repo (issue 14): the CI workflow's `escalation` steps run as written against the template's
matrix and a history exported from a database the pipeline wrote."""
from __future__ import annotations

import os
import shlex
from datetime import datetime, timedelta, timezone
from pathlib import Path

from click.testing import CliRunner
from ruamel.yaml import YAML

from cli.main import cli
from integration.store.events import add_hint
from integration.pipeline import process_ticket
from tests.support.fake_connector import FakeConnector, ManualClock, make_runtime, make_settings

TEMPLATE = Path(__file__).resolve().parent.parent / "examples" / "matrix-repo"


def escalation_commands() -> list[list[str]]:
    workflow = YAML(typ="safe").load((TEMPLATE / ".github" / "workflows" / "matrix.yml").read_text())
    commands = []
    for step in workflow["jobs"]["check"]["steps"]:
        for line in str(step.get("run", "")).splitlines():
            line = line.strip()
            if line.startswith("escalation "):
                commands.append(shlex.split(line.split(" > ")[0])[1:])
    return commands


def test_the_workflow_validates_and_replays_the_template_matrix(tmp_path: Path) -> None:
    commands = escalation_commands()
    assert [c[0] for c in commands] == ["validate", "replay"]

    url = f"sqlite:///{tmp_path / 'service.db'}"
    fake = FakeConnector("zendesk")
    clock = ManualClock(datetime.now(timezone.utc) - timedelta(days=2))
    runtime = make_runtime(make_settings(url, MATRIX_PATH=str(TEMPLATE / "matrix.yaml")), fake, clock=clock)
    fake.put("1", created_at=clock.value.isoformat(), updated_at=clock.value.isoformat(), fields={"issue_type": "incident"})
    add_hint(runtime.db, "zendesk", "1", "test", key="1", now=clock.value)
    process_ticket("zendesk", "1", deps=runtime.deps())
    runner = CliRunner()
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        (tmp_path / "matrix.yaml").write_text((TEMPLATE / "matrix.yaml").read_text())
        exported = runner.invoke(cli, ["snapshots", "export", "--since", "30d", "-o", "history.jsonl.gz"],
                                 env={"DATABASE_URL": url})
        assert exported.exit_code == 0, exported.output
        validate, replay = (runner.invoke(cli, args, env={"DATABASE_URL": f"sqlite:///{tmp_path / 'ci.db'}"})
                            for args in commands)
    finally:
        os.chdir(cwd)
        runtime.db.dispose()
    assert validate.exit_code == 0, validate.output
    assert replay.exit_code == 0, replay.output
    assert replay.output.startswith("### Replay of `matrix.yaml`")
    assert "| tickets replayed | 1 |" in replay.output and "No ticket would be handled differently." in replay.output
