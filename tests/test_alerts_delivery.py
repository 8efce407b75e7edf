"""Alerts outside the ticket, end to end: the pipeline (fake helpdesk, injected clock; SQLite and PostgreSQL)
queues outbox rows with the decision, the worker's sender delivers them to local receivers - Slack, Teams
and signed-webhook endpoints on an HTTP server thread, e-mail to a real SMTP server (aiosmtpd) - and each
receiver gets each event exactly once, whatever fails or runs twice in between."""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from cli.main import cli
from connectors.alert_channels import send_with_retry
from connectors.retry import RetryPolicy
from integration import alerts
from integration.alerts import AlertRow, deliver_due
from integration.store.db import Base, TicketStateRow, TimerRow
from integration.store.codec import from_json
from integration.store.events import add_hint
from integration.model import TicketState
from integration.pipeline import fire_timer, process_ticket
from tests.support.alert_receivers import HANG, HttpReceiver, SmtpReceiver, free_port
from tests.support.fake_connector import FakeConnector, ManualClock, make_runtime, make_settings

REPO = Path(__file__).resolve().parent.parent
BERLIN = ZoneInfo("Europe/Berlin")
MONDAY_9 = datetime(2026, 11, 23, 9, 0, tzinfo=BERLIN).astimezone(timezone.utc)
# L4 by hand on a new ticket, every required datum given; roles (incident commander, contact) unfilled.
L4_TICKET = {"issue_type": "outage", "customer_tier": "enterprise", "environment": "production", "account_id": "A-1",
             "recent_changes": "none", "affected_users": 500, "level": "L4"}
SLACK_TOKEN = "xoxSLACKsecret0042"  # the secret part of a Slack incoming-webhook URL
TEAMS_TOKEN = "teamsSIGsecret0042"
HOOK_SECRET = "hmacSECRET-0042"
SMTP_PASSWORD = "smtpPASSWORD-0042"
SECRETS = (SLACK_TOKEN, TEAMS_TOKEN, HOOK_SECRET, SMTP_PASSWORD)
NO_SLEEP = RetryPolicy(attempts=3, max_total_seconds=60, sleep=lambda _s: None)


def notify_section(smtp_port: int, timeout: float = 5.0) -> str:
    return f"""notify:
  channels:
    incident_slack:
      slack: {{webhook_url_env: SLACK_INCIDENT_WEBHOOK_URL}}
      timeout_seconds: {timeout}
    leadership_teams:
      teams: {{webhook_url_env: TEAMS_LEADERSHIP_WEBHOOK_URL}}
      timeout_seconds: {timeout}
    oncall_page:
      webhook: {{webhook_url_env: ONCALL_WEBHOOK_URL, secret_env: ONCALL_WEBHOOK_SECRET}}
      timeout_seconds: {timeout}
    support_leads_mail:
      email:
        host: 127.0.0.1
        port: {smtp_port}
        security: none
        username: escalation-bot@acme.example
        password_env: SMTP_PASSWORD
        sender: escalation-bot@acme.example
        to: [support-leads@acme.example, duty-manager@acme.example]
      timeout_seconds: {timeout}
  routes:
    - when: {{event: [warning, breach], level: [L3, L4]}}
      to: [incident_slack, support_leads_mail]
      template: incident_alert
    - when: {{event: [enter_level, role_missing], level: [L3, L4]}}
      to: [incident_slack]
      template: incident_alert
    - when: {{event: breach, level: L4, clock: acknowledge}}
      to: [oncall_page]
    - when: {{event: [enter_level, cadence], level: L4}}
      to: [leadership_teams]

"""


def test_matrix(tmp_path: Path, smtp_port: int, timeout: float = 5.0) -> Path:
    """The enterprise example with its notify: section pointed at the local receivers."""
    text = (REPO / "matrix_config" / "examples" / "enterprise.yaml").read_text()
    start = text.index("\nnotify:\n") + 1
    end = text.index("# Reply and note templates")
    path = tmp_path / "matrix.yaml"
    path.write_text(text[:start] + notify_section(smtp_port, timeout) + text[end:])
    return path


test_matrix.__test__ = False  # a helper, not a test


class LinkedFake(FakeConnector):
    """The fake helpdesk, with the agent URL the Zendesk connector puts on every ticket."""

    def fetch_ticket(self, ticket_id: str):
        ticket = super().fetch_ticket(ticket_id)
        return ticket.with_(url=f"https://acme.zendesk.com/agent/tickets/{ticket.id}")


class Rig:
    def __init__(self, database_url: str, tmp_path: Path, monkeypatch, *, timeout: float = 5.0):
        self.slack, self.teams, self.hook = HttpReceiver(), HttpReceiver(), HttpReceiver()
        self.smtp = SmtpReceiver("escalation-bot@acme.example", SMTP_PASSWORD).start()
        monkeypatch.setenv("SLACK_INCIDENT_WEBHOOK_URL", self.slack.url(f"/services/T0/B0/{SLACK_TOKEN}"))
        monkeypatch.setenv("TEAMS_LEADERSHIP_WEBHOOK_URL", self.teams.url(f"/workflows/run?sig={TEAMS_TOKEN}"))
        monkeypatch.setenv("ONCALL_WEBHOOK_URL", self.hook.url("/escalation-alerts"))
        monkeypatch.setenv("ONCALL_WEBHOOK_SECRET", HOOK_SECRET)
        monkeypatch.setenv("SMTP_PASSWORD", SMTP_PASSWORD)
        self.database_url = database_url
        self.matrix_path = test_matrix(tmp_path, self.smtp.port, timeout)
        self.clock = ManualClock(MONDAY_9)
        self.fake = LinkedFake(vendor="zendesk")
        settings = make_settings(database_url, MATRIX_PATH=str(self.matrix_path))
        self.runtime = make_runtime(settings, self.fake, clock=self.clock)

    def deps(self):
        return self.runtime.deps()

    def send(self, policy: RetryPolicy = NO_SLEEP, **kwargs):
        """A delivery pass with the channels' own sender through the retry layer (its sleeps recorded)."""
        kwargs.setdefault("send", partial(send_with_retry, policy=policy))
        return deliver_due(self.runtime.db, now=self.clock, current=self.runtime.matrix, **kwargs)

    def new_ticket(self, ticket_id: str, **fields) -> None:
        self.fake.put(ticket_id, subject="Checkout down for all EU users", fields={**L4_TICKET, **fields},
                      created_at=MONDAY_9.isoformat(), updated_at=MONDAY_9.isoformat())
        add_hint(self.runtime.db, "zendesk", ticket_id, "test", key=f"{ticket_id}-created")

    def rows(self, **where) -> list[AlertRow]:
        with self.runtime.db.session() as session:
            rows = list(session.scalars(select(AlertRow).order_by(AlertRow.id)))
            for row in rows:
                session.expunge(row)
        return [r for r in rows if all(getattr(r, k) == v for k, v in where.items())]

    def timer(self, ticket_id: str, kind: str, clock: str, level: str, fraction: float | None = None) -> TimerRow:
        with self.runtime.db.session() as session:
            rows = session.scalars(select(TimerRow).where(
                TimerRow.ticket_id == ticket_id, TimerRow.kind == kind, TimerRow.clock == clock,
                TimerRow.level == level, TimerRow.status == "pending")).all()
        return next(r for r in rows if fraction is None or r.fraction == fraction)

    def state(self, ticket_id: str) -> TicketState:
        with self.runtime.db.session() as session:
            return from_json(TicketState, session.get(TicketStateRow, ("zendesk", ticket_id)).state)

    def close(self) -> None:
        for receiver in (self.slack, self.teams, self.hook, self.smtp):
            receiver.close()
        self.runtime.db.dispose()


@pytest.fixture
def rig(database_url, tmp_path, monkeypatch):
    rig = Rig(database_url, tmp_path, monkeypatch)
    yield rig
    rig.close()


def slack_texts(receiver: HttpReceiver) -> list[str]:
    return [r.json()["text"] for r in receiver.accepted()]


# ------------------------------------------------------------------ every channel, exactly once per event
def test_each_channel_receives_the_right_message_once_per_event(rig):
    rig.new_ticket("701")
    assert process_ticket("zendesk", "701", deps=rig.deps()).status == "done"
    assert rig.state("701").level == "L4"
    # Queued with the decision, not sent by the pass.
    assert {(r.event, r.channel, r.status) for r in rig.rows()} == {
        ("enter_level", "incident_slack", "pending"), ("role_missing", "incident_slack", "pending"),
        ("enter_level", "leadership_teams", "pending")}
    assert rig.slack.requests == [] and rig.teams.requests == []

    assert str(rig.send()) == "3 sent, 0 to retry, 0 dead"
    entered, roles = slack_texts(rig.slack)
    link = "https://acme.zendesk.com/agent/tickets/701"
    assert entered.splitlines()[0] == "[L4] Ticket 701: entered L4"
    assert entered.splitlines()[1:] == ["Ticket 701 at L4 (Leadership), owner group Support leadership.", link]
    assert "Unfilled roles: Incident commander, Customer contact" in roles
    slack_body = rig.slack.accepted()[0].json()
    assert slack_body["blocks"][0]["text"]["text"] == "[L4] Ticket 701: entered L4"
    [card_request] = rig.teams.accepted()
    card = card_request.json()["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["content"]["body"][0]["text"] == "[L4] Ticket 701: entered L4"
    assert {"title": "Owner group", "value": "Support leadership"} in card["content"]["body"][2]["facts"]
    assert card["content"]["actions"][0]["url"] == link
    # The built-in summary (no template on this route): subject, level, owner, SLA targets, link.
    assert card["content"]["body"][1]["text"] == (
        'Ticket 701 "Checkout down for all EU users" is at L4 (Leadership), owner group Support leadership.\n'
        "SLA targets: acknowledge 15m, diagnose 1h, interim_fix 4h, resolve 1d.\n"
        f"Open the ticket: {link}")

    # Half of the 15-minute acknowledgement: a warning to Slack and to the leads' mailbox.
    rig.clock.value = MONDAY_9 + timedelta(minutes=7, seconds=30)
    assert fire_timer(rig.timer("701", "warning", "acknowledge", "L4", 0.5).id, deps=rig.deps()) == "fired"
    assert str(rig.send()) == "2 sent, 0 to retry, 0 dead"
    warning = slack_texts(rig.slack)[-1]
    assert warning.splitlines()[:2] == ["[L4] Ticket 701: SLA warning at L4",
                                        "Ticket 701 at L4 (Leadership), owner group Support leadership."]
    assert "acknowledge clock: 7m left of 15m" in warning
    [mail] = rig.smtp.messages
    assert mail["Subject"] == "[L4] Ticket 701: SLA warning at L4"
    assert rig.smtp.envelopes == [("escalation-bot@acme.example",
                                   ["support-leads@acme.example", "duty-manager@acme.example"])]
    assert rig.smtp.logins == ["escalation-bot@acme.example"]
    body = mail.get_content()
    assert "acknowledge clock: 7m left of 15m" in body and link in body and "Owner group: Support leadership" in body

    # The breach: Slack, mail, and the on-call page through the signed webhook.
    rig.clock.value = MONDAY_9 + timedelta(minutes=20)
    assert fire_timer(rig.timer("701", "breach", "acknowledge", "L4").id, deps=rig.deps()) == "fired"
    assert str(rig.send()) == "3 sent, 0 to retry, 0 dead"
    assert "acknowledge clock: overdue by 5m of 15m" in slack_texts(rig.slack)[-1]
    assert rig.smtp.messages[-1]["Subject"] == "[L4] Ticket 701: SLA breach at L4"
    [page] = rig.hook.accepted()
    timestamp = page.headers["X-Escalation-Timestamp"]
    expected = hmac.new(HOOK_SECRET.encode(), timestamp.encode() + b"." + page.body, hashlib.sha256).hexdigest()
    assert page.headers["X-Escalation-Signature"] == f"sha256={expected}"
    document = page.json()
    assert page.headers["X-Escalation-Alert-Id"] == document["id"]
    assert (document["event"], document["clock"], document["overdue_by"], document["owner"]) == (
        "breach", "acknowledge", "5m", "Support leadership")
    assert document["ticket"] == {"vendor": "zendesk", "id": "701", "url": link,
                                  "subject": "Checkout down for all EU users"}
    assert document["level"] == {"id": "L4", "name": "Leadership"}

    # Nothing more goes out: each event reached each of its channels once.
    assert str(rig.send()) == "0 sent, 0 to retry, 0 dead"
    assert (len(rig.slack.requests), len(rig.teams.requests), len(rig.hook.requests), len(rig.smtp.messages)) == (
        4, 1, 1, 2)


def test_alerts_never_carry_the_customers_message_bodies(rig):
    rig.new_ticket("702", description="My password is hunter2, please call me at +49 170 000000")
    process_ticket("zendesk", "702", deps=rig.deps())
    rig.send()
    everything = b"".join(r.body for r in rig.slack.requests + rig.teams.requests).decode()
    assert rig.slack.accepted() and "hunter2" not in everything


# ------------------------------------------------------------------ failures and the retry layer
def test_a_receiver_answering_500_then_200_gets_the_message_once(rig):
    rig.slack.script = [500]
    rig.new_ticket("703")
    process_ticket("zendesk", "703", deps=rig.deps())
    report = rig.send()
    assert report.sent == 3 and report.dead == 0
    entered = [r for r in rig.slack.requests if r.json()["blocks"][0]["text"]["text"] == "[L4] Ticket 703: entered L4"]
    assert [r.status for r in entered] == [500, 200]  # retried by the retry layer within the one send
    assert [r.status for r in rig.slack.requests].count(200) == 2  # enter_level + role_missing, once each
    assert all(r.status == "sent" and r.attempts == 1 for r in rig.rows())
    assert rig.send().sent == 0


def test_a_rate_limited_receiver_is_retried_after_its_retry_after(rig):
    rig.teams.script = [429]
    rig.new_ticket("704")
    process_ticket("zendesk", "704", deps=rig.deps())
    slept: list[float] = []
    rig.send(policy=replace(NO_SLEEP, sleep=slept.append))
    assert [r.status for r in rig.teams.requests] == [429, 200]
    assert 1.0 in slept  # Retry-After: 1 honoured by the one retry layer


def test_a_receiver_down_past_the_retry_budget_leaves_a_dead_letter_with_its_reason(rig, monkeypatch):
    down = free_port()  # nothing listens there
    monkeypatch.setenv("TEAMS_LEADERSHIP_WEBHOOK_URL", f"http://127.0.0.1:{down}/workflows/run?sig={TEAMS_TOKEN}")
    rig.new_ticket("705")
    process_ticket("zendesk", "705", deps=rig.deps())
    first = rig.send(max_attempts=2)
    assert (first.sent, first.retry, first.dead) == (2, 1, 0)
    [teams] = rig.rows(channel="leadership_teams")
    assert teams.status == "pending" and teams.last_error == "channel 'leadership_teams': connection failed (ConnectionRefusedError)"
    assert rig.send(max_attempts=2).dead == 0  # not due yet: the outbox backs off
    rig.clock.advance(3600)
    assert rig.send(max_attempts=2).dead == 1
    [teams] = rig.rows(channel="leadership_teams")
    reason = "gave up after 2 attempts: channel 'leadership_teams': connection failed (ConnectionRefusedError)"
    assert (teams.status, teams.last_error) == ("dead", reason)

    env = {"DATABASE_URL": rig.database_url, "MATRIX_PATH": str(rig.matrix_path)}
    listed = CliRunner().invoke(cli, ["alerts", "list", "--status", "dead"], env=env)
    assert listed.exit_code == 0, listed.output
    [line] = listed.output.splitlines()
    assert "dead" in line and "zendesk:705 enter_level L4 -> leadership_teams attempts=2" in line
    assert line.endswith(f"error: {reason}")
    data = json.loads(CliRunner().invoke(cli, ["alerts", "list", "--status", "dead", "--format", "json"], env=env).output)
    assert [(d["channel"], d["error"]) for d in data] == [("leadership_teams", reason)]

    # Fixed (the receiver is back): `alerts retry` gives it a fresh budget and it goes out once.
    monkeypatch.setenv("TEAMS_LEADERSHIP_WEBHOOK_URL", rig.teams.url(f"/workflows/run?sig={TEAMS_TOKEN}"))
    retried = CliRunner().invoke(cli, ["alerts", "retry", str(teams.id)], env=env)
    assert retried.exit_code == 0 and retried.output.startswith("1 alert(s) back in the outbox")
    rig.clock.value = datetime.now(timezone.utc) + timedelta(seconds=1)
    assert rig.send().sent == 1 and len(rig.teams.accepted()) == 1


def test_a_refusing_receiver_is_dead_at_once_and_its_error_shows_no_secret(rig):
    rig.slack.script = [404, 404]
    rig.slack.error_body = b"no_service: no hook at {path}"  # the receiver echoes the secret URL path
    rig.new_ticket("706")
    process_ticket("zendesk", "706", deps=rig.deps())
    report = rig.send()
    assert report.dead == 2
    dead = rig.rows(channel="incident_slack")
    assert {r.status for r in dead} == {"dead"}
    assert dead[0].last_error == ("channel 'incident_slack': HTTP 404 (no_service: no hook at ***): "
                                  "the webhook no longer exists; check the URL in its environment variable")
    assert len(rig.slack.requests) == 2  # a 404 is not retried


def test_an_unset_environment_variable_is_a_dead_letter_naming_the_variable(rig, monkeypatch):
    monkeypatch.delenv("SLACK_INCIDENT_WEBHOOK_URL")
    rig.new_ticket("707")
    process_ticket("zendesk", "707", deps=rig.deps())
    rig.send()
    assert {r.last_error for r in rig.rows(channel="incident_slack")} == {
        "channel 'incident_slack': environment variable SLACK_INCIDENT_WEBHOOK_URL is not set"}


def test_the_pass_completes_while_every_channel_hangs(database_url, tmp_path, monkeypatch):
    rig = Rig(database_url, tmp_path, monkeypatch, timeout=1.0)
    try:
        for receiver in (rig.slack, rig.teams, rig.hook):
            receiver.script = [HANG] * 10
        rig.new_ticket("708")
        process_ticket("zendesk", "708", deps=rig.deps())
        sender = threading.Thread(target=rig.send, kwargs={"policy": replace(NO_SLEEP, attempts=1)})
        sender.start()
        assert rig.slack.arrived.wait(30)  # the sender is stuck on a channel that does not answer...
        rig.new_ticket("709")
        result = process_ticket("zendesk", "709", deps=rig.deps())  # ...and the next ticket's pass runs
        assert result.status == "done" and result.decision_id is not None
        assert rig.state("709").level == "L4"
        assert {r.status for r in rig.rows(ticket_id="709")} == {"pending"}
        rig.clock.value = MONDAY_9 + timedelta(minutes=7, seconds=30)
        assert fire_timer(rig.timer("708", "warning", "acknowledge", "L4", 0.5).id, deps=rig.deps()) == "fired"
        sender.join(60)
        assert not sender.is_alive()
        timed_out = rig.rows(ticket_id="708", channel="incident_slack", event="enter_level")[0]
        assert (timed_out.status, timed_out.last_error) == ("pending", "channel 'incident_slack': no answer within 1s")
    finally:
        rig.close()


# ------------------------------------------------------------------ never a second alert
def test_a_redelivered_webhook_and_a_timer_fired_twice_add_no_alert(rig):
    rig.new_ticket("710")
    process_ticket("zendesk", "710", deps=rig.deps())
    add_hint(rig.runtime.db, "zendesk", "710", "test", key="710-redelivered")  # the same change, delivered again
    assert process_ticket("zendesk", "710", deps=rig.deps()).status == "done"
    rig.clock.value = MONDAY_9 + timedelta(minutes=20)
    breach = rig.timer("710", "breach", "acknowledge", "L4")
    assert fire_timer(breach.id, deps=rig.deps()) == "fired"
    assert fire_timer(breach.id, deps=rig.deps()) == "skipped"
    rig.runtime.reconcile(inline=True)  # the overdue 50/75/90 % warnings fire, and say nothing after a breach
    rig.send()
    rig.send()
    assert [r.json()["event"] for r in rig.hook.requests] == ["breach"]
    # entered, roles, breach, and the two role deadlines (15m) that passed unfilled (the 50/75/90 % warnings
    # were never fired)
    assert len(rig.slack.accepted()) == 5
    assert len(rig.rows()) == len({r.dedupe_key for r in rig.rows()}) == 8


def test_the_same_breach_recorded_twice_is_one_outbox_row(rig):
    """The outbox's own guard, below the timer's exactly-once: the same event committed by two rounds (a
    recovered pass and a retried one) lands on one unique key."""
    rig.new_ticket("711")
    process_ticket("zendesk", "711", deps=rig.deps())
    loaded = rig.runtime.matrix()
    ticket = rig.fake.fetch_ticket("711")
    state = rig.state("711")
    breach = rig.timer("711", "breach", "acknowledge", "L4")
    from integration.model import Decision

    decision = Decision(vendor="zendesk", ticket_id="711", matrix_version=loaded.version, internal_note="SLA breach",
                        decided_at=MONDAY_9)
    rig.clock.value = MONDAY_9 + timedelta(minutes=16)
    added = []
    for _ in range(2):
        with rig.runtime.db.session() as session:
            added.append(alerts.record_alerts(session, loaded, ticket, state, state, decision, decision_id=None,
                                              timer=breach, now=rig.clock()))
    assert added == [3, 0]


class WorkerKilled(BaseException):
    """A kill -9 as the worker sees it: none of its own error handling runs."""


def test_a_worker_killed_mid_pass_sends_the_breach_alert_once(rig):
    rig.new_ticket("712")
    process_ticket("zendesk", "712", deps=rig.deps())
    rig.send()
    before = len(rig.slack.accepted())
    killed = []

    def kill_after_the_write(_entry):
        if not killed:
            killed.append(True)
            raise WorkerKilled()

    rig.fake.after_write = kill_after_the_write  # the breach note is on the ticket; the commit never happened
    rig.clock.value = MONDAY_9 + timedelta(minutes=20)
    breach = rig.timer("712", "breach", "acknowledge", "L4")
    with pytest.raises(WorkerKilled):
        fire_timer(breach.id, deps=rig.deps())
    assert rig.rows(event="breach") == []  # nothing queued by a decision that did not commit
    rig.clock.advance(120)  # the dead worker's lease ran out; the reconciler fires the timer again
    rig.runtime.reconcile(inline=True)  # recovers the breach (and fires the overdue warnings, which say nothing)
    assert {r.channel for r in rig.rows(event="breach")} == {"incident_slack", "support_leads_mail", "oncall_page"}
    assert rig.rows(event="warning") == []
    with rig.runtime.db.session() as session:
        assert session.get(TimerRow, breach.id).status == "fired"
    rig.runtime.reconcile(inline=True)

    # And a sender killed after claiming the rows, before sending: another pass sends each once.
    def killed_sender(*_args):
        raise WorkerKilled()

    with pytest.raises(WorkerKilled):
        deliver_due(rig.runtime.db, now=rig.clock, current=rig.runtime.matrix, send=killed_sender)
    assert rig.send().sent == 0  # still leased by the killed sender
    rig.clock.advance(alerts.ALERT_LEASE_SECONDS + 1)
    assert rig.send().sent == 5  # the breach on three channels, the two 15m role deadlines on Slack
    assert rig.send().sent == 0
    assert len(rig.slack.accepted()) == before + 3
    assert [r.json()["event"] for r in rig.hook.accepted()] == ["breach"]
    assert len(rig.smtp.messages) == 1


# ------------------------------------------------------------------ secrets
def _database_text(rig) -> str:
    from sqlalchemy import text

    out = []
    with rig.runtime.db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            try:
                rows = conn.execute(text(f"SELECT * FROM {table.name}")).all()
            except Exception:  # noqa: BLE001 - a table of another test's model that no migration creates
                conn.rollback()
                continue
            out.extend(repr(tuple(row)) for row in rows)
    return "\n".join(out)


def test_secrets_never_reach_the_database_logs_errors_or_the_cli(rig, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    rig.slack.script = [500, 403]  # a retry, then a refusal
    rig.slack.error_body = b"invalid_token for {path}"
    rig.hook.script = [401]
    rig.new_ticket("713")
    process_ticket("zendesk", "713", deps=rig.deps())
    rig.clock.value = MONDAY_9 + timedelta(minutes=20)
    fire_timer(rig.timer("713", "breach", "acknowledge", "L4").id, deps=rig.deps())
    rig.send()
    monkeypatch.setenv("SMTP_PASSWORD", "wrong-" + SMTP_PASSWORD)  # SMTP login refused
    rig.clock.advance(3600)
    with rig.runtime.db.session() as session:
        for row in session.scalars(select(AlertRow).where(AlertRow.channel == "support_leads_mail")):
            row.status, row.next_attempt_at = "pending", rig.clock()
    rig.send()
    errors = {r.last_error for r in rig.rows() if r.last_error}
    assert "channel 'support_leads_mail': SMTP login refused (535)" in errors
    assert "channel 'oncall_page': HTTP 401 (error)" in errors

    env = {"DATABASE_URL": rig.database_url, "MATRIX_PATH": str(rig.matrix_path)}
    outputs = [CliRunner().invoke(cli, args, env=env).output for args in (
        ["alerts", "list"], ["alerts", "list", "--format", "json"], ["history", "zendesk", "713"],
        ["events", "list"])]
    bad_hook = {**env, "ONCALL_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/x?key={HOOK_SECRET}"}
    failed_test = CliRunner().invoke(cli, ["notify", "test", "oncall_page"], env=bad_hook)
    assert failed_test.exit_code == 1
    outputs.append(failed_test.output)
    witnesses = {"database": _database_text(rig), "logs": caplog.text, "cli": "\n".join(outputs),
                 "errors": "\n".join(errors)}
    assert "incident_slack" in witnesses["database"] and "HTTP 403" in witnesses["logs"]
    for where, text in witnesses.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret} found in the {where}"


def test_notify_test_sends_a_wiring_check(rig):
    env = {"DATABASE_URL": rig.database_url, "MATRIX_PATH": str(rig.matrix_path)}
    result = CliRunner().invoke(cli, ["notify", "test", "support_leads_mail"], env=env)
    assert result.exit_code == 0, result.output
    assert result.output == "test alert sent to 'support_leads_mail' (email)\n"
    assert rig.smtp.messages[0]["Subject"] == "Test alert from escalation matrix 'Acme enterprise support'"
    result = CliRunner().invoke(cli, ["notify", "test", "incident_slak"], env=env)
    assert result.exit_code == 1
    assert "unknown channel 'incident_slak': incident_slack, leadership_teams, oncall_page, support_leads_mail" in result.output


# ------------------------------------------------------------------ the worker
def test_the_worker_sends_after_the_commit_and_in_its_sweep(rig):
    from service.periodic import PeriodicJobs

    huey = rig.runtime.huey
    rig.new_ticket("714")
    process_ticket("zendesk", "714", deps=rig.deps())
    queued = [huey.dequeue() for _ in range(huey.pending_count())]
    senders = [task for task in queued if task.name == "send_alerts"]
    assert len(senders) == 1  # one sender task for the commit that queued three alerts
    huey.execute(senders[0])
    assert {r.status for r in rig.rows()} == {"sent"} and len(rig.slack.accepted()) == 2

    # A lost task (or a retry coming due) is picked up by the periodic alert sweep.
    rig.teams.script = [503, 503, 503]
    rig.new_ticket("715")
    process_ticket("zendesk", "715", deps=rig.deps())
    jobs = PeriodicJobs(rig.runtime)
    rig.runtime.send_alerts = lambda: rig.send()  # the sweep, without the retry layer's real sleeps
    assert "periodic:alerts" in jobs.tick(0.0)
    assert [r.status for r in rig.rows(ticket_id="715", channel="leadership_teams")] == ["pending"]
    rig.clock.advance(3600)
    assert "periodic:alerts" in jobs.tick(alerts.ALERT_SWEEP_SECONDS)
    assert {r.status for r in rig.rows(ticket_id="715")} == {"sent"}
    jobs.stop()


def test_a_cadence_status_update_alerts_the_leadership_channel(rig):
    rig.new_ticket("716")
    process_ticket("zendesk", "716", deps=rig.deps())
    rig.send()
    rig.clock.value = MONDAY_9 + timedelta(hours=1, minutes=1)
    cadence = rig.timer("716", "cadence", "update_cadence", "L4")
    assert fire_timer(cadence.id, deps=rig.deps()) == "fired"
    assert rig.fake.replies("716")[-1].startswith("Status digest for 716")
    assert rig.send().sent == 1
    card = rig.teams.accepted()[-1].json()["attachments"][0]["content"]
    assert card["body"][0]["text"] == "[L4] Ticket 716: customer update overdue at L4"
    assert "The level's update cadence came due: the customer was sent the status update." in card["body"][1]["text"]


def test_a_stay_re_anchored_to_a_vendor_time_is_not_a_second_entry(rig):
    rig.new_ticket("717")
    process_ticket("zendesk", "717", deps=rig.deps())
    state = rig.state("717")
    re_anchored = state.with_(entered_level_at=state.entered_level_at - timedelta(minutes=3))
    with rig.runtime.db.session() as session:
        added = alerts.record_alerts(session, rig.runtime.matrix(), rig.fake.fetch_ticket("717"), state, re_anchored,
                                     None, decision_id=None, timer=None, now=rig.clock())
    assert added == 0
    assert [r.event for r in rig.rows(ticket_id="717", channel="incident_slack")] == ["enter_level", "role_missing"]


def test_a_burst_larger_than_one_claim_is_sent_in_one_run(rig):
    for ticket_id in ("718", "719"):
        rig.new_ticket(ticket_id)
        process_ticket("zendesk", ticket_id, deps=rig.deps())
    assert len(rig.rows(status="pending")) == 6
    assert rig.send(limit=2).sent == 6  # three claims of two, one run
    assert rig.send(limit=2, max_rows=1).sent == 0
