"""Validate the requests our connectors send against the vendors' published OpenAPI specs.

`validate_request("zendesk", "PUT", url, body)` raises AssertionError naming the violation when the path,
method, query parameters or JSON body do not fit the spec. On top of openapi-core's schema validation it
flags body keys the spec does not declare (the specs leave `additionalProperties` open, so a misspelled
key would otherwise pass), except for keys the vendor documents outside the spec (see KNOWN_UNDECLARED).
`validate_zendesk_calls(calls)` validates everything a test's `responses` mock recorded from zenpy and our
Zendesk client.

Where a published spec contradicts the vendor's API reference, the spec is patched once on loading
(`_patch_zendesk_spec_defects`, one function per defect, each citing it); nothing else is loosened.

Specs live in ../shared/vendor/openapi/ and are parsed once per test session.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

VENDOR_OPENAPI = Path(__file__).resolve().parents[3] / "shared" / "vendor" / "openapi"

SPEC_FILES = {
    "zendesk": "zendesk-support-oas.yaml",
    "jira": "jira-platform-swagger-v3.v3.json",
    "jsm": "jsm-servicedesk-swagger.v3.json",
}

# Body keys the vendor's API reference documents but its OpenAPI file omits: "dotted.path" per spec.
KNOWN_UNDECLARED: dict[str, frozenset[str]] = {
    # Zendesk documents additional_tags/remove_tags on Update Ticket ("Updating tag lists") but the OAS
    # TicketUpdateInput lists only `tags`, which replaces the whole list.
    "zendesk": frozenset({"ticket.additional_tags", "ticket.remove_tags"}),
    "jira": frozenset(),
    "jsm": frozenset(),
}


@lru_cache(maxsize=None)
def _spec_dict(spec: str) -> dict[str, Any]:
    path = VENDOR_OPENAPI / SPEC_FILES[spec]
    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe")
    # The Zendesk spec has bare `=` scalars, which YAML reads as the `value` tag.
    yaml.constructor.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))
    document = yaml.load(path.read_text(encoding="utf-8"))
    _patch_zendesk_spec_defects(document)
    return document


def _patch_zendesk_spec_defects(document: dict[str, Any]) -> None:
    """Every correction of the Zendesk OAS; each function below names the defect it fixes."""
    _patch_custom_field_values(document)
    _patch_list_groups_parameters(document)
    _patch_sla_policy_request_bodies(document)


def _patch_custom_field_values(document: dict[str, Any]) -> None:
    """The OAS types TicketUpdateInput.custom_fields items as CustomFieldObject, the *ticket field definition*
    (required key/type/title, read-only id). Zendesk's reference ("Setting custom field values") and the same
    spec's Request schema use `{"id": <field id>, "value": ...}`, which is what the API takes. Only this item
    schema is replaced; everything else is validated as published."""
    ticket_update = document["components"]["schemas"]["TicketUpdateInput"]["properties"]
    ticket_update["custom_fields"]["items"] = {
        "type": "object",
        "required": ["id"],
        "additionalProperties": False,
        "properties": {"id": {"type": "integer"}, "value": {"nullable": True}},
    }


def _patch_list_groups_parameters(document: dict[str, Any]) -> None:
    """Zendesk's reference documents List Groups as two endpoints, `GET /api/v2/groups` and
    `GET /api/v2/users/{user_id}/groups`; the OAS has only the first path but kept the second's required
    `user_id` *path* parameter (`#/components/parameters/UserId`), so every List Groups request would fail
    with "Missing required path parameter: user_id". That reference is dropped from this operation only;
    `exclude_deleted` is still checked."""
    operation = document["paths"]["/api/v2/groups"]["get"]
    operation["parameters"] = [
        parameter for parameter in operation["parameters"]
        if parameter.get("$ref") != "#/components/parameters/UserId"
    ]


def _patch_sla_policy_request_bodies(document: dict[str, Any]) -> None:
    """Create SLA Policy (POST /api/v2/slas/policies) and Update SLA Policy (PUT .../{sla_policy_id}) have
    no requestBody in the OAS, and Reorder SLA Policies declares `sla_policy_ids` as a query parameter,
    while Zendesk's reference sends `{"sla_policy": {...}}` and `{"sla_policy_ids": [...]}` as JSON bodies.
    Without a declared body nothing about ours would be checked, so the reference's bodies are declared:
    the policy is the spec's own SLAPolicyObject (required title and filter, read-only keys refused,
    undeclared keys flagged), metrics are SLAPolicyMetricObject (integer `target`)."""
    def json_body(schema: dict[str, Any]) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {"schema": schema}}}

    policy_body = json_body({
        "type": "object",
        "required": ["sla_policy"],
        "properties": {"sla_policy": {"$ref": "#/components/schemas/SLAPolicyObject"}},
    })
    paths = document["paths"]
    paths["/api/v2/slas/policies"]["post"]["requestBody"] = policy_body
    paths["/api/v2/slas/policies/{sla_policy_id}"]["put"]["requestBody"] = policy_body
    reorder = paths["/api/v2/slas/policies/reorder"]["put"]
    reorder["parameters"] = [p for p in reorder.get("parameters", []) if p.get("name") != "sla_policy_ids"]
    reorder["requestBody"] = json_body({
        "type": "object",
        "required": ["sla_policy_ids"],
        "properties": {"sla_policy_ids": {"type": "array", "items": {"type": "integer"}}},
    })


@lru_cache(maxsize=None)
def _openapi(spec: str):
    from openapi_core import Config, OpenAPI

    # The published specs are not fully valid themselves (e.g. unresolved path parameters in Zendesk's):
    # skip validating the spec, validate our requests against it.
    return OpenAPI.from_dict(_spec_dict(spec), config=Config(spec_validator_cls=None))


def _server_base(spec: str) -> str:
    return {"zendesk": "https://example.zendesk.com", "jira": "https://your-domain.atlassian.net",
            "jsm": "https://your-domain.atlassian.net"}[spec]


def _resolve(spec: str, schema: dict[str, Any]) -> dict[str, Any]:
    while isinstance(schema, dict) and "$ref" in schema:
        node: Any = _spec_dict(spec)
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _operation(spec: str, method: str, path: str) -> dict[str, Any] | None:
    """The operation for `method path`; a literal segment beats a `{parameter}` (as in openapi-core), so
    `/slas/policies/reorder` is Reorder, not Update with sla_policy_id=reorder."""
    parts = path.strip("/").split("/")
    best: tuple[int, dict[str, Any]] | None = None
    for template, item in _spec_dict(spec)["paths"].items():
        template_parts = template.strip("/").split("/")
        if len(template_parts) != len(parts):
            continue
        if all(t == p or (t.startswith("{") and t.endswith("}")) for t, p in zip(template_parts, parts)):
            operation = item.get(method.lower())
            literal = sum(t == p for t, p in zip(template_parts, parts))
            if operation is not None and (best is None or literal > best[0]):
                best = (literal, operation)
    return best[1] if best else None


def _undeclared_keys(spec: str, schema: dict[str, Any], body: Any, prefix: str) -> list[str]:
    schema = _resolve(spec, schema)
    problems: list[str] = []
    if not isinstance(schema, dict):
        return problems
    for combinator in ("allOf", "oneOf", "anyOf"):
        if combinator in schema:
            # Accept a key declared by any branch.
            merged: dict[str, Any] = {}
            for branch in schema[combinator]:
                merged.update(_resolve(spec, branch).get("properties", {}))
            schema = {**schema, "properties": {**schema.get("properties", {}), **merged}}
    if isinstance(body, dict) and "properties" in schema and schema.get("additionalProperties") in (None, True):
        properties = schema["properties"]
        for key, value in body.items():
            dotted = f"{prefix}{key}"
            if key not in properties:
                if dotted not in KNOWN_UNDECLARED[spec]:
                    problems.append(f"{dotted}: not declared in the {spec} spec")
                continue
            problems.extend(_undeclared_keys(spec, properties[key], value, dotted + "."))
    elif isinstance(body, list) and "items" in schema:
        for index, item in enumerate(body):
            problems.extend(_undeclared_keys(spec, schema["items"], item, f"{prefix.rstrip('.')}[{index}]."))
    return problems


def validate_request(spec: str, method: str, url: str, body: Any = None, query: dict[str, Any] | None = None) -> None:
    """Assert that one request fits the vendor spec. `url` may be absolute or a path."""
    split = urlsplit(url)
    path = split.path
    full = _server_base(spec) + path
    query_string = split.query or (urlencode(query, doseq=True) if query else "")
    if query_string:
        full += "?" + query_string
    prepared = requests.Request(
        method.upper(), full, json=body if body is not None else None, auth=("validator@example.com", "token")
    ).prepare()
    _validate_prepared(spec, prepared)


def validate_prepared(spec: str, prepared: requests.PreparedRequest) -> None:
    """Assert that a request captured by `responses` (responses.calls[i].request) fits the vendor spec."""
    split = urlsplit(prepared.url)
    rebuilt = requests.Request(
        prepared.method,
        _server_base(spec) + split.path + (("?" + split.query) if split.query else ""),
        data=prepared.body,
        headers={k: v for k, v in prepared.headers.items() if k.lower() in ("content-type",)},
        auth=("validator@example.com", "token"),
    ).prepare()
    _validate_prepared(spec, rebuilt)


def validate_calls(spec_for_path, calls: Iterable[Any]) -> int:
    """Validate every call `responses` recorded; `spec_for_path(path) -> spec name or None (skip)`.
    Returns how many were validated."""
    count = 0
    for call in calls:
        spec = spec_for_path(urlsplit(call.request.url).path)
        if spec is None:
            continue
        validate_prepared(spec, call.request)
        count += 1
    return count


def validate_zendesk_calls(calls: Iterable[Any]) -> int:
    """Validate every Zendesk request a `responses` mock recorded (`rsps.calls`); returns how many.

    Two request shapes the spec cannot express are adjusted first, both documented by Zendesk:
    - zenpy calls `/api/v2/users/me.json` and friends: Zendesk accepts the `.json` suffix on every endpoint,
      the spec's paths do not have it, so it is checked without the suffix;
    - Incremental Ticket Export, Cursor Based: the spec marks `start_time` required on every request, the
      reference ("Cursor-based incremental exports") sends it on the first request only and `cursor`
      afterwards; a request with `cursor` and no `start_time` is checked with `start_time=0` added."""
    count = 0
    for call in calls:
        request = call.request.copy()
        split = urlsplit(request.url)
        path = split.path.removesuffix(".json")
        query = parse_qs(split.query)
        if path == "/api/v2/incremental/tickets/cursor" and "cursor" in query and "start_time" not in query:
            query["start_time"] = ["0"]
        request.url = f"{split.scheme}://{split.netloc}{path}" + (f"?{urlencode(query, doseq=True)}" if query else "")
        validate_prepared("zendesk", request)
        count += 1
    return count


def _validate_prepared(spec: str, prepared: requests.PreparedRequest) -> None:
    from openapi_core.contrib.requests import RequestsOpenAPIRequest

    path = urlsplit(prepared.url).path
    operation = _operation(spec, prepared.method, path)
    if operation is None:
        raise AssertionError(f"{prepared.method} {path}: no such operation in the {spec} spec")
    try:
        _openapi(spec).validate_request(RequestsOpenAPIRequest(prepared))
    except Exception as exc:  # openapi-core raises a family of validation errors
        cause = exc.__cause__ or exc
        detail = getattr(cause, "schema_errors", None)
        raise AssertionError(
            f"{prepared.method} {path} violates the {spec} spec: {exc}" + (f" ({detail})" if detail else "")
        ) from None
    body = prepared.body
    if body:
        payload = json.loads(body.decode() if isinstance(body, bytes) else body)
        content = operation.get("requestBody", {})
        content = _resolve(spec, content).get("content", {})
        schema = (content.get("application/json") or next(iter(content.values()), {})).get("schema")
        if schema is not None:
            problems = _undeclared_keys(spec, schema, payload, "")
            if problems:
                raise AssertionError(f"{prepared.method} {path}: " + "; ".join(problems))
