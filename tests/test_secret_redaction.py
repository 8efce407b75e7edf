"""Witness: a vendor (or a proxy in front of it) that echoes the request's credentials in its error page
never gets them into the service's logs, database rows or CLI output, in any encoding.

The vendor double answers every request with a 500 or 401 page that repeats the `Authorization` header it
received and the token (as written, percent-encoded, in a URL); a pipeline pass then runs until the event is
dead-lettered, and every place an operator reads is searched for each form of the credential."""
from __future__ import annotations

import base64
import json
import logging
import re
from datetime import datetime, timezone
from urllib.parse import quote

import pytest
import responses
from click.testing import CliRunner
from sqlalchemy import MetaData, select

from connectors.jira.connector import JiraConnector
from connectors.ratelimit import TokenBucket
from connectors.retry import RetryPolicy
from connectors.zendesk.connector import ZendeskConnector
from connectors.zendesk.settings import ZendeskSettings
from integration.store.events import DatabaseEventSink
from integration.pipeline import process_ticket
from tests.support.fake_connector import ManualClock, make_runtime, make_settings, neutral_event
from tests.support.jira_helpers import enterprise_matrix
from tests.support.jira_helpers import make_settings as jira_settings
from tests.support.jira_helpers import validate_all as validate_jira_calls
from tests.support.openapi_check import validate_zendesk_calls

START = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)
EMAIL = "bot@acme.example"
TOKEN = "zdT0k3n/secret+value=42"
JIRA_TOKEN = "ATATT3xFfGF0-not-a-real-token-7c1d"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def forms(user: str, token: str) -> list[str]:
    """Every way the credential could surface: as written, percent-encoded, base64, and the Basic value."""
    basic = _b64(f"{user}:{token}")
    return [token, quote(token, safe=""), _b64(token), basic, basic.rstrip("="), f"{user}:{token}"]


def echo_page(status: int, content_type: str, token: str):
    """A responses callback answering like a vendor/proxy error page that repeats what it was sent."""
    def answer(request):
        header = request.headers.get("Authorization", "")
        echoed = (f"Authorization: {header}; X-Api-Token: {token}; retry via "
                  f"https://bot:{quote(token, safe='')}@proxy.acme.example/retry?api_token={quote(token, safe='')}")
        if content_type == "application/json":
            body = json.dumps({"error": "Couldn't authenticate you", "description": echoed,
                               "errorMessages": [echoed]})
        elif content_type == "text/html":
            body = f"<html><body><h1>{status}</h1><pre>{echoed}</pre></body></html>"
        else:
            body = f"upstream said: {echoed}"
        return status, {"Content-Type": content_type}, body
    return answer


def zendesk_api_token(matrix):
    settings = ZendeskSettings(_env_file=None, subdomain="acme", email=EMAIL, api_token=TOKEN)
    connector = ZendeskConnector(settings, matrix, rate_limiter=TokenBucket(10_000),
                                 retry_policy=RetryPolicy(sleep=lambda s: None))
    return connector, "https://acme.zendesk.com", "5158", TOKEN, forms(f"{EMAIL}/token", TOKEN)


def zendesk_oauth(matrix):
    settings = ZendeskSettings(_env_file=None, subdomain="acme", oauth_token=TOKEN)
    connector = ZendeskConnector(settings, matrix, rate_limiter=TokenBucket(10_000),
                                 retry_policy=RetryPolicy(sleep=lambda s: None))
    return connector, "https://acme.zendesk.com", "5158", TOKEN, forms("Bearer", TOKEN)


def jira(matrix):
    connector = JiraConnector(jira_settings(), matrix, retry_policy=RetryPolicy(sleep=lambda s: None))
    return connector, "https://acme.atlassian.net", "SUP-7", JIRA_TOKEN, forms("escalation-bot@acme.example", JIRA_TOKEN)


@pytest.mark.parametrize("build", [zendesk_api_token, zendesk_oauth, jira], ids=["zendesk-basic", "zendesk-bearer", "jira-basic"])
@pytest.mark.parametrize("status, content_type", [(500, "text/html"), (500, "text/plain"), (401, "application/json")])
def test_an_echoed_credential_reaches_no_log_row_or_cli_output(build, status, content_type, tmp_path, caplog):
    settings = make_settings(f"sqlite:///{tmp_path}/escalation.db")
    clock = ManualClock(START)
    holder: dict = {}
    connector, base, ticket_id, token, secret_forms = build(enterprise_matrix())
    vendor = connector.vendor
    runtime = make_runtime(settings, connector, clock=clock)
    caplog.set_level(logging.DEBUG)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        for method in ("GET", "PUT", "POST"):
            rsps.add_callback(method, re.compile(re.escape(base) + r"/.*"), callback=echo_page(status, content_type, token))
        sink = DatabaseEventSink(runtime.db, runtime.enqueue_ticket)
        sink.accept(neutral_event(ticket_id, "d1", vendor=vendor), b'{"delivery": "d1"}', START)
        for _ in range(settings.max_attempts):
            process_ticket(vendor, ticket_id, deps=runtime.deps())
            clock.advance(3600)
        assert rsps.calls, "the connector never asked the vendor"
        holder["echo"] = rsps.calls[0].response.text
        (validate_zendesk_calls if vendor == "zendesk" else validate_jira_calls)(rsps.calls)
    # The double really did echo the credential: the header the connector sent is in the page.
    assert any(form in holder["echo"] for form in secret_forms[3:]) or "Bearer" in holder["echo"]

    texts: list[str] = [record.getMessage() for record in caplog.records]
    texts += [record.exc_text or "" for record in caplog.records]
    metadata = MetaData()
    metadata.reflect(runtime.db.engine)
    with runtime.db.engine.connect() as connection:
        statuses = [row.status for row in connection.execute(select(metadata.tables["events"]))]
        for table in metadata.tables.values():
            for row in connection.execute(select(table)):
                texts += [str(value) for value in row if value is not None]
    assert statuses == ["dead"]

    from cli.main import cli

    env = {"DATABASE_URL": settings.database_url, "QUEUE_URL": "memory://", "MATRIX_PATH": settings.matrix_path}
    for command in (["events", "list", "--status", "dead"], ["events", "list", "--format", "json"],
                    ["history", vendor, ticket_id], ["history", vendor, ticket_id, "--format", "json"]):
        result = CliRunner().invoke(cli, command, env=env)
        # `history` of a ticket that never got a decision says so and exits 1; its words are searched too.
        assert result.exit_code in ((0, 1) if command[0] == "history" else (0,)), result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        texts.append(result.output)
    assert any(str(status) in text for text in texts)  # the failure itself is reported

    everything = "\n".join(texts)
    for form in secret_forms:
        assert form not in everything, f"{form!r} leaked"
    runtime.db.dispose()
