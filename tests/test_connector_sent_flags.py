"""`ConnectorError.sent`: what each connector says about whether a failed call (or a failed `apply`)
may have written anything. The pipeline abandons a customer reply's intent only on `sent is False`
(the next pass sends it); anything else means "may have been stored" (sent at most once).

Transport failures are produced for real where that matters: a refused connection to a closed local
port, and a local server that reads the request and drops the connection without answering."""
from __future__ import annotations

import socket
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Iterator

import pytest
import requests

from connectors.base import Conflict, ConnectorError, NotFound, Permanent, RateLimited, Transient, Unauthorized
from connectors.jira.connector import JiraConnector
from connectors.ratelimit import TokenBucket
from connectors.retry import RetryPolicy, call_with_retry
from connectors.zendesk.connector import ZendeskConnector
from integration.model import Decision, Ticket
from matrix_config.loader import load_matrix
from tests.support.jira_helpers import SITE, SleepRecorder, enterprise_matrix, make_settings, validated_jira_http
from tests.support.zendesk_fake import validated_fake_zendesk, zendesk_settings
from tests.test_zendesk_e2e import rig  # noqa: F401 - a fixture (webhook edge + pipeline + fake Zendesk)

PUT_5158 = r"/api/v2/tickets/5158$"
ISSUE_URL = f"{SITE}/rest/api/3/issue/SUP-7"
COMMENT_URL = f"{SITE}/rest/servicedeskapi/request/SUP-7/comment"


# ------------------------------------------------------------------------------------------ helpers
@contextmanager
def closed_port() -> Iterator[int]:
    """A local port nothing listens on: connecting is refused before any byte of the request is sent."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    yield port


@contextmanager
def server_that_hangs_up_after_reading() -> Iterator[tuple[int, list[bytes]]]:
    """Accepts, reads the request, closes without an answer: the request reached the vendor."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.05)  # close() does not wake a blocked accept(): poll a stop flag instead
    received: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                except OSError:
                    pass
                received.append(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], received
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


# --------------------------------------------------------------------------------------- retry layer
def attempts_raising(*errors: ConnectorError):
    queue = list(errors)

    def call() -> str:
        if not queue:
            return "done"
        raise queue.pop(0)

    return call


def not_sent(error: ConnectorError) -> ConnectorError:
    error.sent = False
    return error


def test_a_refusal_after_an_attempt_with_unknown_outcome_reports_unknown():
    # The first attempt timed out after sending (maybe stored); the retry was refused with a long 429.
    call = attempts_raising(Transient("read timed out"), not_sent(RateLimited("429", retry_after=30.0)))
    with pytest.raises(RateLimited) as raised:
        call_with_retry(call, policy=RetryPolicy(attempts=5, sleep=lambda s: None))
    assert raised.value.sent is None


def test_a_permanent_refusal_after_an_ambiguous_attempt_reports_unknown():
    call = attempts_raising(Transient("read timed out"), not_sent(Permanent("422")))
    with pytest.raises(Permanent) as raised:
        call_with_retry(call, policy=RetryPolicy(attempts=5, sleep=lambda s: None))
    assert raised.value.sent is None


def test_refusals_on_every_attempt_stay_not_sent():
    call = attempts_raising(*(not_sent(Transient("connect timed out")) for _ in range(3)))
    with pytest.raises(Transient) as raised:
        call_with_retry(call, policy=RetryPolicy(attempts=3, sleep=lambda s: None))
    assert raised.value.sent is False


# ------------------------------------------------------------------------------------------ Zendesk
@pytest.fixture(scope="module")
def zendesk_matrix():
    return load_matrix("matrix_config/examples/enterprise.yaml").matrix


@pytest.fixture
def fake():
    with validated_fake_zendesk() as zendesk:
        yield zendesk


@pytest.fixture
def zendesk(fake, zendesk_matrix) -> ZendeskConnector:
    return ZendeskConnector(zendesk_settings(), zendesk_matrix, rate_limiter=TokenBucket(10_000),
                            retry_policy=RetryPolicy(attempts=3, sleep=lambda s: None))


def zd_decision(**changes) -> Decision:
    values = dict(vendor="zendesk", ticket_id="5158", matrix_version="v1",
                  decided_at=datetime(2026, 11, 27, 10, tzinfo=timezone.utc))
    values.update(changes)
    return Decision(**values)


ESCALATE = dict(to_level="L2", priority="high", field_updates={"level": "L2"})
DATA_REQUEST = "Please attach the HAR file of a failing checkout."


def local_zendesk_snapshot() -> Ticket:
    return Ticket(vendor="zendesk", id="5158", subject="s", status="open", priority="normal",
                  version_token="2026-11-27T09:30:15Z")


class ExhaustedBudget:
    def try_acquire(self) -> float:
        return 30.0


def test_zendesk_budget_refusal_is_not_sent(fake, zendesk_matrix):
    connector = ZendeskConnector(zendesk_settings(), zendesk_matrix, rate_limiter=ExhaustedBudget(),
                                 retry_policy=RetryPolicy(sleep=lambda s: None))
    with pytest.raises(RateLimited) as raised:
        connector.apply(local_zendesk_snapshot(), zd_decision(public_reply=DATA_REQUEST))
    assert raised.value.sent is False and fake.calls() == []


def test_zendesk_connect_timeout_is_not_sent(zendesk, fake):
    ticket = zendesk.fetch_ticket("5158")
    fake.fail_next("PUT", PUT_5158, 0, times=3, error=requests.ConnectTimeout("connect timed out"))
    with pytest.raises(Transient) as raised:
        zendesk.apply(ticket, zd_decision(public_reply=DATA_REQUEST))
    assert raised.value.sent is False and fake.put_bodies() == []


def test_zendesk_refused_connection_is_not_sent(zendesk_matrix):
    with closed_port() as port:
        connector = ZendeskConnector(zendesk_settings(base_url=f"http://127.0.0.1:{port}"), zendesk_matrix,
                                     rate_limiter=TokenBucket(10_000), retry_policy=RetryPolicy(attempts=2, sleep=lambda s: None))
        with pytest.raises(Transient) as raised:
            connector.apply(local_zendesk_snapshot(), zd_decision(public_reply=DATA_REQUEST))
    assert raised.value.sent is False


def test_zendesk_connection_dropped_after_sending_is_unknown(zendesk_matrix):
    with server_that_hangs_up_after_reading() as (port, received):
        connector = ZendeskConnector(zendesk_settings(base_url=f"http://127.0.0.1:{port}"), zendesk_matrix,
                                     rate_limiter=TokenBucket(10_000), retry_policy=RetryPolicy(attempts=1))
        with pytest.raises(Transient) as raised:
            connector.apply(local_zendesk_snapshot(), zd_decision(public_reply=DATA_REQUEST))
    assert received and received[0].startswith(b"PUT /api/v2/tickets/5158")
    assert raised.value.sent is None


def test_zendesk_read_timeout_is_unknown(zendesk, fake):
    ticket = zendesk.fetch_ticket("5158")
    fake.fail_next("PUT", PUT_5158, 0, times=3, error=requests.ReadTimeout("read timed out"))
    with pytest.raises(Transient) as raised:
        zendesk.apply(ticket, zd_decision(public_reply=DATA_REQUEST))
    assert raised.value.sent is None


@pytest.mark.parametrize("status,headers,error_type,sent", [
    (429, {"Retry-After": "60"}, RateLimited, False),
    (422, {}, Permanent, False),
    (400, {}, Permanent, False),
    (401, {}, Unauthorized, False),
    (403, {}, Unauthorized, False),
    (404, {}, NotFound, False),
    (409, {}, Conflict, None),  # a guarded retry's 409 may follow an attempt that was stored
    (500, {}, Transient, None),
    (503, {"Retry-After": "60"}, RateLimited, None),
])
def test_zendesk_answers_that_wrote_nothing_are_not_sent(zendesk_matrix, status, headers, error_type, sent):
    with validated_fake_zendesk() as fake:
        connector = ZendeskConnector(zendesk_settings(user_id="9000"), zendesk_matrix, rate_limiter=TokenBucket(10_000),
                                     retry_policy=RetryPolicy(attempts=1))
        ticket = connector.fetch_ticket("5158")
        fake.fail_next("PUT", PUT_5158, status, headers=headers, body={"error": "Failed", "description": "no"})
        with pytest.raises(error_type) as raised:
            connector.apply(ticket, zd_decision(**ESCALATE))
    assert raised.value.sent is sent


def test_zendesk_note_refused_after_the_reply_was_written_is_unknown(zendesk, fake):
    ticket = zendesk.fetch_ticket("5158")
    fake.fail_next("PUT", PUT_5158, 422, skip=1, body={"error": "RecordInvalid", "description": "Note invalid"})
    with pytest.raises(Permanent) as raised:
        zendesk.apply(ticket, zd_decision(**ESCALATE, public_reply="Reply.", internal_note="Note."))
    assert [c["body"] for c in fake.comments["5158"]][-1] == "Reply."  # the reply is on the ticket
    assert raised.value.sent is None


def test_zendesk_note_rate_limited_after_the_reply_was_written_is_unknown(zendesk, fake):
    ticket = zendesk.fetch_ticket("5158")
    fake.fail_next("PUT", PUT_5158, 429, skip=1, headers={"Retry-After": "60"})
    with pytest.raises(RateLimited) as raised:
        zendesk.apply(ticket, zd_decision(public_reply="Reply.", internal_note="Note."))
    assert raised.value.sent is None


def time_out_after_storing(fake, comment_body: str) -> list[bool]:
    """Zendesk stores the update whose comment is `comment_body`, then the client hears a read timeout."""
    timed_out: list[bool] = []

    def hook(body):
        if (body["ticket"].get("comment") or {}).get("body") == comment_body and not timed_out:
            timed_out.append(True)
            raise requests.ReadTimeout("read timed out")

    fake.after_ticket_update = hook
    return timed_out


def test_zendesk_comment_only_reply_stored_by_a_timed_out_attempt_is_not_repeated(zendesk, fake):
    # A data request (no field change): the first PUT times out after Zendesk stored it, the guarded
    # retry meets 409. The reply is on the ticket: apply succeeds instead of raising Conflict (which
    # would let the pipeline decide again and send the customer the same request twice).
    ticket = zendesk.fetch_ticket("5158")
    timed_out = time_out_after_storing(fake, DATA_REQUEST)
    result = zendesk.apply(ticket, zd_decision(public_reply=DATA_REQUEST))
    assert timed_out == [True]
    assert [c["body"] for c in fake.comments["5158"]].count(DATA_REQUEST) == 1
    assert result.writes == 0 and result.requests == [
        {"method": "PUT", "path": "/api/v2/tickets/5158", "status": 409, "already_stored": True, "comment_public": True}]


def test_zendesk_first_update_with_fields_stored_by_a_timed_out_attempt_is_left_to_the_pipeline(zendesk, fake):
    # Its fields are on the ticket: the pipeline sees them after Conflict and completes the intent
    # as recovered without writing again; the connector does not look at comments for it.
    ticket = zendesk.fetch_ticket("5158")
    time_out_after_storing(fake, DATA_REQUEST)
    reads_before = len(fake.calls("GET"))
    with pytest.raises(Conflict) as raised:
        zendesk.apply(ticket, zd_decision(**ESCALATE, public_reply=DATA_REQUEST))
    assert raised.value.sent is None
    assert fake.tickets["5158"]["priority"] == "high" and len(fake.calls("GET")) == reads_before


def test_zendesk_stored_first_update_then_note_goes_out_on_the_fresh_stamp(zendesk, fake):
    ticket = zendesk.fetch_ticket("5158")
    time_out_after_storing(fake, DATA_REQUEST)
    result = zendesk.apply(ticket, zd_decision(public_reply=DATA_REQUEST, internal_note="Asked for a HAR file."))
    bodies = [c["body"] for c in fake.comments["5158"]]
    assert bodies.count(DATA_REQUEST) == 1 and bodies[-1] == "Asked for a HAR file."
    assert result.writes == 1  # the note; the reply was stored by the attempt that timed out


def test_zendesk_an_identical_earlier_reply_does_not_count_as_this_one(zendesk, fake):
    # The same data request was sent on an earlier cycle (before the snapshot); an agent then edits the
    # ticket while we write: 409 is a real conflict and the pipeline must decide again.
    fake.comments["5158"].append({"id": 79999, "type": "Comment", "author_id": 9000, "body": DATA_REQUEST,
                                  "public": True, "created_at": "2026-11-27T09:00:00Z"})
    ticket = zendesk.fetch_ticket("5158")
    fake.tickets["5158"]["updated_at"] = "2026-11-27T09:50:00Z"
    with pytest.raises(Conflict) as raised:
        zendesk.apply(ticket, zd_decision(public_reply=DATA_REQUEST))
    assert raised.value.sent is None and fake.put_bodies() == []


def test_zendesk_an_identical_earlier_note_does_not_stop_this_note(zendesk, fake):
    fake.comments["5158"].append({"id": 79999, "type": "Comment", "author_id": 9000, "body": "Note.",
                                  "public": False, "created_at": "2026-11-27T09:00:00Z"})
    ticket = zendesk.fetch_ticket("5158")

    def agent_edit():
        fake.tickets["5158"]["updated_at"] = "2026-11-27T10:30:00Z"

    fake.before_next("PUT", PUT_5158, agent_edit, skip=1)  # between the reply and the note
    result = zendesk.apply(ticket, zd_decision(public_reply="Reply.", internal_note="Note."))
    assert [c["body"] for c in fake.comments["5158"]].count("Note.") == 2
    assert result.writes == 2


def test_zendesk_lookup_failing_after_an_ambiguous_first_update_is_unknown(zendesk, fake):
    ticket = zendesk.fetch_ticket("5158")
    time_out_after_storing(fake, DATA_REQUEST)
    fake.fail_next("GET", r"/api/v2/tickets/5158/comments$", 429, headers={"Retry-After": "60"})
    with pytest.raises(RateLimited) as raised:
        zendesk.apply(ticket, zd_decision(public_reply=DATA_REQUEST))
    assert raised.value.sent is None


# --------------------------------------------------------------------------------------------- Jira
@pytest.fixture
def http():
    with validated_jira_http() as rsps:
        yield rsps


@pytest.fixture
def jira():
    return JiraConnector(make_settings(), enterprise_matrix(), retry_policy=SleepRecorder().policy(attempts=3))


def jira_snapshot() -> Ticket:
    return Ticket(vendor="jira", id="SUP-7", subject="s", status="open", priority="normal",
                  tags=frozenset({"tier-enterprise", "checkout"}), group="frontline",
                  fields={"level": "L1", "customer_tier": "enterprise"})


def jira_decision(**changes) -> Decision:
    return Decision(vendor="jira", ticket_id="SUP-7", matrix_version="abc123",
                    decided_at=datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc), **changes)


@pytest.mark.parametrize("status,headers,error_type,sent", [
    (429, {"Retry-After": "60"}, RateLimited, False),
    (400, {}, Permanent, False),
    (401, {}, Unauthorized, False),
    (403, {}, Unauthorized, False),
    (404, {}, NotFound, False),
    (409, {}, Conflict, None),
    (500, {}, Transient, None),
])
def test_jira_reply_answers_that_posted_nothing_are_not_sent(http, jira, status, headers, error_type, sent):
    http.post(COMMENT_URL, status=status, headers=headers, json={"errorMessage": "no"})
    with pytest.raises(error_type) as raised:
        jira.apply(jira_snapshot(), jira_decision(public_reply=DATA_REQUEST))
    assert raised.value.sent is sent


def test_jira_field_edit_rejected_with_400_is_not_sent(http, jira):
    http.put(ISSUE_URL, status=400, json={"errorMessages": [], "errors": {"priority": "invalid"}})
    with pytest.raises(Permanent) as raised:
        jira.apply(jira_snapshot(), jira_decision(priority="high", public_reply=DATA_REQUEST))
    assert raised.value.sent is False and len(http.calls) == 1


def test_jira_connect_timeout_on_the_reply_is_not_sent(http, jira):
    for _ in range(3):
        http.post(COMMENT_URL, body=requests.ConnectTimeout("connect timed out"))
    with pytest.raises(Transient) as raised:
        jira.apply(jira_snapshot(), jira_decision(public_reply=DATA_REQUEST))
    assert raised.value.sent is False


def test_jira_connection_reset_without_proof_is_unknown(http, jira):
    http.post(COMMENT_URL, body=requests.ConnectionError("Connection reset by peer"))
    with pytest.raises(Transient) as raised:
        jira.apply(jira_snapshot(), jira_decision(public_reply=DATA_REQUEST))
    assert raised.value.sent is None and len(http.calls) == 1  # a POST is not repeated blindly


def test_jira_refused_connection_is_not_sent_and_the_reply_is_retried():
    sleeps = SleepRecorder()
    with closed_port() as port:
        connector = JiraConnector(make_settings(JIRA_URL=f"http://127.0.0.1:{port}"), enterprise_matrix(),
                                  retry_policy=sleeps.policy(attempts=2))
        with pytest.raises(Transient) as raised:
            connector.apply(jira_snapshot(), jira_decision(public_reply=DATA_REQUEST))
    assert raised.value.sent is False
    assert len(sleeps.waits) == 1  # nothing was posted, so repeating the POST cannot duplicate the reply


def test_jira_connection_dropped_after_sending_the_reply_is_unknown():
    with server_that_hangs_up_after_reading() as (port, received):
        connector = JiraConnector(make_settings(JIRA_URL=f"http://127.0.0.1:{port}"), enterprise_matrix(),
                                  retry_policy=RetryPolicy(attempts=3, sleep=lambda s: None))
        with pytest.raises(Transient) as raised:
            connector.apply(jira_snapshot(), jira_decision(public_reply=DATA_REQUEST))
    assert len(received) == 1 and received[0].startswith(b"POST /rest/servicedeskapi/request/SUP-7/comment")
    assert raised.value.sent is None


def test_jira_field_edit_timed_out_then_rate_limited_is_unknown(http, jira):
    http.put(ISSUE_URL, body=requests.ReadTimeout("read timed out"))
    http.put(ISSUE_URL, status=429, headers={"Retry-After": "60"})
    with pytest.raises(RateLimited) as raised:
        jira.apply(jira_snapshot(), jira_decision(priority="high"))
    assert raised.value.sent is None


def test_jira_reply_refused_after_the_field_edit_is_unknown(http, jira):
    http.put(ISSUE_URL, status=204)
    http.post(COMMENT_URL, status=429, headers={"Retry-After": "60"})
    with pytest.raises(RateLimited) as raised:
        jira.apply(jira_snapshot(), jira_decision(priority="high", public_reply=DATA_REQUEST))
    assert raised.value.sent is None


def test_jira_note_refused_after_the_reply_is_unknown(http, jira):
    http.post(COMMENT_URL, status=201, json={"id": "1"})
    http.post(COMMENT_URL, status=400, json={"errorMessage": "invalid"})
    with pytest.raises(Permanent) as raised:
        jira.apply(jira_snapshot(), jira_decision(public_reply=DATA_REQUEST, internal_note="note"))
    assert raised.value.sent is None


# ------------------------------------------------------- end to end: pipeline + the real Zendesk connector
def data_request_deps(runtime, **overrides):
    """Asks the customer for logs once (a comment-only decision, as for a held ticket)."""
    from dataclasses import replace

    from integration.model import TicketState

    def decide(ticket, state, matrix, now, version):
        asked = state is not None and "logs" in state.data_requested
        return Decision(vendor=ticket.vendor, ticket_id=ticket.id, matrix_version=version, decided_at=now,
                        reason="data request", public_reply=None if asked else DATA_REQUEST,
                        missing_data=() if asked else ("logs",))

    def next_state(state, ticket, decision):
        state = state or TicketState(vendor=ticket.vendor, ticket_id=ticket.id)
        return state.with_(data_requested=tuple(sorted(set(state.data_requested) | set(decision.missing_data))))

    return replace(runtime.deps(), decide=decide, next_state=next_state, clocks=None, **overrides)


def decision_statuses(runtime) -> list[str]:
    from sqlalchemy import select

    from integration.store.db import DecisionRow

    with runtime.db.session() as session:
        return [row.status for row in session.scalars(select(DecisionRow).order_by(DecisionRow.id))]


def test_e2e_data_request_that_could_not_connect_is_sent_on_the_next_pass(rig):
    from integration.pipeline import process_ticket
    from tests.test_zendesk_e2e import deliver

    runtime, client, fake = rig
    fake.fail_next("PUT", PUT_5158, 0, times=5, error=requests.ConnectTimeout("connect timed out"))
    assert deliver(client, "ticket_created.json", "inv-created") in (200, 202)

    assert process_ticket("zendesk", "5158", deps=data_request_deps(runtime)).status == "retry"
    assert decision_statuses(runtime) == ["abandoned"] and fake.put_bodies() == []
    later = datetime.now(timezone.utc) + timedelta(hours=1)  # past the re-queued event's eta
    assert process_ticket("zendesk", "5158", deps=data_request_deps(runtime, now=lambda: later)).status == "done"

    assert [c["body"] for c in fake.comments["5158"]].count(DATA_REQUEST) == 1
    assert decision_statuses(runtime) == ["abandoned", "applied"]


def test_e2e_data_request_stored_by_a_timed_out_put_goes_out_once(rig):
    from integration.pipeline import process_ticket
    from tests.test_zendesk_e2e import deliver

    runtime, client, fake = rig
    timed_out = time_out_after_storing(fake, DATA_REQUEST)
    assert deliver(client, "ticket_created.json", "inv-created") in (200, 202)

    assert process_ticket("zendesk", "5158", deps=data_request_deps(runtime)).status == "done"

    assert timed_out == [True]
    assert [c["body"] for c in fake.comments["5158"]].count(DATA_REQUEST) == 1
    assert decision_statuses(runtime) == ["applied"]
