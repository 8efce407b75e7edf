"""`escalation matrix versions` and `escalation matrix diff` (issue 14): the stored versions with their use,
and a semantic diff between stored versions and files."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from click.testing import CliRunner

from cli.main import cli
from integration.store.events import add_hint
from integration.pipeline import process_ticket
from tests.support.fake_connector import FakeConnector, ManualClock, make_runtime, make_settings

BASE = Path(__file__).resolve().parent / "matrix" / "replay" / "base.yaml"


def edited(tmp_path: Path, name: str, *replacements: tuple[str, str]) -> Path:
    text = BASE.read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text)
    return path


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(cli, list(args), env=env or {})


TIGHTER = ("sla: {acknowledge: 1h, resolve: 1d}", "sla: {acknowledge: 30m, resolve: 1d}")
NEW_RULE = ("rules:\n  - id: incidents", "rules:\n  - id: vip\n    when: {tags: {any: [vip]}}\n    level: L2\n  - id: incidents")
OWNER = ("owner: {default: engineering}", "owner: {default: support}")
WORDING = ("will reply within", "will answer within")


def test_diff_names_each_change_by_its_place_in_the_matrix(tmp_path: Path) -> None:
    draft = edited(tmp_path, "draft.yaml", TIGHTER, NEW_RULE, OWNER, WORDING)
    result = run("matrix", "diff", str(BASE), str(draft))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].endswith(": 4 change(s)")
    assert "  levels.L2.sla.acknowledge: 1h -> 30m" in lines
    assert "  levels.L2.owner.default: engineering -> support" in lines
    assert "  rules.vip: added (position 1, level L2, when {tags: {any: [vip]}})" in lines
    assert "  templates.received: text changed" in lines
    assert any(line.strip().startswith("+ Hello") and "will answer within" in line for line in lines)

    as_json = json.loads(run("matrix", "diff", str(BASE), str(draft), "--format", "json").output)
    assert sorted((c["section"], c["kind"], c["path"]) for c in as_json["changes"]) == [
        ("levels", "changed", "levels.L2.owner.default"), ("levels", "changed", "levels.L2.sla.acknowledge"),
        ("rules", "added", "rules.vip"), ("templates", "changed", "templates.received")]


def test_reordered_and_removed_rules_and_levels_read_as_such(tmp_path: Path) -> None:
    two_rules = edited(tmp_path, "two.yaml", NEW_RULE)
    swapped = edited(tmp_path, "swapped.yaml", ("rules:\n  - id: incidents", "rules:\n  - id: incidents"))
    text = two_rules.read_text()
    vip = "  - id: vip\n    when: {tags: {any: [vip]}}\n    level: L2\n"
    incidents_block = text[text.index("  - id: incidents"):text.index("\ntemplates:")] + "\n"
    swapped.write_text(text.replace(vip, "").replace(incidents_block, incidents_block + vip))
    result = run("matrix", "diff", str(two_rules), str(swapped), "--format", "json")
    changes = json.loads(result.output)["changes"]
    assert changes == [{"section": "rules", "kind": "reordered", "path": "rules", "old": ["vip", "incidents"],
                        "new": ["incidents", "vip"]}]
    result = run("matrix", "diff", str(two_rules), str(BASE))
    assert "  rules.vip: removed (was position 1)" in result.output.splitlines()


def test_comments_and_key_order_are_no_difference(tmp_path: Path) -> None:
    reformatted = edited(tmp_path, "same.yaml", ("name: Minimal support matrix", "# a new comment\nname: Minimal support matrix"),
                         ("sla: {acknowledge: 1h, resolve: 1d}", "sla: {resolve: 1d, acknowledge: 1h}"))
    result = run("matrix", "diff", str(BASE), str(reformatted))
    assert result.exit_code == 0 and result.output.strip().endswith(": no difference.")


def test_a_broken_file_or_an_unknown_version_exits_1_and_says_why(tmp_path: Path) -> None:
    broken = edited(tmp_path, "broken.yaml", ("sla: {acknowledge: 1h, resolve: 1d}", "sla: {acknowledge: 1h, resolv: 1d}"))
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'v.db'}"}
    result = run("matrix", "diff", str(BASE), str(broken), env=env)
    assert result.exit_code == 1 and f"{broken}:37:" in result.stderr
    result = run("matrix", "diff", "0123abcd", str(BASE), env=env)
    assert result.exit_code == 1
    assert "0123abcd: neither a file nor a stored matrix version" in result.stderr


def test_versions_lists_first_use_and_open_tickets_pinned_and_diff_reads_stored_versions(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'versions.db'}"
    draft = edited(tmp_path, "draft.yaml", TIGHTER)
    fake = FakeConnector("zendesk")
    clock = ManualClock(datetime(2026, 11, 16, 9, tzinfo=timezone.utc))
    first = make_runtime(make_settings(url, MATRIX_PATH=str(BASE)), fake, clock=clock)

    def pass_on(runtime, ticket_id: str, **record) -> None:
        fake.put(ticket_id, created_at=clock.value.isoformat(), updated_at=clock.value.isoformat(), **record)
        add_hint(runtime.db, "zendesk", ticket_id, "test", key=f"{ticket_id}@{clock.value.isoformat()}", now=clock.value)
        process_ticket("zendesk", ticket_id, deps=runtime.deps())

    pass_on(first, "A", fields={"issue_type": "question"})
    pass_on(first, "B", fields={"issue_type": "question"})
    clock.advance(3600)
    pass_on(first, "B", fields={"issue_type": "question"}, status="solved")
    clock.advance(3600)  # the admin deploys the draft: new tickets pin it, A stays on the old version
    second = make_runtime(make_settings(url, MATRIX_PATH=str(draft)), fake, clock=clock)
    pass_on(second, "C", fields={"issue_type": "incident"})
    env = {"DATABASE_URL": url, "MATRIX_PATH": str(draft)}

    listed = json.loads(run("matrix", "versions", "--format", "json", env=env).output)
    old, new = listed["versions"]
    assert listed["current"] == new["version"]
    assert old["first_used_at"] == "2026-11-16T09:00:00+00:00" and old["open_tickets"] == 1  # A (B is solved)
    assert new["first_used_at"] == "2026-11-16T11:00:00+00:00" and new["open_tickets"] == 1  # C
    table = run("matrix", "versions", env=env).output.splitlines()
    assert table[2].startswith("* " + new["version"]) and table[1].startswith("  " + old["version"])

    result = run("matrix", "diff", old["version"][:6], new["version"], env=env)
    assert result.exit_code == 0
    assert result.output.splitlines() == [f"version {old['version']} -> version {new['version']}: 1 change(s)",
                                          "levels:", "  levels.L2.sla.acknowledge: 1h -> 30m"]
    first.db.dispose()
    second.db.dispose()


def test_versions_on_an_empty_database_says_so(tmp_path: Path) -> None:
    result = run("matrix", "versions", env={"DATABASE_URL": f"sqlite:///{tmp_path / 'e.db'}"})
    assert result.exit_code == 0 and "No matrix version stored yet" in result.output
