"""The vendor reference data the tests validate against lives in the repository (tests/vendor/), matches what
tests/vendor/regenerate.py would write, and no test reads outside the repository."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path

import pytest

from tests.support.openapi_check import SPEC_FILES, VENDOR_OPENAPI

TESTS = Path(__file__).resolve().parent
REPO_ROOT = TESTS.parent
VENDOR = TESTS / "vendor"


def _regenerate_module():
    spec = importlib.util.spec_from_file_location("vendor_regenerate", VENDOR / "regenerate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REGENERATE = _regenerate_module()
SOURCE = (VENDOR / "SOURCE.md").read_text(encoding="utf-8")


def _section(spec: str) -> str:
    match = re.search(rf"^## {spec}: .*?(?=^## |\Z)", SOURCE, re.S | re.M)
    assert match, f"SOURCE.md has no section for {spec}"
    return match.group(0)


def _subset(spec: str) -> dict:
    return json.loads((VENDOR_OPENAPI / SPEC_FILES[spec]).read_text(encoding="utf-8"))


def test_the_checker_reads_the_committed_subsets_the_script_writes():
    for spec, meta in REGENERATE.SPECS.items():
        assert VENDOR / meta["subset"] == VENDOR_OPENAPI / SPEC_FILES[spec]


@pytest.mark.parametrize("spec", sorted(REGENERATE.SPECS))
def test_every_listed_operation_is_in_the_committed_subset(spec):
    paths = _subset(spec)["paths"]
    for entry in REGENERATE.OPERATIONS[spec]:
        methods, pattern = REGENERATE.parse_operation(entry)
        found = [(method, template) for template, item in paths.items() if REGENERATE.path_matches(pattern, template)
                 for method in REGENERATE.METHODS if method in item and (methods is None or method in methods)]
        assert found, f"{spec}: {entry!r} is listed in regenerate.py but not in {SPEC_FILES[spec]}: regenerate"
        if methods is not None:
            assert {method for method, _ in found} == methods, f"{spec}: {entry!r}: a method is missing"


@pytest.mark.parametrize("spec", sorted(REGENERATE.SPECS))
def test_every_operation_in_the_subset_is_accounted_for_in_source_md(spec):
    section = _section(spec)
    paths = _subset(spec)["paths"]
    listed = set(re.findall(r"^- `([A-Z]+ /[^`]*)`$", section, re.M))
    in_subset = {f"{method.upper()} {template}" for template, item in paths.items()
                 for method in REGENERATE.METHODS if method in item}
    assert in_subset == listed


@pytest.mark.parametrize("spec", sorted(REGENERATE.SPECS))
def test_source_md_records_origin_version_and_checksums_of_each_spec(spec):
    section = _section(spec)
    subset_file = VENDOR / REGENERATE.SPECS[spec]["subset"]
    document = json.loads(subset_file.read_text(encoding="utf-8"))
    assert Path(REGENERATE.SPECS[spec]["upstream"]).name in section
    assert f"info.version: {document['info']['version']}" in section
    assert f"title: {document['info']['title']}" in section
    assert re.search(r"upstream sha256: `[0-9a-f]{64}`", section)
    recorded = re.search(r"subset sha256: `([0-9a-f]{64})`", section).group(1)
    assert hashlib.sha256(subset_file.read_bytes()).hexdigest() == recorded, (
        f"{subset_file.name} differs from what regenerate.py wrote: edit OPERATIONS and regenerate, not the file")


def test_copied_samples_and_readme_match_their_recorded_checksums():
    copies = [f"samples/{name}" for name in REGENERATE.SAMPLES] + [REGENERATE.README[1]]
    for relative in copies:
        digest = hashlib.sha256((VENDOR / relative).read_bytes()).hexdigest()
        assert f"- `{relative}` from " in SOURCE and f"sha256 `{digest}`" in SOURCE, relative


def test_the_subsets_keep_the_components_they_reference():
    for spec in REGENERATE.SPECS:
        document = _subset(spec)
        for ref in set(REGENERATE._refs(document)):
            REGENERATE._lookup(document, ref)  # KeyError names a dangling reference


OUTSIDE_THE_REPOSITORY = [
    re.compile(r"\.\./shared"),
    re.compile(r"shared/vendor"),
    re.compile(r"""/\s*["']shared["']"""),  # Path(...) / "shared"
]
# Not scanned: the one tool meant to read the full upstream data, and this module (it spells the patterns).
NOT_SCANNED = {VENDOR / "regenerate.py", Path(__file__).resolve()}


def test_no_test_module_reads_outside_the_repository():
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        if path in NOT_SCANNED:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if any(pattern.search(line) for pattern in OUTSIDE_THE_REPOSITORY):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def _write_synthetic_vendor_data(root: Path) -> None:
    """A tiny upstream spec: GET /things/{id} is listed; GET /things/count overlaps it; Thing -> Part is a
    $ref chain; Unused is referenced by nothing kept."""
    (root / "openapi").mkdir(parents=True)
    (root / "samples").mkdir()
    (root / "samples" / "one.json").write_text('{"a": 1}\n')
    (root / "README.md").write_text("vector: abc\n")
    spec = {
        "openapi": "3.0.1", "info": {"title": "Things API", "version": "7.1"}, "x-narrative": "prose",
        "tags": [{"name": "Things"}, {"name": "Other"}],
        "paths": {
            "/things/{id}": {"get": {"tags": ["Things"], "responses": {"200": {"description": "ok", "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}}}},
                             "delete": {"tags": ["Other"], "responses": {"204": {"description": "gone"}}}},
            "/things/count": {"get": {"tags": ["Things"], "responses": {"200": {"description": "n"}}}},
            "/others": {"get": {"tags": ["Other"], "responses": {"200": {"description": "ok", "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Unused"}}}}}}},
        },
        "components": {"schemas": {"Thing": {"properties": {"part": {"$ref": "#/components/schemas/Part"}}},
                                   "Part": {"type": "string"}, "Unused": {"type": "integer"}},
                       "securitySchemes": {"basicAuth": {"type": "http", "scheme": "basic"}}},
    }
    (root / "openapi" / "things.json").write_text(json.dumps(spec))


def test_regenerate_keeps_listed_and_overlapping_operations_with_their_references_and_is_repeatable(
        tmp_path, monkeypatch):
    shared, out = tmp_path / "shared", tmp_path / "out"
    _write_synthetic_vendor_data(shared)
    monkeypatch.setattr(REGENERATE, "SPECS", {"things": {
        "upstream": "openapi/things.json", "subset": "openapi/things.subset.json", "origin": "a test"}})
    monkeypatch.setattr(REGENERATE, "OPERATIONS", {"things": ["GET /things/{thing_id}"]})
    monkeypatch.setattr(REGENERATE, "PATCH_REFERENCES", {"things": []})
    monkeypatch.setattr(REGENERATE, "SAMPLES", ["one.json"])

    assert REGENERATE.main(["--shared", str(shared), "--out", str(out)]) == 0
    first = {path.relative_to(out): path.read_bytes() for path in sorted(out.rglob("*")) if path.is_file()}
    assert REGENERATE.main(["--shared", str(shared), "--out", str(out)]) == 0
    again = {path.relative_to(out): path.read_bytes() for path in sorted(out.rglob("*")) if path.is_file()}
    assert first == again

    document = json.loads((out / "openapi" / "things.subset.json").read_text())
    assert {path: sorted(item) for path, item in document["paths"].items()} == {
        "/things/{id}": ["get"], "/things/count": ["get"]}
    assert sorted(document["components"]["schemas"]) == ["Part", "Thing"]
    assert document["components"]["securitySchemes"] == {"basicAuth": {"type": "http", "scheme": "basic"}}
    assert document["tags"] == [{"name": "Things"}] and "x-narrative" not in document
    source = (out / "SOURCE.md").read_text()
    assert "info.version: 7.1" in source and "title: Things API" in source
    assert "- `GET /things/{id}`" in source and "- `GET /things/count`" in source
    assert (out / "VENDOR_README.md").read_text() == "vector: abc\n"
    assert (out / "samples" / "one.json").read_text() == '{"a": 1}\n'


def test_regenerate_refuses_a_listed_operation_the_upstream_spec_lacks(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    _write_synthetic_vendor_data(shared)
    monkeypatch.setattr(REGENERATE, "SPECS", {"things": {
        "upstream": "openapi/things.json", "subset": "openapi/things.subset.json", "origin": "a test"}})
    monkeypatch.setattr(REGENERATE, "OPERATIONS", {"things": ["PUT /things/{id}"]})
    monkeypatch.setattr(REGENERATE, "PATCH_REFERENCES", {"things": []})
    with pytest.raises(SystemExit, match="'PUT /things/{id}' matches no operation"):
        REGENERATE.main(["--shared", str(shared), "--out", str(tmp_path / "out")])
