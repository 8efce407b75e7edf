"""Bad input at both webhook routes, on SQLite and PostgreSQL: a delivery the service cannot store is a
400 naming the field (never a 5xx the vendor would retry forever), a forged one is never accepted, and a
refused one leaves the event store unchanged.

The property-based part runs a fixed, derandomized budget so CI is repeatable and bounded; the named
cases below it are the reproductions from the issue."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st
from sqlalchemy import func, select

from integration.store.db import EventRow, get_database
from integration.store.events import DatabaseEventSink
from service.settings import Settings
from webhooks.app import create_app
from webhooks.signatures import jira_signature, zendesk_signature

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2025, 1, 8, 12, 0, 0, tzinfo=timezone.utc)
ZENDESK_SECRET = "fuzz-zendesk-signing-secret"
JIRA_SECRET = "fuzz-jira-hmac-secret"
FUZZ_BUDGET = hypothesis_settings(
    max_examples=120, derandomize=True, deadline=None, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Sentinels swapped for raw JSON text after json.dumps, which cannot write these values itself.
HUGE_NUMBER = "__fuzz_huge_number__"
DEEP_NESTING = "__fuzz_deep_nesting__"
RAW_REPLACEMENTS = {
    json.dumps(HUGE_NUMBER): "1" * 4400,
    json.dumps(DEEP_NESTING): "[" * 1000 + "]" * 1000,
}


class Edge:
    """The real app over a DatabaseEventSink, with a way to count stored events."""

    def __init__(self, database_url: str):
        self.db = get_database(database_url)
        settings = Settings(_env_file=None, DATABASE_URL=database_url, ZENDESK_WEBHOOK_SECRET=ZENDESK_SECRET,
                            JIRA_WEBHOOK_SECRET=JIRA_SECRET)
        self.app = create_app(settings, sink=DatabaseEventSink(self.db, enqueue=None), clock=lambda: NOW)
        self.client = self.app.test_client()

    def stored(self) -> int:
        with self.db.session() as session:
            return session.scalar(select(func.count()).select_from(EventRow))

    def post(self, vendor: str, body: bytes, *, forged: bool = False, delivery_id: str | None = None):
        headers = {"Content-Type": "application/json"}
        if vendor == "zendesk":
            timestamp = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
            secret = "not-the-secret" if forged else ZENDESK_SECRET
            headers["X-Zendesk-Webhook-Signature"] = zendesk_signature(secret, timestamp, body)
            headers["X-Zendesk-Webhook-Signature-Timestamp"] = timestamp
            if delivery_id is not None:
                headers["X-Zendesk-Webhook-Invocation-Id"] = delivery_id
        else:
            headers["X-Hub-Signature"] = jira_signature("not-the-secret" if forged else JIRA_SECRET, body)
            if delivery_id is not None:
                headers["X-Atlassian-Webhook-Identifier"] = delivery_id
        return self.client.post(f"/webhooks/{vendor}", data=body, headers=headers)


@pytest.fixture
def edge(database_url) -> Edge:
    return Edge(database_url)


# ------------------------------------------------------------------------------------ strategies
def _fixture(vendor: str, name: str) -> Any:
    return json.loads((FIXTURES / vendor / f"{name}.json").read_text())


TEMPLATES = {
    "zendesk": [_fixture("zendesk", name) for name in
                ("ticket_priority_changed", "ticket_comment_added", "trigger_ticket_updated", "ticket_created")],
    "jira": [_fixture("jira", name) for name in
             ("issue_updated_priority", "comment_created", "automation_issue_updated", "worklog_created")],
}


def _leaf_paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    if isinstance(value, dict):
        paths = [prefix] if prefix else []
        for key, inner in value.items():
            paths.extend(_leaf_paths(inner, prefix + (key,)))
        return paths
    return [prefix]


NASTY_TEXT = st.sampled_from([
    " KT-77 ", " 123 ", "\ud800", "a\udfffb", "actor\x00id", "x" * 65, "SUP-" + "9" * 70, "ABC-1" + " " * 80,
    "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00", "2025-01-08T12:00:00Z", "", " ",
    "zen:event-type:ticket.\ud800", "zen:ticket:1", "jira:issue_updated", HUGE_NUMBER, DEEP_NESTING,
])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20) | NASTY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
FUZZ_VALUES = st.one_of(NASTY_TEXT, st.integers(min_value=-(2**70), max_value=2**70), JSON_VALUES)


@st.composite
def bodies(draw, vendor: str) -> bytes:
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "random-json", "raw-bytes"]))
    if kind == "raw-bytes":
        return draw(st.binary(max_size=200))
    if kind == "random-json":
        document = draw(JSON_VALUES)
    else:
        document = json.loads(json.dumps(draw(st.sampled_from(TEMPLATES[vendor]))))
        paths = _leaf_paths(document)
        for path in draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3)):
            target = document
            for key in path[:-1]:
                target = target.get(key) if isinstance(target, dict) else None
            if isinstance(target, dict):
                target[path[-1]] = draw(FUZZ_VALUES)
    text = json.dumps(document)
    for sentinel, raw in RAW_REPLACEMENTS.items():
        text = text.replace(sentinel, raw)
    return text.encode()


DELIVERY_IDS = st.none() | st.sampled_from([" inv-1 ", "x" * 300, "dup"]) | st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30)


def _check(edge: Edge, vendor: str, body: bytes, forged: bool, delivery_id: str | None) -> None:
    before = edge.stored()
    response = edge.post(vendor, body, forged=forged, delivery_id=delivery_id)
    assert response.status_code < 500, (response.status_code, response.get_data(as_text=True), body[:300])
    assert b"Traceback" not in response.data and b'File "' not in response.data
    if forged:
        assert response.status_code == 401
    if 400 <= response.status_code < 500:
        assert edge.stored() == before, f"a {response.status_code} stored an event"
    if response.status_code == 202:
        assert edge.stored() == before + 1


@pytest.mark.parametrize("vendor", ["zendesk", "jira"])
def test_fuzzed_deliveries_are_never_5xx_and_refusals_store_nothing(edge, vendor):
    @FUZZ_BUDGET
    @given(body=bodies(vendor), forged=st.booleans(), delivery_id=DELIVERY_IDS)
    def run(body: bytes, forged: bool, delivery_id: str | None) -> None:
        _check(edge, vendor, body, forged, delivery_id)

    run()


# ------------------------------------------------------------------------- the issue's reproductions
def _zendesk(**detail: Any) -> dict[str, Any]:
    body = _fixture("zendesk", "ticket_priority_changed")
    body["detail"].update(detail)
    return body


def _jira(key: str = "SUP-7", account: str = "5b10a2844c20165700ede21g") -> dict[str, Any]:
    body = _fixture("jira", "issue_updated_priority")
    body["issue"]["key"] = key
    body["user"]["accountId"] = account
    return body


REFUSED = [
    ("zendesk", json.dumps(_zendesk()).replace('"HIGH"', "[" * 1000 + "]" * 1000, 1), "nested too deeply"),
    ("jira", json.dumps(_jira()).replace('"SUP-7"', '"SUP-7", "unused": ' + "7" * 4400, 1), "4300 digits"),
    ("zendesk", json.dumps({**_zendesk(), "time": "9999-12-31T23:59:59-05:00"}), "time is out of range"),
    ("zendesk", json.dumps(_zendesk(actor_id="\ud800")), "detail.actor_id contains an unpaired UTF-16 surrogate"),
    ("zendesk", json.dumps(_zendesk(actor_id="a" * 65)), "detail.actor_id is longer than 64"),
    ("zendesk", json.dumps(_zendesk(actor_id="agent\x00")), "detail.actor_id must not contain NUL"),
    ("jira", json.dumps(_jira(key="SUP-" + "1" * 70)), "issue.key is longer than 64"),
    ("jira", json.dumps(_jira(account="b" * 65)), "user.accountId is longer than 64"),
    ("jira", json.dumps({"webhookEvent": "worklog_created", "worklog": {"issueId": "9" * 65}}),
     "worklog.issueId is longer than 64"),
    ("jira", json.dumps({**_jira(), "webhookEvent": "jira:\ud800"}), "webhookEvent contains an unpaired"),
    ("jira", json.dumps({**_fixture("jira", "automation_issue_updated"), "event": ["issue_updated"]}),
     "event must be one of"),
]


@pytest.mark.parametrize("vendor,body,message", REFUSED, ids=[message for _, _, message in REFUSED])
def test_unstorable_deliveries_are_400_naming_the_field(edge, vendor, body, message):
    response = edge.post(vendor, body.encode(), delivery_id="repro-1")
    assert response.status_code == 400, response.get_data(as_text=True)
    assert message in response.get_json()["error"]
    assert "Retry-After" not in response.headers
    assert edge.stored() == 0


def test_padded_issue_key_is_one_ticket_in_the_dry_run_snapshot(edge):
    from connectors.jira import webhook_snapshot as jira_sm
    from integration.simulate import OfflineConnector
    from tests.support.jira_helpers import enterprise_matrix

    first = edge.post("jira", json.dumps(_jira(key=" SUP-7 ")).encode(), delivery_id="pad-1")
    second = edge.post("jira", json.dumps({**_jira(key="SUP-7"), "timestamp": 1736337700000}).encode(),
                       delivery_id="pad-2")
    assert (first.status_code, second.status_code) == (202, 202)
    with edge.db.session() as session:
        assert set(session.scalars(select(EventRow.ticket_id))) == {"SUP-7"}
    ticket = OfflineConnector("jira", edge.db, enterprise_matrix(), jira_sm.snapshot_from_webhook).fetch_ticket("SUP-7")
    assert ticket.id == "SUP-7"
