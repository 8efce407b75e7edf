"""Regenerate tests/vendor/ from the full vendor reference data (run by hand, never by the tests):

    .venv/bin/python tests/vendor/regenerate.py [--shared ../shared/vendor]

The tests validate every request a connector sends against the vendors' OpenAPI specs, but the full specs
(4 MB) are not part of this repository. This script writes, for each spec, a subset holding the operations
in OPERATIONS below, unchanged, with everything they reference (`$ref` closure over components), so a
request to a kept operation validates exactly as it would against the full spec. It also copies the sample
payloads in SAMPLES and the vendor README, and records where everything came from in SOURCE.md.

To validate a new endpoint: add it to OPERATIONS, run this script, commit tests/vendor/. Running it twice
gives identical files.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any, Iterator

HERE = Path(__file__).resolve().parent
DEFAULT_SHARED = HERE.parents[2] / "shared" / "vendor"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")

# Which upstream file each subset comes from, and where that file was published (see the vendor README).
SPECS: dict[str, dict[str, str]] = {
    "zendesk": {
        "upstream": "openapi/zendesk-support-oas.yaml",
        "subset": "openapi/zendesk-support-oas.subset.json",
        "origin": "Zendesk's published Support API `oas.yaml`, public copy in PeanutButter-Unicorn/z4j "
                  "`ticketing/src/main/resources/ticketing.yaml` @ 7ee04a17",
    },
    "jira": {
        "upstream": "openapi/jira-platform-swagger-v3.v3.json",
        "subset": "openapi/jira-platform-swagger-v3.subset.json",
        "origin": "Atlassian's Jira Cloud platform `swagger-v3.v3.json`, public copy in "
                  "jarekbird/jira-api-mcp-wrapper @ 9a9e84da",
    },
    "jsm": {
        "upstream": "openapi/jsm-servicedesk-swagger.v3.json",
        "subset": "openapi/jsm-servicedesk-swagger.subset.json",
        "origin": "Atlassian's Service Management `swagger.v3.json`, public copy in xvrh/atlassian_apis "
                  "`tool/apis/service_management.json` @ a17e807b",
    },
}

# The operations kept, per spec: "METHODS PATH". METHODS is one or more of GET/PUT/POST/DELETE/PATCH joined
# by "|", or "*" for every method of the path. PATH is the spec's path template; a `{name}` segment matches
# any `{other}` segment (the specs name the same parameter differently); a trailing "*" keeps the path and
# every path below it ("/api/v2/groups*" = /api/v2/groups, /api/v2/groups/{group_id}, /api/v2/groups/count).
# Jira requests to /rest/api/2 are validated against the same /rest/api/3 operation (tests/support/
# jira_helpers.py): the platform spec describes v3 only.
# Not in the upstream specs, so not listed (a request to them fails with "no such operation" unless
# openapi_check.py declares them): Zendesk GET /api/v2/users/{user_id}/group_memberships (documented by
# Zendesk, declared in openapi_check.py).
OPERATIONS: dict[str, list[str]] = {
    "zendesk": [
        "GET|PUT /api/v2/tickets/{ticket_id}",
        "GET /api/v2/tickets/{ticket_id}/audits",
        "GET /api/v2/tickets/{ticket_id}/comments",
        "GET /api/v2/tickets/show_many",
        "GET /api/v2/organizations/{organization_id}",
        "GET /api/v2/organizations/show_many",
        "GET /api/v2/organization_fields",
        "GET /api/v2/users/{user_id}",
        "GET /api/v2/users/show_many",
        "GET /api/v2/users/me",
        "GET /api/v2/user_fields",
        "* /api/v2/groups*",
        "* /api/v2/group_memberships*",
        "* /api/v2/ticket_fields*",
        "* /api/v2/slas/policies*",
        "GET /api/v2/incremental/tickets/cursor*",
        "* /api/v2/satisfaction_ratings*",
    ],
    "jira": [
        "GET|PUT /rest/api/3/issue/{issueIdOrKey}",
        "GET /rest/api/3/issue/{issueIdOrKey}/changelog",
        "* /rest/api/3/issue/{issueIdOrKey}/comment*",
        "POST /rest/api/3/issue",
        "POST /rest/api/3/issueLink",
        "GET|POST /rest/api/3/issue/{issueIdOrKey}/remotelink",  # corrective actions linked to a Zendesk ticket
        "GET|POST /rest/api/3/search/jql",
        "* /rest/api/3/field*",
        "GET /rest/api/3/myself",
        "GET /rest/api/3/project/{projectIdOrKey}",  # validate --remote: the corrective-actions project
        "GET /rest/api/3/issueLinkType",  # validate --remote: the corrective-actions link type
        "* /rest/api/3/priority*",
        "GET /rest/api/3/groups/picker",
        "* /rest/api/3/group*",
        "* /rest/api/3/user*",
    ],
    "jsm": [
        "* /rest/servicedeskapi/request/{issueIdOrKey}*",
        "* /rest/servicedeskapi/organization*",
        "* /rest/servicedeskapi/servicedesk/{serviceDeskId}/organization",
    ],
}

# Components the spec-defect patches in tests/support/openapi_check.py refer to, kept even when no kept
# operation refers to them.
PATCH_REFERENCES: dict[str, list[str]] = {
    "zendesk": ["#/components/schemas/SLAPolicyObject", "#/components/parameters/UserId",
                "#/components/parameters/GroupId"],
    "jira": [],
    "jsm": [],
}

# Sample payloads the tests read (tests/vendor/samples/, names kept).
SAMPLES = [
    "jira-cloud__mattermost__webhook-cloud-comment-created.json",
    "jira-cloud__mattermost__webhook-cloud-issue-created-many-fields.json",
    "jira-cloud__mattermost__webhook-cloud-issue-updated-custom-field.json",
    "jira-cloud__mattermost__webhook-issue-updated-raised-priority.json",
    "zendesk-event__captured__ticket.created.json",
    "zendesk-event__dust__ticket.priority_changed.json",
    "zendesk-trigger__zulip__ticket_create_update.json",
]
README = ("README.md", "VENDOR_README.md")


# ------------------------------------------------------------------------------------------------ selection
def _segments(path: str) -> list[str]:
    return path.strip("/").split("/")


def _is_parameter(segment: str) -> bool:
    return segment.startswith("{") and segment.endswith("}")


def _same_segment(a: str, b: str) -> bool:
    return a == b or (_is_parameter(a) and _is_parameter(b))


def path_matches(pattern: str, template: str) -> bool:
    """`pattern` (a PATH of OPERATIONS, optionally ending in "*") matches the spec path `template`."""
    below = pattern.endswith("*")
    wanted, actual = _segments(pattern.rstrip("*")), _segments(template)
    if len(actual) < len(wanted) or (not below and len(actual) != len(wanted)):
        return False
    return all(_same_segment(w, a) for w, a in zip(wanted, actual))


def parse_operation(entry: str) -> tuple[set[str] | None, str]:
    """"GET|PUT /path" -> ({"get", "put"}, "/path"); "* /path" -> (None, "/path")."""
    methods, path = entry.split(" ", 1)
    return (None if methods == "*" else {m.lower() for m in methods.split("|")}), path


def selected_operations(spec: str, paths: dict[str, Any]) -> list[tuple[str, str]]:
    """(method, template) for every operation of `paths` that OPERATIONS[spec] names, in spec order.
    Fails on an entry that matches nothing, so a typo cannot silently drop an operation."""
    chosen: list[tuple[str, str]] = []
    for entry in OPERATIONS[spec]:
        methods, pattern = parse_operation(entry)
        found = [(method, template) for template, item in paths.items() if path_matches(pattern, template)
                 for method in METHODS if method in item and (methods is None or method in methods)]
        if not found:
            raise SystemExit(f"{spec}: {entry!r} matches no operation of the upstream spec")
        chosen.extend(found)
    order = _upstream_order(paths)
    return sorted(set(chosen), key=order.__getitem__)


def _upstream_order(paths: dict[str, Any]) -> dict[tuple[str, str], int]:
    """(method, template) -> position in the upstream file, so output never depends on set order."""
    return {(method, template): index for index, (method, template) in
            enumerate((m, t) for t, item in paths.items() for m in item if m in METHODS)}


def _overlap(a: str, b: str) -> bool:
    """Some request path matches both templates."""
    sa, sb = _segments(a), _segments(b)
    return len(sa) == len(sb) and all(x == y or _is_parameter(x) or _is_parameter(y) for x, y in zip(sa, sb))


def with_overlapping(kept: list[tuple[str, str]], paths: dict[str, Any]) -> list[tuple[str, str]]:
    """Adds every operation a request to a kept one could resolve to instead (same method, overlapping path,
    e.g. GET /api/v2/tickets/count next to GET /api/v2/tickets/{ticket_id}), repeated until nothing changes:
    path matching then picks the same operation in the subset as in the full spec."""
    result = set(kept)
    changed = True
    while changed:
        changed = False
        for method, template in list(result):
            for other, item in paths.items():
                if method in item and (method, other) not in result and _overlap(template, other):
                    result.add((method, other))
                    changed = True
    order = _upstream_order(paths)
    return sorted(result, key=order.__getitem__)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _lookup(document: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#/"):
        raise SystemExit(f"external $ref {ref!r} is not supported")
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def subset(spec: str, document: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]], list[tuple[str, str]]]:
    """The subset document, the operations OPERATIONS names, and those added because they overlap them."""
    named = selected_operations(spec, document["paths"])
    kept = with_overlapping(named, document["paths"])
    paths: dict[str, Any] = {}
    for method, template in kept:
        item = document["paths"][template]
        target = paths.setdefault(template, {k: v for k, v in item.items() if k not in METHODS})
        target[method] = item[method]
    # Path items come out in upstream order, each with its methods in upstream order.
    paths = {t: {k: v for k, v in document["paths"][t].items() if k in paths[t]} for t in document["paths"]
             if t in paths}

    wanted: set[str] = set()
    pending = list(_refs(paths)) + PATCH_REFERENCES[spec]
    while pending:
        ref = pending.pop()
        if ref in wanted:
            continue
        wanted.add(ref)
        pending.extend(_refs(_lookup(document, ref)))
    components: dict[str, dict[str, Any]] = {}
    for kind, entries in document.get("components", {}).items():
        # Security schemes are not $ref'd but used by name (root / operation `security`): keep them all.
        keep = {name: value for name, value in entries.items()
                if kind == "securitySchemes" or f"#/components/{kind}/{name}" in wanted}
        if keep:
            components[kind] = keep

    used_tags = {tag for item in paths.values() for method in METHODS if method in item
                 for tag in item[method].get("tags", [])}
    result: dict[str, Any] = {}
    for key, value in document.items():
        if key == "paths":
            result[key] = paths
        elif key == "components":
            result[key] = components
        elif key == "tags":
            result[key] = [tag for tag in value if tag.get("name") in used_tags]
        elif not key.startswith("x-"):  # narrative prose for the vendor's docs site
            result[key] = value
    return result, named, [op for op in kept if op not in named]


# ------------------------------------------------------------------------------------------------ loading
def load_upstream(path: Path) -> dict[str, Any]:
    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe")
    # The Zendesk spec has bare `=` scalars, which YAML reads as the `value` tag.
    yaml.constructor.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))
    return _json_ready(yaml.load(path.read_text(encoding="utf-8")))


def _json_ready(node: Any) -> Any:
    """YAML reads unquoted timestamps (only in the Zendesk spec's examples) as datetimes; JSON keeps text."""
    if isinstance(node, dict):
        return {str(key): _json_ready(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_json_ready(value) for value in node]
    if isinstance(node, (datetime, date)):
        return node.isoformat()
    return node


def dump(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED,
                        help=f"the full vendor reference data (default: {DEFAULT_SHARED})")
    parser.add_argument("--out", type=Path, default=HERE, help="where to write (default: tests/vendor)")
    args = parser.parse_args(argv)
    shared: Path = args.shared.resolve()
    out: Path = args.out
    if not (shared / "openapi").is_dir():
        print(f"no vendor reference data at {shared} (pass --shared)", file=sys.stderr)
        return 2

    lines = [
        "# Vendor reference data used by the tests",
        "",
        "Generated by `python tests/vendor/regenerate.py --shared <vendor reference data>`; do not edit by hand",
        "(tests/test_vendor_subsets.py checks the files against the sha256 sums below).",
        "Each OpenAPI subset holds the listed operations exactly as published, plus every component they",
        "reference (`$ref` closure) and every operation a request to them could resolve to instead (same",
        "method, overlapping path), so a request validates as it would against the full spec. Root `x-`",
        "extensions (documentation prose) and unused tags are left out. The spec corrections the tests need",
        "are applied on loading, in tests/support/openapi_check.py, not here.",
        "",
    ]
    for spec, meta in SPECS.items():
        upstream = shared / meta["upstream"]
        raw = upstream.read_bytes()
        document = load_upstream(upstream)
        result, named, added = subset(spec, document)
        text = dump(result)
        target = out / meta["subset"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        info = document.get("info", {})
        lines += [
            f"## {spec}: `{meta['subset']}`",
            "",
            f"- upstream file: `{Path(meta['upstream']).name}` — {meta['origin']}",
            f"- title: {info.get('title')}; info.version: {info.get('version')}; openapi: {document.get('openapi')}",
            f"- upstream sha256: `{sha256(raw)}` ({len(raw)} bytes, {len(document['paths'])} paths)",
            f"- subset sha256: `{sha256(text.encode('utf-8'))}` ({len(text.encode('utf-8'))} bytes, "
            f"{len(result['paths'])} paths, "
            f"{sum(len(v) for v in result.get('components', {}).values())} components)",
            "- listed in regenerate.py: " + ", ".join(f"`{entry}`" for entry in OPERATIONS[spec]),
            "",
            "Operations kept:",
            "",
        ]
        lines += [f"- `{method.upper()} {template}`" for method, template in named]
        if added:
            lines += ["", "Kept because a request to a listed operation could resolve to them:", ""]
            lines += [f"- `{method.upper()} {template}`" for method, template in added]
        lines.append("")

    lines += ["## Copied files", ""]
    copies = [(f"samples/{name}", f"samples/{name}") for name in SAMPLES] + [README]
    for source, destination in copies:
        data = (shared / source).read_bytes()
        (out / destination).parent.mkdir(parents=True, exist_ok=True)
        (out / destination).write_bytes(data)
        lines.append(f"- `{destination}` from `{source}`, sha256 `{sha256(data)}`")
    lines += ["", "Samples: where each comes from is in VENDOR_README.md (a verbatim copy of the vendor README).", ""]
    (out / "SOURCE.md").write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {out}/SOURCE.md and the files it lists")
    return 0


if __name__ == "__main__":
    sys.exit(main())
