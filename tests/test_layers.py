"""The layers hold: only cli/ talks to the terminal, product code carries no test hooks and finds none of
its own modules by name, and the import-linter contracts in pyproject.toml (integration imports no web
framework, vendor library or connector but connectors.base; connectors no edge or wiring; no cycles; ...)
are kept. import-linter cannot see calls, so the terminal check reads the syntax tree."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PRODUCT = ("integration", "connectors", "webhooks", "matrix_config", "service")  # cli/ is the terminal's
# `python -m webhooks.server` is a process of its own (the Procfile's web line: waitress, forked workers):
# it ends with its exit status, and a forked worker ends with os._exit. Neither writes to the terminal.
ALLOWED = {("webhooks/server.py", "sys.exit"), ("webhooks/server.py", "os._exit")}
TERMINAL_CALLS = {"print", "click.echo", "click.secho", "click.style", "sys.exit", "exit", "quit", "os._exit",
                  "sys.stdout.write", "sys.stderr.write", "pprint.pprint"}


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return _name(node.func)
    return ""


def _product_files() -> list[Path]:
    return [path for package in PRODUCT for path in sorted((REPO / package).rglob("*.py"))]


def _terminal_uses(path: Path, root: Path = REPO):
    rel = path.relative_to(root).as_posix()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and _name(node.func) in TERMINAL_CALLS:
            what = _name(node.func)
        elif isinstance(node, ast.Raise) and node.exc is not None and _name(node.exc) == "SystemExit":
            what = "raise SystemExit"
        elif isinstance(node, ast.keyword) and node.arg == "file" and _name(node.value) in ("sys.stdout", "sys.stderr"):
            what = f"file={_name(node.value)}"
        else:
            continue
        if (rel, what) not in ALLOWED:
            yield f"{rel}:{node.lineno}: {what}"


def test_only_cli_prints_or_exits():
    files = _product_files()
    assert len(files) > 40
    offenders = sorted(line for path in files for line in _terminal_uses(path))
    assert offenders == [], "print/exit outside cli/: return an object and let cli/ render it:\n" + "\n".join(offenders)


def test_the_terminal_check_reports_prints_echoes_and_exits(tmp_path):
    package = tmp_path / "integration"
    package.mkdir()
    (package / "noisy.py").write_text("import sys\nimport click\n\ndef f():\n    print('x')\n    click.echo('y')\n"
                                      "    print('z', file=sys.stderr)\n    raise SystemExit('bye')\n")
    assert sorted(_terminal_uses(package / "noisy.py", tmp_path)) == [
        "integration/noisy.py:5: print", "integration/noisy.py:6: click.echo", "integration/noisy.py:7: file=sys.stderr",
        "integration/noisy.py:7: print", "integration/noisy.py:8: raise SystemExit"]


@pytest.mark.parametrize("needle, allowed", [
    ("ESCALATION_TEST", set()),  # tests/support/worker_entry.py builds test processes; product code has no hooks
    ("ESCALATION_TESTING", set()),
    ("importlib", {"webhooks/server.py"}),  # `--app module:attr`: a WSGI-server option, not a lookup of our code
    ("ModuleNotFoundError", set()),  # our own modules are always there
])
def test_no_test_hooks_or_lookups_by_name_in_product_code(needle, allowed):
    found = sorted({path.relative_to(REPO).as_posix() for path in _product_files() if needle in path.read_text()})
    assert [rel for rel in found if rel not in allowed] == []


def _contract_ids() -> list[str]:
    from importlinter import api

    return [options["id"] for options in api.read_configuration(str(REPO / "pyproject.toml"))["contracts_options"]]


def test_every_layer_has_its_contract():
    assert set(_contract_ids()) >= {"layers", "core-is-vendor-neutral", "connectors-are-an-edge",
                                    "connectors-know-only-the-model", "matrix-language-stands-alone",
                                    "webhooks-no-cli", "only-cli-uses-click", "no-cycles"}


@pytest.mark.parametrize("contract_id", _contract_ids())
def test_import_contract_is_kept(contract_id):
    """`lint-imports --contract ID` with pyproject.toml's [tool.importlinter] contracts."""
    result = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache", "--no-logo",
                             "--contract", contract_id], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, f"import contract {contract_id!r} is broken:\n{result.stdout[-4000:]}{result.stderr}"
