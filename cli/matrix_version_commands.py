"""`escalation matrix versions` and `escalation matrix diff A B`: the matrix versions the service stored
(when each was first used, how many open tickets are pinned to it) and what changed between two of them,
or between a stored version and a file (integration.matrix_diff).

    escalation matrix versions [--format table|json]
    escalation matrix diff V1 V2|FILE [--format text|json|md]

A diff argument that names an existing file is read as a matrix file (invalid: its `FILE:LINE:COL` lines,
exit 1); anything else is a stored version id or a unique prefix of one. Exit status: 0 (whether or not
they differ), 1 a matrix cannot be found or read.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from cli.common import configured_database as _database, configured_settings as _settings


def _when(value: Any) -> str:
    return value.isoformat(timespec="minutes") if value else "never"


def _current_version() -> str | None:
    from matrix_config.loader import MatrixInvalid, load_matrix

    try:
        return load_matrix(_settings().matrix_path).version
    except (MatrixInvalid, OSError):
        return None


def _resolve(reference: str, db_holder: list) -> tuple[str, Any]:
    """(label, Matrix) for a file path or a stored version; exits 1 with the reason when neither."""
    from integration.matrix_diff import stored_source
    from matrix_config.loader import MatrixInvalid, load_matrix, load_matrix_text

    if Path(reference).is_file():
        try:
            loaded = load_matrix(reference)
        except MatrixInvalid as invalid:
            for line in invalid.errors:
                click.echo(line, err=True)
            click.echo(f"{reference}: invalid, {len(invalid.errors)} problem(s)", err=True)
            sys.exit(1)
        return f"{reference} ({loaded.version})", loaded.matrix
    if not db_holder:
        db_holder.append(_database())
    found = stored_source(db_holder[0], reference)
    if found is None:
        click.echo(f"{reference}: neither a file nor a stored matrix version "
                   "(`escalation matrix versions` lists them)", err=True)
        sys.exit(1)
    version, path, source = found
    try:
        return f"version {version}", load_matrix_text(source, path).matrix
    except MatrixInvalid as invalid:
        click.echo(f"stored version {version} no longer loads:", err=True)
        for line in invalid.errors:
            click.echo(line, err=True)
        sys.exit(1)


def _render_diff(changes: list, old_label: str, new_label: str, fmt: str) -> str:
    if fmt == "json":
        return json.dumps({"old": old_label, "new": new_label, "changes": [c.as_dict() for c in changes]}, indent=2)
    if not changes:
        return f"{old_label} and {new_label}: no difference."
    sections: dict[str, list] = {}
    for change in changes:
        sections.setdefault(change.section, []).append(change)
    if fmt == "md":
        lines = [f"### Matrix changes: {old_label} -> {new_label}", ""]
        for section, items in sections.items():
            lines.append(f"**{section}**")
            for c in items:
                lines.append(f"- `{c.path}`: " + c.line()[len(c.path) + 2:].replace("|", "\\|"))
                lines += [f"  `{text}`" for text in c.text_changes()]
            lines.append("")
        return "\n".join(lines).rstrip()
    lines = [f"{old_label} -> {new_label}: {len(changes)} change(s)"]
    for section, items in sections.items():
        lines.append(f"{section}:")
        for c in items:
            lines.append(f"  {c.line()}")
            lines += [f"      {text}" for text in c.text_changes()]
    return "\n".join(lines)


def register(group: click.Group) -> None:
    @group.group("matrix")
    def matrix_group() -> None:
        """Stored matrix versions and what changed between them."""

    @matrix_group.command("versions")
    @click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
    def versions_command(fmt: str) -> None:
        """The matrix versions the service stored: when first and last used, decisions made, open tickets
        pinned. `*` marks the version MATRIX_PATH holds now."""
        from integration.matrix_diff import stored_versions

        versions = stored_versions(_database())
        current = _current_version()
        if fmt == "json":
            click.echo(json.dumps({"current": current, "versions": [v.as_dict() for v in versions]}, indent=2))
            return
        if not versions:
            click.echo("No matrix version stored yet: the service stores one when it first loads the matrix.")
            return
        rows = [[("* " if v.version == current else "  ") + v.version, v.name, _when(v.first_used_at),
                 _when(v.last_used_at), str(v.decisions), str(v.open_tickets)] for v in versions]
        headers = ["  version", "name", "first used", "last used", "decisions", "open tickets pinned"]
        widths = [max(len(x) for x in column) for column in zip(headers, *rows)]
        click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
        for row in rows:
            click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())

    @matrix_group.command("diff")
    @click.argument("old")
    @click.argument("new")
    @click.option("--format", "fmt", type=click.Choice(["text", "json", "md"]), default="text", show_default=True)
    def diff_command(old: str, new: str, fmt: str) -> None:
        """What changed from OLD to NEW (each a stored version id or prefix, or a matrix file): levels, owners,
        SLA targets, rules added/removed/reordered, templates, and every other setting, by path."""
        from integration.matrix_diff import diff

        holder: list = []
        old_label, old_matrix = _resolve(old, holder)
        new_label, new_matrix = _resolve(new, holder)
        click.echo(_render_diff(diff(old_matrix, new_matrix), old_label, new_label, fmt))
