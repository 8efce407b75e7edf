"""The webhook HTTP edge as a vendor sees it: exact status and message for every rejection, 202 only after
the sink accepted, duplicates and ignored events answered 200, health endpoints, config failures."""
from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import types
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from werkzeug.test import EnvironBuilder

from integration.intake import AcceptResult
from service.settings import Settings
from webhooks.app import ConfigurationError, create_app
from webhooks.memory_sink import InMemoryEventSink
from webhooks.signatures import jira_signature, zendesk_signature

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2025, 1, 8, 12, 0, 0, tzinfo=timezone.utc)
ZENDESK_SECRET = "zd-signing-secret-6c1f"
JIRA_SECRET = "jira-hmac-secret-91ab"
SHARED_SECRET = "jsm-shared-token-77de"


def make_settings(**overrides) -> Settings:
    values = {
        "ZENDESK_WEBHOOK_SECRET": ZENDESK_SECRET,
        "JIRA_WEBHOOK_SECRET": JIRA_SECRET,
        "JIRA_SHARED_SECRET": SHARED_SECRET,
        "JIRA_SHARED_SECRET_HEADER": "X-Escalation-Token",
        "WEBHOOK_MAX_AGE_SECONDS": 300,
        "WEBHOOK_MAX_BODY_BYTES": 1024 * 1024,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def sink() -> InMemoryEventSink:
    return InMemoryEventSink()


@pytest.fixture
def client(sink):
    return create_app(make_settings(), sink=sink, clock=lambda: NOW).test_client()


def fixture_bytes(vendor: str, name: str) -> bytes:
    return (FIXTURES / vendor / f"{name}.json").read_bytes()


def zendesk_headers(body: bytes, *, signed_at: datetime = NOW, secret: str = ZENDESK_SECRET,
                    invocation: str | None = "inv-1") -> dict[str, str]:
    timestamp = signed_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {
        "Content-Type": "application/json",
        "X-Zendesk-Webhook-Signature": zendesk_signature(secret, timestamp, body),
        "X-Zendesk-Webhook-Signature-Timestamp": timestamp,
    }
    if invocation:
        headers["X-Zendesk-Webhook-Invocation-Id"] = invocation
    return headers


def jira_headers(body: bytes, *, identifier: str | None = "wh-1", secret: str = JIRA_SECRET) -> dict[str, str]:
    headers = {"Content-Type": "application/json; charset=UTF-8", "X-Hub-Signature": jira_signature(secret, body)}
    if identifier:
        headers["X-Atlassian-Webhook-Identifier"] = identifier
    return headers


# --- accepted, duplicate, ignored ---


def test_signed_zendesk_event_is_persisted_then_answered_202(client, sink):
    body = fixture_bytes("zendesk", "ticket_priority_changed")
    response = client.post("/webhooks/zendesk", data=body, headers=zendesk_headers(body))
    assert response.status_code == 202
    assert response.json == {"status": "accepted", "event_id": 1}
    [stored] = sink.events
    assert stored.payload == body  # the raw bytes as signed, not a re-serialization
    assert stored.received_at == NOW
    assert (stored.event.vendor, stored.event.ticket_id, stored.event.event_type, stored.event.delivery_id) == (
        "zendesk", "5158", "ticket.priority_changed", "inv-1"
    )
    assert sink.queued == [1]


def test_zendesk_trigger_body_is_accepted(client, sink):
    body = fixture_bytes("zendesk", "trigger_ticket_updated")
    response = client.post("/webhooks/zendesk", data=body, headers=zendesk_headers(body))
    assert (response.status_code, response.json) == (202, {"status": "accepted", "event_id": 1})
    [stored] = sink.events
    assert (stored.event.ticket_id, stored.event.event_type, stored.payload) == ("5158", "ticket.updated", body)
    assert sink.queued == [1]


def test_redelivery_with_same_invocation_id_is_acknowledged_once(client, sink):
    body = fixture_bytes("zendesk", "ticket_comment_added")
    first = client.post("/webhooks/zendesk", data=body, headers=zendesk_headers(body, invocation="inv-7"))
    again = client.post("/webhooks/zendesk", data=body,
                        headers=zendesk_headers(body, signed_at=NOW + timedelta(seconds=30), invocation="inv-7"))
    assert (first.status_code, first.json) == (202, {"status": "accepted", "event_id": 1})
    assert (again.status_code, again.json) == (200, {"status": "duplicate", "event_id": 1})
    assert len(sink.events) == 1 and sink.queued == [1]


def test_sink_reporting_duplicate_is_answered_200_duplicate():
    class AlwaysDuplicate(InMemoryEventSink):
        def accept(self, event, payload, received_at):
            return AcceptResult(event_id="evt-41", duplicate=True)

    client = create_app(make_settings(), sink=AlwaysDuplicate(), clock=lambda: NOW).test_client()
    body = fixture_bytes("jira", "comment_created")
    response = client.post("/webhooks/jira", data=body, headers=jira_headers(body))
    assert (response.status_code, response.json) == (200, {"status": "duplicate", "event_id": "evt-41"})


def test_known_unhandled_zendesk_event_is_recorded_as_ignored(client, sink):
    body = fixture_bytes("zendesk", "ticket_subject_changed")
    response = client.post("/webhooks/zendesk", data=body, headers=zendesk_headers(body))
    assert (response.status_code, response.json) == (200, {"status": "ignored", "event_id": 1})
    assert sink.events[0].event.handled is False
    assert sink.queued == []


@pytest.mark.parametrize("fixture", ["ticket_requester_changed", "ticket_form_changed", "ticket_merged",
                                     "ticket_soft_deleted", "ticket_permanently_deleted", "ticket_undeleted"])
def test_zendesk_events_that_can_change_the_escalation_queue_a_pass(client, sink, fixture):
    body = fixture_bytes("zendesk", fixture)
    response = client.post("/webhooks/zendesk", data=body, headers=zendesk_headers(body))
    assert (response.status_code, response.json) == (202, {"status": "accepted", "event_id": 1})
    [stored] = sink.events
    assert (stored.event.ticket_id, stored.event.event_type) == ("5158", "ticket." + fixture.removeprefix("ticket_"))
    assert stored.payload == body
    assert sink.queued == [1]


def test_signed_jira_issue_update_is_accepted(client, sink):
    body = fixture_bytes("jira", "issue_updated_priority")
    response = client.post("/webhooks/jira", data=body, headers=jira_headers(body, identifier="wh-9"))
    assert (response.status_code, response.json) == (202, {"status": "accepted", "event_id": 1})
    event = sink.events[0].event
    assert (event.ticket_id, event.event_type, event.delivery_id, event.actor_id) == (
        "TES-41", "jira:issue_updated", "wh-9", "5c5f880629be9642ba529340"
    )


def test_jira_redelivery_with_same_identifier_is_duplicate(client, sink):
    body = fixture_bytes("jira", "issue_created")
    client.post("/webhooks/jira", data=body, headers=jira_headers(body, identifier="wh-2"))
    response = client.post("/webhooks/jira", data=body, headers=jira_headers(body, identifier="wh-2"))
    assert (response.status_code, response.json) == (200, {"status": "duplicate", "event_id": 1})
    assert [e.event.ticket_id for e in sink.events] == ["KT-22"] and sink.queued == [1]


def test_jsm_automation_body_with_shared_secret_is_accepted(client, sink):
    body = fixture_bytes("jira", "automation_issue_updated")
    response = client.post("/webhooks/jira", data=body,
                           headers={"Content-Type": "application/json", "X-Escalation-Token": SHARED_SECRET})
    assert (response.status_code, response.json) == (202, {"status": "accepted", "event_id": 1})
    assert sink.events[0].event.ticket_id == "HELP-42"
    assert sink.events[0].payload == body and sink.queued == [1]
    assert sink.events[0].event.delivery_id is None  # automation sends no identifier: the sink de-duplicates on content


def test_known_unhandled_jira_event_is_recorded_as_ignored(client, sink):
    body = fixture_bytes("jira", "worklog_created")
    response = client.post("/webhooks/jira", data=body, headers=jira_headers(body))
    assert (response.status_code, response.json) == (200, {"status": "ignored", "event_id": 1})
    [stored] = sink.events  # recorded (the audit trail shows it arrived) but not queued for a pass
    assert (stored.event.event_type, stored.event.handled) == ("worklog_created", False)
    assert sink.queued == []


# --- rejections: exact status and message ---


def _post_zendesk(client, body: bytes, **header_changes):
    headers = zendesk_headers(body)
    for name, value in header_changes.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return client.post("/webhooks/zendesk", data=body, headers=headers)


GOOD_ZENDESK = fixture_bytes("zendesk", "ticket_created")


@pytest.mark.parametrize(
    "body, header_changes, status, message",
    [
        (GOOD_ZENDESK, {"X_Zendesk_Webhook_Signature": None}, 401, "missing X-Zendesk-Webhook-Signature header"),
        (GOOD_ZENDESK, {"X_Zendesk_Webhook_Signature_Timestamp": None}, 401,
         "missing X-Zendesk-Webhook-Signature-Timestamp header"),
        (GOOD_ZENDESK, {"X_Zendesk_Webhook_Signature": zendesk_signature("guess", "2025-01-08T12:00:00Z", GOOD_ZENDESK)},
         401, "invalid signature"),
        (GOOD_ZENDESK, {"Content_Type": "text/plain"}, 415, "Content-Type must be application/json"),
        (GOOD_ZENDESK, {"Content_Type": "application/x-www-form-urlencoded"}, 415,
         "Content-Type must be application/json"),
        (GOOD_ZENDESK, {"Content_Type": None}, 415, "Content-Type must be application/json"),
        (b"not json", {}, 400, "body is not valid JSON: Expecting value at line 1 column 1"),
        (b'["zen:event-type:ticket.created"]', {}, 400, "body must be a JSON object"),
        (b'{"type": "zen:event-type:ticket.created", "detail": {"subject": "x"}}', {}, 400, "missing detail.id"),
        (b'{"type": "zen:event-type:ticket.created", "detail": {"id": "12a"}}', {}, 400,
         "detail.id must be a numeric Zendesk ticket id, not '12a'"),
    ],
)
def test_zendesk_rejections(client, sink, body, header_changes, status, message):
    response = _post_zendesk(client, body, **header_changes)
    assert (response.status_code, response.json) == (status, {"error": message})
    assert sink.events == []


@pytest.mark.parametrize("offset", [timedelta(minutes=-6), timedelta(minutes=6), timedelta(hours=-2)])
def test_zendesk_replay_outside_window_is_401(client, sink, offset):
    body = GOOD_ZENDESK
    response = client.post("/webhooks/zendesk", data=body, headers=zendesk_headers(body, signed_at=NOW + offset))
    assert (response.status_code, response.json) == (401, {"error": "timestamp outside the allowed window"})
    assert sink.events == []


def test_a_signature_for_another_body_is_401(client, sink):
    headers = zendesk_headers(GOOD_ZENDESK)
    tampered = GOOD_ZENDESK.replace(b'"LOW"', b'"URGENT"')
    assert tampered != GOOD_ZENDESK
    response = client.post("/webhooks/zendesk", data=tampered, headers=headers)
    assert (response.status_code, response.json) == (401, {"error": "invalid signature"})
    assert sink.events == []


def test_body_over_limit_by_content_length_is_413(sink):
    client = create_app(make_settings(WEBHOOK_MAX_BODY_BYTES=200), sink=sink, clock=lambda: NOW).test_client()
    body = GOOD_ZENDESK
    assert len(body) > 200
    response = client.post("/webhooks/zendesk", data=body, headers=zendesk_headers(body))
    assert (response.status_code, response.json) == (
        413, {"error": "body exceeds the 200-byte limit (WEBHOOK_MAX_BODY_BYTES)"}
    )
    assert sink.events == []


def _post_chunked(app, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    """POST without Content-Length (chunked transfer, as gunicorn presents it): only counting the bytes
    actually read can enforce the limit."""
    environ = EnvironBuilder(path=path, method="POST", headers=headers, data=body).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input"] = io.BytesIO(body)
    environ["wsgi.input_terminated"] = True
    status: list[str] = []
    chunks = app(environ, lambda line, _headers: status.append(line))
    return int(status[0].split()[0]), json.loads(b"".join(chunks))


def test_body_over_limit_without_content_length_is_413_by_bytes_read(sink):
    app = create_app(make_settings(WEBHOOK_MAX_BODY_BYTES=200), sink=sink, clock=lambda: NOW)
    body = GOOD_ZENDESK
    assert _post_chunked(app, "/webhooks/zendesk", body, zendesk_headers(body)) == (
        413, {"error": "body exceeds the 200-byte limit (WEBHOOK_MAX_BODY_BYTES)"}
    )
    assert sink.events == []


def test_chunked_body_within_limit_is_read_whole(sink):
    app = create_app(make_settings(), sink=sink, clock=lambda: NOW)
    body = GOOD_ZENDESK
    assert _post_chunked(app, "/webhooks/zendesk", body, zendesk_headers(body)) == (
        202, {"status": "accepted", "event_id": 1}
    )
    [stored] = sink.events
    assert stored.payload == body


def test_body_exactly_at_limit_is_accepted(sink):
    body = GOOD_ZENDESK
    client = create_app(make_settings(WEBHOOK_MAX_BODY_BYTES=len(body)), sink=sink, clock=lambda: NOW).test_client()
    response = client.post("/webhooks/zendesk", data=body, headers=zendesk_headers(body))
    assert (response.status_code, response.json) == (202, {"status": "accepted", "event_id": 1})
    [stored] = sink.events
    assert stored.payload == body  # every byte kept: nothing cut off at the limit
    assert stored.event.ticket_id == "5158"


GOOD_JIRA = fixture_bytes("jira", "issue_updated_priority")


@pytest.mark.parametrize(
    "body, headers, status, message",
    [
        (GOOD_JIRA, {"Content-Type": "application/json"}, 401, "missing X-Hub-Signature or X-Escalation-Token header"),
        (GOOD_JIRA, {"Content-Type": "application/json", "X-Hub-Signature": jira_signature("guess", GOOD_JIRA)},
         401, "invalid signature"),
        (GOOD_JIRA, {"Content-Type": "application/json", "X-Escalation-Token": "guess"},
         401, "invalid X-Escalation-Token"),
        (GOOD_JIRA, {"Content-Type": "text/xml", "X-Hub-Signature": jira_signature(JIRA_SECRET, GOOD_JIRA)},
         415, "Content-Type must be application/json"),
        (b'{"webhookEvent": "jira:issue_updated", "issue": {"id": "10040"}}', None, 400, "missing issue.key"),
        (b'{"webhookEvent": "jira:issue_updated", "issue": {"key": "<script>"}}', None, 400,
         "issue.key must be a Jira issue key like ABC-123, not '<script>'"),
        (b'{"issueKey": "HELP-1", "event": "issue_updated"}', None, 400,
         "Jira automation body: missing actor, occurredAt"),
    ],
)
def test_jira_rejections(client, sink, body, headers, status, message):
    response = client.post("/webhooks/jira", data=body, headers=headers or jira_headers(body))
    assert (response.status_code, response.json) == (status, {"error": message})
    assert sink.events == []


def test_vendor_without_secret_is_refused_with_503(sink):
    settings = make_settings(ZENDESK_WEBHOOK_SECRET=None, JIRA_WEBHOOK_SECRET="", JIRA_SHARED_SECRET=None)
    client = create_app(settings, sink=sink, clock=lambda: NOW).test_client()
    body = GOOD_ZENDESK
    zendesk = client.post("/webhooks/zendesk", data=body, headers=zendesk_headers(body))
    jira = client.post("/webhooks/jira", data=GOOD_JIRA, headers=jira_headers(GOOD_JIRA))
    assert (zendesk.status_code, zendesk.json) == (503, {"error": "ZENDESK_WEBHOOK_SECRET is not configured"})
    assert (jira.status_code, jira.json) == (
        503, {"error": "JIRA_WEBHOOK_SECRET or JIRA_SHARED_SECRET is not configured"}
    )
    assert sink.events == []


def test_jira_with_only_the_shared_secret_refuses_signed_deliveries(sink):
    client = create_app(make_settings(JIRA_WEBHOOK_SECRET=None), sink=sink, clock=lambda: NOW).test_client()
    response = client.post("/webhooks/jira", data=GOOD_JIRA, headers=jira_headers(GOOD_JIRA))
    assert (response.status_code, response.json) == (
        401, {"error": "X-Hub-Signature received but JIRA_WEBHOOK_SECRET is not configured"}
    )
    assert sink.events == []


def test_store_failure_is_503_with_retry_after_so_the_vendor_retries():
    class BrokenSink(InMemoryEventSink):
        def accept(self, event, payload, received_at):
            raise OSError("disk I/O error")

    client = create_app(make_settings(), sink=BrokenSink(), clock=lambda: NOW).test_client()
    response = client.post("/webhooks/zendesk", data=GOOD_ZENDESK, headers=zendesk_headers(GOOD_ZENDESK))
    assert (response.status_code, response.json) == (503, {"error": "event store unavailable, retry later"})
    assert response.headers["Retry-After"] == "10"


def test_other_methods_and_paths_answer_json(client):
    assert (client.get("/webhooks/zendesk").status_code, client.get("/webhooks/zendesk").is_json) == (405, True)
    missing = client.post("/webhooks/freshdesk", data=b"{}", headers={"Content-Type": "application/json"})
    assert missing.status_code == 404 and "error" in missing.json


# --- health ---


def test_healthz_needs_no_sink(monkeypatch):
    _install_events_module(monkeypatch, builder=lambda settings: (_ for _ in ()).throw(RuntimeError("db down")))
    client = create_app(make_settings()).test_client()
    response = client.get("/healthz")
    assert (response.status_code, response.json) == (200, {"status": "ok"})


def test_readyz_reports_sink_health(sink):
    client = create_app(make_settings(), sink=sink).test_client()
    assert (client.get("/readyz").status_code, client.get("/readyz").json) == (
        200, {"status": "ok", "checks": {"event_store": "ok"}}
    )
    sink.healthy = {"database": "ok", "queue": "redis: connection refused"}
    response = client.get("/readyz")
    assert (response.status_code, response.json) == (
        503, {"status": "unavailable", "checks": {"database": "ok", "queue": "redis: connection refused"}}
    )


# --- the real sink is built lazily from service.sink ---


def _install_events_module(monkeypatch, builder):
    module = types.ModuleType("service.sink")
    module.build_event_sink = builder
    monkeypatch.setitem(sys.modules, "service.sink", module)
    import service

    monkeypatch.setattr(service, "sink", module, raising=False)


def test_default_sink_is_built_once_on_first_use(monkeypatch):
    built: list[Settings] = []
    sink = InMemoryEventSink()

    def build(settings):
        built.append(settings)
        return sink

    _install_events_module(monkeypatch, build)
    settings = make_settings()
    client = create_app(settings, clock=lambda: NOW).test_client()
    assert built == []
    for invocation in ("a", "b"):
        client.post("/webhooks/zendesk", data=GOOD_ZENDESK, headers=zendesk_headers(GOOD_ZENDESK, invocation=invocation))
    assert built == [settings]
    assert len(sink.events) == 1  # second is a content duplicate


def test_unbuildable_sink_is_503_on_post_and_readyz_without_leaking_the_url(monkeypatch):
    def build(settings):
        raise ConnectionError("could not connect to postgresql://escalation:hunter2@db:5432/prod")

    _install_events_module(monkeypatch, build)
    client = create_app(make_settings(), clock=lambda: NOW).test_client()
    post = client.post("/webhooks/zendesk", data=GOOD_ZENDESK, headers=zendesk_headers(GOOD_ZENDESK))
    ready = client.get("/readyz")
    assert (post.status_code, post.json) == (503, {"error": "event store unavailable, retry later"})
    assert (ready.status_code, ready.json["checks"]) == (503, {"event_sink": "unavailable"})
    assert "hunter2" not in ready.get_data(as_text=True)
    assert "postgresql" not in ready.get_data(as_text=True)  # anonymous callers get no internal messages


def test_readyz_logs_why_with_a_password_given_as_a_url_query_parameter_masked(monkeypatch, caplog):
    def build(settings):
        raise ConnectionError(
            "could not connect to postgresql://db:5432/prod?sslmode=require&password=hunter2, giving up"
        )

    _install_events_module(monkeypatch, build)
    with caplog.at_level(logging.WARNING, logger="webhooks.app"):
        ready = create_app(make_settings(), clock=lambda: NOW).test_client().get("/readyz")
    assert ready.json["checks"] == {"event_sink": "unavailable"}
    message = caplog.text
    assert "hunter2" not in message
    assert message.rstrip().endswith(", giving up")  # the URL is masked, the rest of the message kept
    assert "postgresql://db:5432/prod?" in message and "password=***" in message and "sslmode=require" in message


# --- logging ---


def test_one_log_line_per_delivery_without_body_or_secrets(client, caplog):
    caplog.set_level(logging.INFO, logger="webhooks")
    body = fixture_bytes("zendesk", "ticket_comment_added")
    client.post("/webhooks/zendesk", data=body, headers=zendesk_headers(body, invocation="inv-log"))
    client.post("/webhooks/zendesk", data=body, headers=zendesk_headers(body, secret="wrong"))
    jira_body = fixture_bytes("jira", "automation_issue_updated")
    client.post("/webhooks/jira", data=jira_body,
                headers={"Content-Type": "application/json", "X-Escalation-Token": SHARED_SECRET})
    lines = [record.getMessage() for record in caplog.records if record.name.startswith("webhooks")]
    assert len(lines) == 3
    assert "vendor=zendesk event=ticket.comment_added ticket=5158 delivery=inv-log" in lines[0]
    assert "result=accepted status=202" in lines[0]
    assert "result=rejected status=401 reason=invalid signature" in lines[1]
    assert "vendor=jira event=jira:issue_updated ticket=HELP-42" in lines[2]
    text = "\n".join(lines)
    for secret in (ZENDESK_SECRET, JIRA_SECRET, SHARED_SECRET):
        assert secret not in text
    assert "investigating" not in text  # comment body text


# --- configuration ---


def test_invalid_environment_fails_fast_naming_the_setting(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("WEBHOOK_MAX_AGE_SECONDS", "-5")
    monkeypatch.setenv("ZENDESK_WEBHOOK_SECRET", "top-secret-value")
    with pytest.raises(ConfigurationError) as info:
        create_app()
    message = str(info.value)
    assert "WEBHOOK_MAX_AGE_SECONDS" in message and "greater than 0" in message
    assert "-5" not in message and "top-secret-value" not in message


def _run_wsgi_import(env_changes: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    import os

    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("ZENDESK_", "JIRA_", "WEBHOOK_"))}
    env.update(env_changes)
    env["PYTHONPATH"] = str(REPO_ROOT)
    code = "import webhooks.wsgi as w; print(sorted(r.rule for r in w.app.url_map.iter_rules()))"
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)


def test_wsgi_entry_fails_fast_on_bad_config(tmp_path):
    result = _run_wsgi_import({"WEBHOOK_MAX_BODY_BYTES": "lots"}, tmp_path)
    assert result.returncode != 0
    assert "ConfigurationError: invalid configuration" in result.stderr
    assert "WEBHOOK_MAX_BODY_BYTES" in result.stderr


def test_wsgi_entry_builds_the_app(tmp_path):
    result = _run_wsgi_import({"ZENDESK_WEBHOOK_SECRET": "s3cr3t-value"}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.replace("'", '"')) == [
        "/healthz", "/metrics", "/readyz", "/webhooks/jira", "/webhooks/zendesk"
    ]
    assert "jira webhooks are refused with 503" in result.stderr
    assert "s3cr3t-value" not in result.stderr + result.stdout


def test_building_the_sink_quiets_alembic_info_lines(monkeypatch):
    import service.sink

    built = InMemoryEventSink()
    monkeypatch.setattr(service.sink, "build_event_sink", lambda settings: built)
    alembic_logger, root = logging.getLogger("alembic"), logging.getLogger()
    before, root_before = alembic_logger.level, root.level
    alembic_logger.setLevel(logging.NOTSET)
    root.setLevel(logging.INFO)  # as webhooks.wsgi configures it
    try:
        app = create_app(make_settings(), clock=lambda: NOW)
        assert app.extensions["webhook_edge"].get_sink() is built
        assert not logging.getLogger("alembic.runtime.migration").isEnabledFor(logging.INFO)
        assert alembic_logger.isEnabledFor(logging.WARNING)
    finally:
        alembic_logger.setLevel(before)
        root.setLevel(root_before)
