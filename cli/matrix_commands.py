"""`escalation validate [MATRIX]`: load, cross-check and lint a matrix file.

Exit status: 0 valid (warnings allowed unless --strict), 1 invalid. One finding per line,
`FILE:LINE:COL: path.to.key: message` (warnings say `warning:` after the path), or one JSON object with
`--format json`.
"""
from __future__ import annotations

import json
import sys
from typing import Any

import click

from matrix_config.lint import lint
from matrix_config.loader import LoadedMatrix, MatrixInvalid, load_matrix

# connectors.vendors.PLUGINS names the same vendors; it is imported only when a check runs, so the other
# commands never load the vendor libraries.
REMOTE_VENDORS = ("jira", "zendesk")


def _remote_errors(vendor: str, loaded: LoadedMatrix) -> list[str]:
    """The vendor plugin's `check_remote` (connectors.vendors): one message per thing the account lacks."""
    from connectors.vendors import PLUGINS

    try:
        return [str(problem) for problem in PLUGINS[vendor].check_remote(loaded.matrix)]
    except Exception as exc:  # a connector error (auth, network) must not read as "matrix valid"
        return [f"{loaded.path}: --remote {vendor}: the remote check failed: {type(exc).__name__}: {exc}"]


def validate_matrix(path: str, *, strict: bool = False, remotes: tuple[str, ...] = ()) -> dict[str, Any]:
    """The result `escalation validate` prints: {valid, version, errors[], warnings[]} (lines as strings)."""
    try:
        loaded = load_matrix(path)
    except MatrixInvalid as invalid:
        return {"valid": False, "version": None, "errors": list(invalid.errors), "warnings": []}
    findings = lint(loaded)
    errors = [f.line() for f in findings if f.severity == "error"]
    warnings = [f.line() for f in findings if f.severity == "warning"]
    for vendor in remotes:
        errors.extend(_remote_errors(vendor, loaded))
    valid = not errors and not (strict and warnings)
    return {"valid": valid, "version": loaded.version, "errors": errors, "warnings": warnings}


def register(group: click.Group) -> None:
    @group.command("validate")
    @click.argument("matrix", required=False, envvar="MATRIX_PATH", type=click.Path(dir_okay=False))
    @click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
                  help="json: one object {valid, version, errors, warnings} for CI tools.")
    @click.option("--strict", is_flag=True, help="Treat warnings as errors (exit 1 when there are any).")
    @click.option("--remote", "remotes", type=click.Choice(REMOTE_VENDORS), multiple=True,
                  help="Also check the vendor's configuration (field ids, groups) through its API. Repeatable.")
    def validate(matrix: str | None, fmt: str, strict: bool, remotes: tuple[str, ...]) -> None:
        """Check MATRIX (default: $MATRIX_PATH): schema, cross-references and lint rules."""
        if not matrix:
            raise click.UsageError("give a MATRIX file or set MATRIX_PATH")
        result = validate_matrix(matrix, strict=strict, remotes=remotes)
        if fmt == "json":
            click.echo(json.dumps(result, indent=2))
        else:
            for line in result["errors"]:
                click.echo(line)
            for line in result["warnings"]:
                click.echo(line)
            if result["valid"]:
                summary = f"{matrix}: valid, version {result['version']}"
                if result["warnings"]:
                    summary += f", {len(result['warnings'])} warning(s)"
                click.echo(summary)
            else:
                count = len(result["errors"]) + (len(result["warnings"]) if strict else 0)
                click.echo(f"{matrix}: invalid, {count} problem(s)", err=True)
        sys.exit(0 if result["valid"] else 1)
