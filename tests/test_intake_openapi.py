"""docs/openapi.yaml against the app, in both directions, on SQLite and PostgreSQL.

The spec is a valid OpenAPI document and names every route the app serves (and no other); its examples are
accepted; and schemathesis, generating bodies and headers from it (schema-valid and schema-violating), finds
the app answering only documented statuses, content types, headers and bodies, never a 5xx or a traceback,
never 2xx for an unsigned delivery, and storing nothing on a 4xx. The budget is fixed and derandomized, as in
tests/test_intake_fuzz.py (which fuzzes the raw bytes); webhook bodies are signed by tests/support/openapi_hooks.py.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from openapi_spec_validator.readers import read_from_filename
from pydantic import SecretStr
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import func, select

from integration.store.db import EventRow, get_database, reset_databases
from integration.store.events import DatabaseEventSink
from service.settings import Settings
from tests.support.openapi_hooks import JIRA_PATH, ZENDESK_PATH, WebhookSigner, signing
from webhooks.app import create_app

SPEC_PATH = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"
NOW = datetime(2025, 1, 8, 12, 0, 0, tzinfo=timezone.utc)
ZENDESK_SECRET = "openapi-zendesk-signing-secret"
JIRA_SECRET = "openapi-jira-hmac-secret"
JIRA_SHARED_SECRET = "openapi-jira-shared-secret"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
OPENAPI_BUDGET = hypothesis_settings(
    max_examples=60, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck),
)

SIGNED_AT = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
SIGNERS = {
    "signed": WebhookSigner(ZENDESK_SECRET, SIGNED_AT, JIRA_SECRET, JIRA_SHARED_SECRET),
    "shared-secret": WebhookSigner(ZENDESK_SECRET, SIGNED_AT, JIRA_SECRET, JIRA_SHARED_SECRET, jira_method="shared-secret"),
    "forged": WebhookSigner("not-the-zendesk-secret", SIGNED_AT, "not-the-jira-secret", "not-the-shared-secret"),
    "unsigned": None,
}
RUNS = [(ZENDESK_PATH, "signed"), (ZENDESK_PATH, "forged"), (ZENDESK_PATH, "unsigned"),
        (JIRA_PATH, "signed"), (JIRA_PATH, "shared-secret"), (JIRA_PATH, "forged"), (JIRA_PATH, "unsigned")]
# Forged: well-formed credentials made with the wrong secrets. Unsigned: the generated (random) headers.
UNAUTHENTIC = {"forged", "unsigned"}


def _spec() -> dict[str, Any]:
    spec, _ = read_from_filename(str(SPEC_PATH))
    return spec


def _settings(database_url: str) -> Settings:
    # QUEUE_URL: a /metrics scrape opens the deployment's queue, which must not be the working directory's.
    return Settings(_env_file=None, DATABASE_URL=database_url, QUEUE_URL="memory://",
                    ZENDESK_WEBHOOK_SECRET=ZENDESK_SECRET, JIRA_WEBHOOK_SECRET=JIRA_SECRET,
                    JIRA_SHARED_SECRET=JIRA_SHARED_SECRET)


class Edge:
    """The real app over a DatabaseEventSink, with a way to count stored events."""

    def __init__(self, database_url: str):
        self.db = get_database(database_url)
        self.app = create_app(_settings(database_url), sink=DatabaseEventSink(self.db, enqueue=None),
                              clock=lambda: NOW)

    def stored(self) -> int:
        with self.db.session() as session:
            return session.scalar(select(func.count()).select_from(EventRow))


@pytest.fixture
def edge(database_url) -> Edge:
    return Edge(database_url)


# ------------------------------------------------------------------------------ the document itself
def test_the_spec_is_a_valid_openapi_document():
    spec = _spec()
    validate_openapi(spec)
    loaded = schemathesis.openapi.from_path(SPEC_PATH)
    labels = []
    for result in loaded.get_all_operations():
        labels.append(result.ok().label)  # an operation schemathesis cannot use raises here
    assert sorted(labels) == sorted(
        f"{method.upper()} {path}" for path, item in spec["paths"].items() for method in item if method in HTTP_METHODS)


def test_every_route_the_app_serves_is_documented_and_nothing_else(tmp_path):
    app = create_app(_settings(f"sqlite:///{tmp_path}/events.db"), sink=None, clock=lambda: NOW)
    served = {
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        # The admin console is a browser UI (README "Admin console"), not part of the machine API.
        if not rule.rule.startswith("/admin")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    # The vendor routes the app answers in front of Flask's URL map, too.
    served |= {(f"/webhooks/{vendor}", "POST") for vendor in app.extensions["webhook_edge"].routes}
    documented = {(path, method.upper()) for path, item in _spec()["paths"].items()
                  for method in item if method in HTTP_METHODS}
    assert {route for route in served if route[0].startswith("/webhooks/")} == {
        (ZENDESK_PATH, "POST"), (JIRA_PATH, "POST")}
    assert served == documented


@pytest.mark.parametrize("path", [ZENDESK_PATH, JIRA_PATH])
def test_the_documented_examples_are_accepted(edge, path):
    examples = _spec()["paths"][path]["post"]["requestBody"]["content"]["application/json"]["examples"]
    client = edge.app.test_client()
    for number, (name, example) in enumerate(examples.items(), start=1):
        body = json.dumps(example["value"]).encode()
        headers = {"Content-Type": "application/json", **SIGNERS["signed"].headers(path, body)}
        response = client.post(path, data=body, headers=headers)
        assert response.status_code == 202, (name, response.get_json())
        assert edge.stored() == number


def _recorded_bodies(vendor: str) -> list[Path]:
    """The test fixtures' webhook bodies and the real vendor samples (tests/vendor/samples)."""
    tests = Path(__file__).resolve().parent
    return (sorted((tests / "fixtures" / vendor).glob("*.json"))
            + sorted((tests / "vendor" / "samples").glob(f"{vendor}-*.json")))


@pytest.mark.parametrize("path", [ZENDESK_PATH, JIRA_PATH])
def test_recorded_bodies_are_accepted_exactly_when_the_spec_allows_them(edge, path):
    spec = _spec()
    body_schema = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    validator = Draft202012Validator({**body_schema, "components": spec["components"]})
    client = edge.app.test_client()
    disagreements = []
    for file in _recorded_bodies(path.rsplit("/", 1)[1]):
        body = file.read_bytes()
        headers = {"Content-Type": "application/json", **SIGNERS["signed"].headers(path, body)}
        response = client.post(path, data=body, headers=headers)
        documented = validator.is_valid(json.loads(body))
        if documented != (response.status_code in (200, 202)):
            disagreements.append((file.name, documented, response.status_code, response.get_json()))
    assert disagreements == []


# ------------------------------------------------------------------------- schemathesis over the spec
SCHEMA = schemathesis.openapi.from_path(SPEC_PATH)


def no_traceback(ctx, response, case) -> None:
    text = response.content.decode("utf-8", "replace")
    if "Traceback" in text or 'File "' in text:
        raise AssertionError("the response shows a traceback")


def never_accepted(ctx, response, case) -> None:
    if 200 <= response.status_code < 300:
        raise AssertionError(f"a delivery without valid credentials was answered {response.status_code}")


# The answer is documented: its status, content type, headers and body.
CONFORMS = [status_code_conformance, content_type_conformance, response_headers_conformance,
            response_schema_conformance, no_traceback]
CHECKS = [not_a_server_error, *CONFORMS]


def _generated_cases(path: str, method: str):
    operation = SCHEMA[path][method]
    return st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))


@pytest.mark.parametrize("path,auth", RUNS, ids=[f"{path.rsplit('/', 1)[1]}-{auth}" for path, auth in RUNS])
def test_generated_deliveries_get_documented_answers_and_refusals_store_nothing(edge, path, auth):
    checks = CHECKS + ([never_accepted] if auth in UNAUTHENTIC else [])
    answered: dict[int, int] = {}

    @OPENAPI_BUDGET
    @given(case=_generated_cases(path, "POST"))
    def run(case) -> None:
        before = edge.stored()
        with signing(SIGNERS[auth]):
            response = case.call(app=edge.app)
        case.validate_response(response, checks=checks)
        answered[response.status_code] = answered.get(response.status_code, 0) + 1
        if 400 <= response.status_code < 500:
            assert edge.stored() == before, f"a {response.status_code} stored an event"
        if response.status_code == 202:
            assert edge.stored() == before + 1

    run()
    if auth not in UNAUTHENTIC:
        # The authentic run gets past the signature into the parsers and the store, not only refusals.
        assert answered.get(202, 0) + answered.get(200, 0) > 0, answered


class DownStore:
    """An event sink whose database cannot commit."""

    def accept(self, event, payload, received_at):
        raise OSError("could not fsync: disk full")

    def health(self) -> dict[str, str]:
        return {"database": "unavailable"}


NO_SECRETS = dict(zendesk_webhook_secret=None, jira_webhook_secret=None, jira_shared_secret=None)
# Refusals generated requests seldom or never reach: (settings changed, sink, request headers, status).
REFUSALS = {
    "too-large": (dict(webhook_max_body_bytes=32), None, {}, 413),
    "not-json": ({}, None, {"Content-Type": "text/plain"}, 415),
    "secret-missing": (NO_SECRETS, None, {}, 503),
    "store-down": ({}, DownStore(), {}, 503),
}


@pytest.mark.parametrize("path", [ZENDESK_PATH, JIRA_PATH])
@pytest.mark.parametrize("refusal", REFUSALS)
def test_the_other_refusals_are_documented(tmp_path, path, refusal):
    changes, sink, headers, status = REFUSALS[refusal]
    settings = _settings(f"sqlite:///{tmp_path}/events.db").model_copy(update=changes)
    app = create_app(settings, sink=sink or DatabaseEventSink(get_database(settings.database_url), enqueue=None),
                     clock=lambda: NOW)
    example = next(iter(_spec()["paths"][path]["post"]["requestBody"]["content"]["application/json"]["examples"].values()))
    case = SCHEMA[path]["POST"].Case(body=example["value"], media_type="application/json")
    with signing(SIGNERS["signed"]):
        response = case.call(app=app, headers=headers)
    case.validate_response(response, checks=CONFORMS)
    assert response.status_code == status, response.json()
    # schemathesis' Response: lower-case header names, each with its list of values.
    assert response.headers.get("retry-after") == (["10"] if refusal == "store-down" else None)
    reset_databases()


def test_readyz_while_the_store_is_down_is_documented(tmp_path):
    app = create_app(_settings(f"sqlite:///{tmp_path}/events.db"), sink=DownStore(), clock=lambda: NOW)
    case = SCHEMA["/readyz"]["GET"].Case()
    response = case.call(app=app)
    case.validate_response(response, checks=CONFORMS)
    assert response.status_code == 503


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_probes_get_documented_answers(edge, path):
    @hypothesis_settings(OPENAPI_BUDGET, max_examples=3)
    @given(case=_generated_cases(path, "GET"))
    def run(case) -> None:
        response = case.call(app=edge.app)
        case.validate_response(response, checks=CHECKS)
        assert response.status_code == 200

    run()


def test_a_metrics_scrape_without_the_token_gets_the_documented_refusal(tmp_path):
    settings = _settings(f"sqlite:///{tmp_path}/events.db").model_copy(update={"metrics_token": SecretStr("scrape")})
    app = create_app(settings, sink=DatabaseEventSink(get_database(settings.database_url), enqueue=None))
    case = SCHEMA["/metrics"]["GET"].Case()
    response = case.call(app=app)
    case.validate_response(response, checks=CHECKS)
    assert response.status_code == 401
    reset_databases()
