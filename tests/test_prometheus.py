"""GET /metrics (issue 13): the Prometheus text a scraper reads, the counters an operator watches move with
what happened (a webhook accepted, a ticket escalated, a vendor call rate-limited and retried), the
gauges come from the database, the bearer token is enforced when set, and the series of several
processes (web processes of webhooks.server, a worker) are summed in multiprocess mode.

Counters are process-wide, so each test compares a scrape after the action with one before it."""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import responses
from prometheus_client.parser import text_string_to_metric_families

from integration.pipeline import process_ticket
from service.settings import Settings
from tests.conftest import REPO_ROOT
from tests.support.openapi_check import validate_zendesk_calls
from tests.support.zendesk_fake import FakeZendesk
from tests.support.zendesk_pipeline import signed_headers, zendesk_runtime
from webhooks.app import create_app

FIXTURES = Path(__file__).parent / "fixtures" / "zendesk"
SECRET = "zd-prometheus-secret"
METRICS_TOKEN = "scrape-t0ken-7d41c9"
SIGNED_AT = datetime(2026, 11, 27, 9, 31, tzinfo=timezone.utc)


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of an exposition, parsed by Prometheus's own text parser: (name, labels) -> value."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(parsed: dict, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when there are none)."""
    wanted = set(labels.items())
    return sum(v for (n, l), v in parsed.items() if n == name and wanted <= l)


def scrape(client, **headers: str) -> dict:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return samples(response.get_data(as_text=True))


def signed(body: bytes, invocation: str) -> dict[str, str]:
    return signed_headers(SECRET, SIGNED_AT, body, invocation)


def settings_for(tmp_path: Path, matrix_path: Path, **extra: str) -> Settings:
    return Settings(_env_file=None, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}",
                    QUEUE_URL=f"sqlite:///{tmp_path / 'q.db'}", MATRIX_PATH=str(matrix_path), DRY_RUN=False,
                    ZENDESK_WEBHOOK_SECRET=SECRET, **extra)


def test_a_webhook_an_escalation_and_a_rate_limited_call_move_their_series(tmp_path, enterprise_matrix_path):
    """Ticket 5158 becomes an enterprise production outage through a signed webhook; the pass (the real
    Zendesk connector against the fake account) moves it to L3, and Zendesk answers the ticket PUT with
    429 once: the retry layer waits Retry-After and repeats it."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeZendesk(rsps)
        runtime, client = zendesk_runtime(tmp_path, enterprise_matrix_path, fake, secret=SECRET, now=SIGNED_AT)
        before = scrape(client)
        ticket = fake.tickets["5158"]
        next(cf for cf in ticket["custom_fields"] if cf["id"] == 360000100005)["value"] = "deploy at 08:00"
        fake.fail_next("PUT", r"/api/v2/tickets/5158$", 429, headers={"Retry-After": "1"})
        body = (FIXTURES / "ticket_created.json").read_bytes()
        try:
            assert client.post("/webhooks/zendesk", data=body, headers=signed(body, "inv-1")).status_code == 202
            assert client.post("/webhooks/zendesk", data=body, headers=signed(body, "inv-1")).status_code == 200
            assert client.post("/webhooks/zendesk", data=body, headers={"Content-Type": "application/json"}
                               ).status_code == 401
            result = process_ticket("zendesk", "5158", deps=runtime.deps())
            after = scrape(client)
        finally:
            runtime.db.dispose()
        validate_zendesk_calls(rsps.calls)
    assert result.status == "done", result
    assert fake.tickets["5158"]["group_id"] == 360000200005  # Senior engineering: the L3 owner

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("escalation_webhooks_total", vendor="zendesk") == 3
    assert moved("escalation_webhooks_total", vendor="zendesk", result="accepted") == 1
    assert moved("escalation_webhooks_total", vendor="zendesk", result="duplicate") == 1
    assert moved("escalation_webhooks_total", vendor="zendesk", result="rejected", reason="unauthorized") == 1
    assert moved("escalation_decisions_total", vendor="zendesk", level="L3", dry_run="false") == 1
    assert moved("escalation_pass_duration_seconds_count", trigger="events", outcome="done") == 1
    put = "PUT /api/v2/tickets/{id}"
    assert moved("escalation_vendor_api_rate_limited_total", vendor="zendesk", endpoint=put) == 1
    assert moved("escalation_vendor_api_calls_total", vendor="zendesk", endpoint=put, status="429") == 1
    assert moved("escalation_vendor_api_calls_total", vendor="zendesk", endpoint=put, status="2xx") >= 1
    assert moved("escalation_vendor_api_retries_total", vendor="zendesk", endpoint=put) == 1
    assert moved("escalation_vendor_api_calls_total", vendor="zendesk",
                 endpoint="GET /api/v2/tickets/{id}", status="2xx") >= 1
    # Endpoints are route templates: no ticket id ever becomes a label value.
    assert not [labels for (_, labels) in after if any("5158" in v for _, v in labels)]
    # Gauges read from the database at scrape time.
    assert value(after, "escalation_open_tickets", level="L3") == 1
    assert value(after, "escalation_timers_pending") >= 1  # the L3 clocks' warnings and breaches
    assert value(after, "escalation_state_up", source="database") == 1
    assert value(after, "escalation_state_up", source="queue") == 1


@pytest.mark.parametrize("method, path, endpoint", [
    ("PUT", "https://acme.zendesk.com/api/v2/tickets/5158?safe_update=true", "PUT /api/v2/tickets/{id}"),
    ("GET", "/api/v2/tickets/5158/comments.json", "GET /api/v2/tickets/{id}/comments.json"),
    ("GET", "/api/v2/tickets/5158.json", "GET /api/v2/tickets/{id}.json"),
    ("GET", "/api/v2/users/me", "GET /api/v2/users/me"),
    ("PUT", "https://acme.atlassian.net/rest/api/3/issue/SUP-1042", "PUT /rest/api/3/issue/{id}"),
    ("POST", "/rest/servicedeskapi/request/SUP-7/comment", "POST /rest/servicedeskapi/request/{id}/comment"),
    ("GET", "/rest/api/2/field/customfield_10010/context", "GET /rest/api/2/field/{id}/context"),
])
def test_vendor_endpoints_are_labelled_by_route_template(method, path, endpoint):
    """The `endpoint` label of the vendor series: ids, issue keys and custom field ids never become label
    values, API versions stay."""
    from connectors.telemetry import endpoint_template

    assert endpoint_template(method, path) == endpoint


def test_the_bearer_token_is_required_when_set(tmp_path, enterprise_matrix_path):
    client = create_app(settings_for(tmp_path, enterprise_matrix_path, METRICS_TOKEN=METRICS_TOKEN)).test_client()
    refused = client.get("/metrics")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert METRICS_TOKEN not in refused.get_data(as_text=True)
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Basic {METRICS_TOKEN}"}).status_code == 401
    parsed = scrape(client, Authorization=f"Bearer {METRICS_TOKEN}")
    assert ("escalation_state_up", frozenset({("source", "database")})) in parsed


def test_without_a_token_metrics_are_open(tmp_path, enterprise_matrix_path):
    client = create_app(settings_for(tmp_path, enterprise_matrix_path)).test_client()
    assert value(scrape(client), "escalation_state_up", source="database") == 1


def test_a_scrape_while_the_database_is_down_still_answers_and_says_so(tmp_path, enterprise_matrix_path):
    settings = settings_for(tmp_path, enterprise_matrix_path).model_copy(
        update={"database_url": "postgresql+psycopg://escalation@127.0.0.1:1/nothing-listens-here"})
    parsed = scrape(create_app(settings).test_client())
    assert value(parsed, "escalation_state_up", source="database") == 0
    assert not [name for name, _ in parsed if name == "escalation_open_tickets"]


# ------------------------------------------------------------------------------ multiprocess
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(port: int, path: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


INCREMENT = ("import sys; from integration import telemetry\n"
             "for _ in range(int(sys.argv[1])): telemetry.webhook_accepted('jira', 'accepted')")


@pytest.mark.slow
def test_two_web_processes_and_other_processes_are_summed_in_one_scrape(tmp_path, enterprise_matrix_path):
    """`python -m webhooks.server --processes 2` with PROMETHEUS_MULTIPROC_DIR: each web process and two
    other processes (as a worker would) count in their own files; any scrape shows the sum."""
    metrics_dir = tmp_path / "metrics"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ZENDESK_", "JIRA_", "METRICS_"))}
    env.update(PYTHONPATH=str(REPO_ROOT), PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), MATRIX_PATH=str(enterprise_matrix_path),
               DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}", QUEUE_URL=f"sqlite:///{tmp_path / 'q.db'}",
               LOG_LEVEL="WARNING")
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "webhooks.server", "--host", "127.0.0.1", "--port", str(port),
                               "--processes", "2", "--threads", "2"], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _get(port, "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, server.stderr.read().decode()[-2000:]
            time.sleep(0.1)
        for count in (2, 3):
            subprocess.run([sys.executable, "-c", INCREMENT, str(count)], cwd=REPO_ROOT, env=env, check=True)
        # Jira without a secret answers 503 (not configured); each delivery still counts as received.
        deliveries = 4
        for _ in range(deliveries):
            status, _ = _get(port, "/webhooks/jira", "POST", b"{}", {"Content-Type": "application/json"})
            assert status == 503
        totals = set()
        for _ in range(6):  # whichever web process answers, the sum is the same
            status, text = _get(port, "/metrics")
            assert status == 200
            parsed = samples(text)
            totals.add((value(parsed, "escalation_webhooks_total", vendor="jira"),
                        value(parsed, "escalation_webhooks_total", vendor="jira", reason="not_configured")))
        assert totals == {(2 + 3 + deliveries, deliveries)}
        assert len({path.name for path in metrics_dir.glob("counter_*.db")}) >= 3  # web process(es) + 2 others
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_the_grafana_dashboard_uses_only_series_the_service_exposes(tmp_path, enterprise_matrix_path):
    """docs/grafana/escalation-dashboard.json: every series a panel queries is one /metrics declares."""
    import re

    from connectors import telemetry as vendor_telemetry
    from integration import telemetry

    telemetry.series(), vendor_telemetry.series()  # built on first use: declare them all before the scrape
    response = create_app(settings_for(tmp_path, enterprise_matrix_path)).test_client().get("/metrics")
    exposed = {family.name for family in text_string_to_metric_families(response.get_data(as_text=True))}
    dashboard = json.loads((REPO_ROOT / "docs" / "grafana" / "escalation-dashboard.json").read_text())
    queried = {re.sub(r"_(total|bucket|count|sum)$", "", name)
               for panel in dashboard["panels"] for target in panel.get("targets", [])
               for name in re.findall(r"\bescalation_[a-z_]+", target["expr"])}
    assert len(queried) >= 15
    assert queried <= exposed, sorted(queried - exposed)


@pytest.mark.slow
def test_escalation_serve_shows_the_workers_passes_in_the_web_scrape(tmp_path, enterprise_matrix_path):
    """`escalation serve` (web processes + worker, the fake helpdesk in place of the vendor) with
    PROMETHEUS_MULTIPROC_DIR unset: both children write to var/metrics, so the decision the worker made is in
    the web process's /metrics next to the webhook the web process accepted."""
    from tests.support.fake_connector import FakeConnector, FileStore
    from tests.test_e2e_processes import BIN, TICKETS, _event, _ready, _signed_post, _wait, worker_entry
    from tests.test_e2e_processes import SECRET as E2E_SECRET

    fake = FakeConnector("zendesk", store=FileStore(tmp_path / "vendor"))
    fake.put(TICKETS[0])
    env = {key: value for key, value in os.environ.items() if key not in ("PROMETHEUS_MULTIPROC_DIR", "METRICS_TOKEN")}
    env.update(PYTHONPATH=str(REPO_ROOT), DATABASE_URL=f"sqlite:///{tmp_path}/var/escalation.db",
               QUEUE_URL=f"sqlite:///{tmp_path}/var/queue.db", MATRIX_PATH=str(enterprise_matrix_path),
               ZENDESK_WEBHOOK_SECRET=E2E_SECRET, DRY_RUN="false", WORKER_CONCURRENCY="2",
               SHUTDOWN_TIMEOUT_SECONDS="2", LOG_LEVEL="WARNING")
    subprocess.run([str(BIN / "escalation"), "migrate"], env=env, cwd=tmp_path, check=True, capture_output=True)
    port = _free_port()
    with open(tmp_path / "serve.log", "ab") as log:
        serve = subprocess.Popen(worker_entry(fake, command="serve") + ["--port", str(port)], env=env, cwd=tmp_path,
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait(lambda: _ready(port), 30, "serve's web process", interval=0.2)
        assert _signed_post(port, _event(TICKETS[0], "ticket.created", 1), "metrics-1") == 202

        def decided() -> dict | None:
            # The decision is counted at the pass's commit, its duration when the pass returns just after.
            parsed = samples(_get(port, "/metrics")[1])
            done = (value(parsed, "escalation_decisions_total", vendor="zendesk") >= 1
                    and value(parsed, "escalation_pass_duration_seconds_count", trigger="events") >= 1)
            return parsed if done else None

        parsed = _wait(decided, 30, "the worker's decision in the web's /metrics", interval=0.2)
        assert value(parsed, "escalation_webhooks_total", vendor="zendesk", result="accepted") == 1
        assert value(parsed, "escalation_pass_duration_seconds_count", trigger="events") >= 1
        assert list((tmp_path / "var" / "metrics").glob("counter_*.db"))
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=20)
        except subprocess.TimeoutExpired:
            serve.kill()


def test_warnings_breaches_timer_lateness_and_dead_letters_move_their_series(tmp_path, enterprise_matrix_path):
    """The fake helpdesk (tests/support/fake_connector.py): ticket 501 enters L1; its acknowledge clock's
    50 % warning fires on time, then the worker is down past the breach and the reconciler fires it two
    minutes late (the ticket moves to L2); ticket 502's pass fails for good and its event is dead-lettered."""
    from datetime import timedelta

    from connectors.base import Permanent
    from integration.pipeline import fire_timer
    from integration.store.db import TimerRow
    from integration.store.events import add_hint
    from tests.support.fake_connector import FakeConnector, make_runtime, make_settings

    monday_9 = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)  # 09:00 in Berlin: business hours
    now = [monday_9]
    fake = FakeConnector(vendor="zendesk")
    settings = make_settings(f"sqlite:///{tmp_path / 'db.sqlite'}", MATRIX_PATH=str(enterprise_matrix_path))
    runtime = make_runtime(settings, fake, clock=lambda: now[0])
    client = create_app(settings).test_client()
    try:
        fake.put("501", fields={"issue_type": "bug", "account_id": "A-1", "environment": "production",
                                "recent_changes": "none"})
        add_hint(runtime.db, "zendesk", "501", "test", key="1")
        before = scrape(client)
        process_ticket("zendesk", "501", deps=runtime.deps())
        with runtime.db.session() as session:
            half = session.query(TimerRow).filter_by(clock="acknowledge", level="L1", kind="warning",
                                                     fraction=0.5).one()
        now[0] = half.due_at
        assert fire_timer(half.id, deps=runtime.deps()) == "fired"
        now[0] = monday_9 + timedelta(hours=1, minutes=2)  # the L1 acknowledge target is 1h
        runtime.reconcile(inline=True)

        fake.put("502")
        fake.fetch_failures.append(Permanent("the API user may not read ticket 502"))
        add_hint(runtime.db, "zendesk", "502", "test", key="2")
        assert process_ticket("zendesk", "502", deps=runtime.deps()).status == "dead"
        after = scrape(client)
    finally:
        runtime.db.dispose()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("escalation_clock_alerts_total", kind="warning", clock="acknowledge", level="L1") >= 1
    assert moved("escalation_clock_alerts_total", kind="breach", clock="acknowledge", level="L1") == 1
    assert moved("escalation_timer_lateness_seconds_count", kind="breach") == 1
    assert moved("escalation_timer_lateness_seconds_sum", kind="breach") == 120  # due 10:00, fired 10:02
    assert moved("escalation_timer_lateness_seconds_bucket", kind="breach", le="60.0") == 0
    assert moved("escalation_timer_lateness_seconds_bucket", kind="breach", le="300.0") == 1
    assert moved("escalation_decisions_total", vendor="zendesk", level="L2", reason="breach:acknowledge") == 1, \
        [(sorted(l), v) for (n, l), v in after.items() if n == "escalation_decisions_total"]
    assert moved("escalation_dead_letters_total", vendor="zendesk") == 1
    assert value(after, "escalation_dead_letter_events", vendor="zendesk") == 1
    assert value(after, "escalation_open_tickets", level="L2") == 1
    assert value(after, "escalation_timers_pending", kind="breach") >= 1  # L2's clocks
