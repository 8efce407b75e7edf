"""Zendesk connector against an in-memory account (`responses`); every request it sends is validated
against the Zendesk OpenAPI spec after each test."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import requests
import responses

from connectors.base import (
    ConfigurationError,
    Conflict,
    Connector,
    NotFound,
    Permanent,
    RateLimited,
    Transient,
    Unauthorized,
)
from connectors.ratelimit import TokenBucket
from connectors.retry import RetryPolicy
from connectors.zendesk.connector import ZendeskConnector, build_from_env
from connectors.zendesk.remote import check_remote
from connectors.zendesk.settings import ZendeskSettings
from connectors.zendesk.webhook_snapshot import snapshot_from_webhook
from integration.model import Decision, Ticket
from matrix_config.loader import load_matrix
from matrix_config.schema import Matrix
from tests.support.openapi_check import validate_request
from tests.support.zendesk_fake import BASE, EMAIL, TOKEN, validated_fake_zendesk, zendesk_settings


@pytest.fixture(scope="module")
def matrix() -> Matrix:
    base = load_matrix("matrix_config/examples/enterprise.yaml").matrix.model_dump(mode="json")
    # The account's "Business impact" options carry an impact_ prefix: exercise the values map.
    base["fields"]["impact"]["zendesk"]["values"] = {
        "critical": "impact_critical", "high": "impact_high", "medium": "impact_medium", "low": "impact_low"}
    return Matrix.model_validate(base)


@pytest.fixture
def fake():
    with validated_fake_zendesk() as zendesk:
        yield zendesk


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def connector(fake, matrix, sleeps) -> ZendeskConnector:
    return ZendeskConnector(zendesk_settings(), matrix, retry_policy=RetryPolicy(attempts=3, sleep=sleeps.append),
                            rate_limiter=TokenBucket(10_000))


def decision(**changes) -> Decision:
    values = dict(vendor="zendesk", ticket_id="5158", matrix_version="v1",
                  decided_at=datetime(2026, 11, 27, 10, tzinfo=timezone.utc))
    values.update(changes)
    return Decision(**values)


ESCALATE_TO_L2 = dict(to_level="L2", priority="high", owner_group="product_specialists",
                      field_updates={"level": "L2"})


# ------------------------------------------------------------------------------------------- read
def test_fetch_normalizes_ticket_into_matrix_terms(connector, fake):
    ticket = connector.fetch_ticket("5158")

    assert isinstance(connector, Connector)
    assert ticket.id == "5158" and ticket.vendor == "zendesk"
    assert (ticket.status, ticket.priority, ticket.group) == ("open", "normal", "frontline")
    assert ticket.organization == "Globex Corporation"
    assert (ticket.requester.name, ticket.requester.email) == ("Dana Customer", "dana@customer.example")
    assert "outage_reported" in ticket.tags  # Zendesk tags are compared lower-case
    assert dict(ticket.fields) == {
        "issue_type": "outage",
        "impact": "critical",  # option impact_critical through the values map
        "customer_tier": "enterprise",  # tag tier_enterprise
        "account_id": "ACME-4711",
        "environment": "production",
        "affected_users": 250,  # integer field: Zendesk sends "250"
        "level": "L1",  # tag esc_l1
    }
    assert ticket.level == "L1"
    assert ticket.version_token == "2026-11-27T09:30:15Z"
    assert ticket.satisfaction is None  # "offered" is not a score
    assert ticket.url == f"{BASE}/agent/tickets/5158"


def test_acknowledgement_ignores_requester_cc_internal_notes_and_own_replies(connector, fake):
    ticket = connector.fetch_ticket("5158")
    # 08:00:40 is the bot's own public reply, 08:10 an internal note, 08:20 a CC'd end user.
    assert ticket.first_public_agent_reply_at == datetime(2026, 11, 27, 8, 25, tzinfo=timezone.utc)
    assert ticket.last_public_agent_reply_at == datetime(2026, 11, 27, 9, 30, 15, tzinfo=timezone.utc)


def test_comment_pages_are_followed(connector, fake):
    many = [dict(c, id=90000 + i, public=False) for i, c in enumerate(fake.comments["5158"] * 40)]
    fake.comments["5158"] = many + fake.comments["5158"][-1:]  # the only public agent reply is on page 3
    ticket = connector.fetch_ticket("5158")
    assert len(fake.calls("GET", "/api/v2/tickets/5158/comments")) == 3
    assert ticket.first_public_agent_reply_at == datetime(2026, 11, 27, 9, 30, 15, tzinfo=timezone.utc)


def test_pagination_links_to_another_host_are_not_followed(connector, fake):
    fake.comments["5158"] = [dict(c, id=91000 + i, public=False) for i, c in enumerate(fake.comments["5158"] * 20)]
    original = fake._comments

    def comments_linking_elsewhere(path, query, body):
        status, payload = original(path, query, body)
        if payload["links"]["next"]:
            payload["links"]["next"] = payload["links"]["next"].replace(BASE, "https://evil.example")
        return status, payload

    fake._comments = comments_linking_elsewhere
    fake.rsps.reset()
    fake._register()
    with pytest.raises(Permanent, match="another host"):
        connector.fetch_ticket("5158")


def test_lookups_are_cached_across_fetches(connector, fake):
    connector.fetch_ticket("5158")
    connector.fetch_ticket("5158")
    assert len(fake.calls("GET", "/api/v2/ticket_fields")) == 1
    assert len(fake.calls("GET", "/api/v2/users/me")) == 1
    assert len(fake.calls("GET", "/api/v2/groups")) == 0  # group ids come from the matrix
    assert len(fake.calls("GET", "/api/v2/tickets/5158/comments")) == 1  # unchanged ticket: comments kept
    assert len(fake.calls("GET", "/api/v2/tickets/5158")) == 3  # the ticket itself: read on every fetch


def test_unknown_custom_field_type_refreshes_the_field_cache(connector, fake):
    connector.fetch_ticket("5158")
    fake.ticket_fields = [f for f in fake.ticket_fields if f["id"] != 360000100006]
    connector._lookups.field_types.pop(360000100006)  # the field was added to the account after the first load
    connector.fetch_ticket("5158")
    assert len(fake.calls("GET", "/api/v2/ticket_fields")) == 2


def test_configured_user_id_means_no_users_me_call(fake, matrix):
    connector = ZendeskConnector(zendesk_settings(user_id="9000"), matrix, rate_limiter=TokenBucket(10_000))
    assert connector.own_user_id() == "9000"
    connector.fetch_ticket("5158")
    assert fake.calls("GET", "/api/v2/users/me") == []


def test_own_user_id_comes_from_users_me_through_zenpy(connector, fake):
    assert connector.own_user_id() == "9000"
    assert connector.own_user_id() == "9000"
    calls = fake.calls("GET", "/api/v2/users/me")
    assert len(calls) == 1 and calls[0].request.url.endswith("/api/v2/users/me.json")  # zenpy's URL


# ------------------------------------------------------------------------------------------ write
def test_escalation_with_note_is_one_put_with_tag_delta(connector, fake):
    ticket = connector.fetch_ticket("5158")
    result = connector.apply(ticket, decision(**ESCALATE_TO_L2, internal_note="Escalated to L2 by rule wide-outage."))

    assert result.writes == 1
    assert fake.put_bodies() == [{"ticket": {
        "priority": "high",
        "group_id": 360000200003,
        "additional_tags": ["esc_l2"],
        "remove_tags": ["esc_l1"],  # the old level's tag goes, so the L1 SLA policy no longer matches
        "comment": {"body": "Escalated to L2 by rule wide-outage.", "public": False},
        "safe_update": True,
        "updated_stamp": "2026-11-27T09:30:15Z",
    }}]
    assert "esc_l2" in fake.tickets["5158"]["tags"] and "checkout" in fake.tickets["5158"]["tags"]


def test_reply_and_note_are_two_puts_reply_first(connector, fake):
    ticket = connector.fetch_ticket("5158")
    result = connector.apply(ticket, decision(**ESCALATE_TO_L2, public_reply="Your request is with L2.",
                                              internal_note="Escalated to L2."))
    assert result.writes == 2
    first, second = fake.put_bodies()
    assert first["ticket"]["comment"] == {"body": "Your request is with L2.", "public": True}
    assert first["ticket"]["additional_tags"] == ["esc_l2"] and first["ticket"]["priority"] == "high"
    # The note carries nothing else, guarded by the stamp the first update returned.
    assert set(second["ticket"]) == {"comment", "safe_update", "updated_stamp"}
    assert second["ticket"]["comment"] == {"body": "Escalated to L2.", "public": False}
    assert second["ticket"]["updated_stamp"] != first["ticket"]["updated_stamp"]
    assert [c["public"] for c in fake.comments["5158"][-2:]] == [True, False]


def test_decision_without_writes_makes_no_request(connector, fake):
    ticket = connector.fetch_ticket("5158")
    before = len(fake.rsps.calls)
    result = connector.apply(ticket, decision(start_clocks=(), milestones={}))
    assert result.writes == 0 and len(fake.rsps.calls) == before


def test_decision_the_ticket_already_reflects_makes_no_request(connector, fake):
    ticket = connector.fetch_ticket("5158")
    before = len(fake.rsps.calls)
    already = decision(priority="normal", owner_group="frontline", field_updates={"level": "L1", "impact": "critical"},
                       add_tags=("checkout",), remove_tags=("not_there",))
    assert connector.apply(ticket, already).writes == 0
    assert len(fake.rsps.calls) == before


def test_custom_field_update_uses_the_values_map(connector, fake):
    ticket = connector.fetch_ticket("5158")
    connector.apply(ticket, decision(field_updates={"impact": "high", "incident_commander": "Ada Agent"}))
    body = fake.put_bodies()[0]["ticket"]
    assert body["custom_fields"] == [{"id": 360000100002, "value": "impact_high"},
                                     {"id": 360000100007, "value": "Ada Agent"}]
    assert "tags" not in body and "comment" not in body


def test_stale_snapshot_raises_conflict_and_changes_nothing(connector, fake):
    ticket = connector.fetch_ticket("5158")
    fake.tickets["5158"]["updated_at"] = "2026-11-27T09:45:00Z"  # an agent edited the ticket meanwhile
    fake.tickets["5158"]["priority"] = "low"
    with pytest.raises(Conflict):
        connector.apply(ticket, decision(**ESCALATE_TO_L2))
    assert fake.put_bodies() == [] and fake.tickets["5158"]["priority"] == "low"
    # The pipeline re-fetches and re-decides: the fresh snapshot writes fine.
    fresh = connector.fetch_ticket("5158")
    assert connector.apply(fresh, decision(**ESCALATE_TO_L2)).writes == 1


def agent_edit(fake, ticket_id="5158", stamp="2026-11-27T09:50:00Z"):
    def edit():
        fake.tickets[ticket_id]["updated_at"] = stamp
        fake.tickets[ticket_id]["status"] = "pending"
    return edit


def test_note_after_the_reply_is_resent_on_a_fresh_stamp_after_409(connector, fake):
    ticket = connector.fetch_ticket("5158")
    fake.before_next("PUT", r"/api/v2/tickets/5158$", agent_edit(fake), skip=1)  # between our two updates
    result = connector.apply(ticket, decision(**ESCALATE_TO_L2, public_reply="Reply.", internal_note="Note."))
    assert result.writes == 2
    first, second = fake.put_bodies()
    assert second["ticket"]["updated_stamp"] == "2026-11-27T09:50:00Z"
    assert fake.tickets["5158"]["status"] == "pending"  # the agent's edit stands
    assert [c["body"] for c in fake.comments["5158"][-2:]] == ["Reply.", "Note."]


def test_note_already_posted_by_an_ambiguous_attempt_is_not_duplicated(connector, fake):
    ticket = connector.fetch_ticket("5158")
    # The note's first attempt times out after Zendesk stored it; the retry then meets 409.
    timed_out = []

    def time_out_once(body):
        if body["ticket"].get("comment", {}).get("body") == "Note." and not timed_out:
            timed_out.append(True)
            raise requests.ReadTimeout("read timed out")

    fake.after_ticket_update = time_out_once
    result = connector.apply(ticket, decision(**ESCALATE_TO_L2, public_reply="Reply.", internal_note="Note."))
    assert result.writes == 1  # the reply; the note was stored by the attempt that timed out
    assert [c["body"] for c in fake.comments["5158"]].count("Note.") == 1


def test_429_waits_exactly_retry_after_then_succeeds(connector, fake, sleeps):
    ticket = connector.fetch_ticket("5158")
    fake.fail_next("PUT", r"/api/v2/tickets/5158$", 429, headers={"Retry-After": "7"},
                   body={"error": "APIRateLimitExceeded", "description": "Number of allowed API requests per minute exceeded"})
    result = connector.apply(ticket, decision(**ESCALATE_TO_L2))
    assert sleeps == [7.0]
    assert result.writes == 1 and len(fake.put_bodies()) == 1


def test_a_long_retry_after_leaves_the_connector_at_once_without_sleeping(fake, matrix, sleeps):
    # A worker thread must not sleep through 30 s: the pipeline re-queues the ticket with that eta instead.
    connector = ZendeskConnector(zendesk_settings(), matrix, retry_policy=RetryPolicy(sleep=sleeps.append),
                                 rate_limiter=TokenBucket(10_000))
    ticket = connector.fetch_ticket("5158")
    fake.fail_next("PUT", r"/api/v2/tickets/5158$", 429, headers={"Retry-After": "30"})
    with pytest.raises(RateLimited) as raised:
        connector.apply(ticket, decision(**ESCALATE_TO_L2))
    assert raised.value.retry_after == 30.0
    assert sleeps == [] and len(fake.calls("PUT", "/api/v2/tickets/5158")) == 1 and fake.put_bodies() == []


class BrokenLimiter:
    def try_acquire(self) -> float:
        raise ValueError("a bug of ours, not a Zendesk answer")


def test_our_own_bug_propagates_instead_of_being_retried_as_transient(fake, matrix, sleeps):
    connector = ZendeskConnector(zendesk_settings(user_id="9000"), matrix, rate_limiter=BrokenLimiter(),
                                 retry_policy=RetryPolicy(attempts=3, sleep=sleeps.append))
    with pytest.raises(ValueError, match="a bug of ours"):
        connector.fetch_ticket("5158")
    assert sleeps == []


def test_a_2xx_body_that_is_not_json_is_transient(connector, fake, sleeps):
    fake.fail_next("GET", r"/api/v2/tickets/5158$", 200, times=3, body="<html>maintenance</html>")
    with pytest.raises(Transient, match="unreadable body"):
        connector.fetch_ticket("5158")
    assert len(sleeps) == 2


def test_zenpy_never_sleeps_on_429(connector, fake, sleeps, monkeypatch):
    import zenpy.lib.api

    monkeypatch.setattr(zenpy.lib.api, "sleep", lambda s: pytest.fail("zenpy slept on a 429"))
    fake.fail_next("GET", r"/api/v2/users/me", 429, headers={"Retry-After": "3"})
    assert connector.own_user_id() == "9000"
    assert sleeps == [3.0]
    client = connector.client.zenpy()
    assert client.users.ratelimit is None and client.users.ratelimit_budget is None


def test_html_error_page_is_transient_after_bounded_retries(connector, fake, sleeps):
    ticket = connector.fetch_ticket("5158")
    fake.fail_next("PUT", r"/api/v2/tickets/5158$", 502, times=3, content_type="text/html",
                   body="<html><body><h1>502 Bad Gateway</h1></body></html>")
    with pytest.raises(Transient) as raised:
        connector.apply(ticket, decision(**ESCALATE_TO_L2))
    assert not isinstance(raised.value, RateLimited)
    assert "<html" not in str(raised.value) and "502" in str(raised.value)
    assert len(sleeps) == 2  # three attempts, the policy's limit
    assert fake.put_bodies() == []


def test_timeout_and_connection_errors_are_transient(connector, fake, sleeps):
    fake.fail_next("GET", r"/api/v2/users/me", 0, times=3, error=requests.ConnectTimeout("connect timed out"))
    with pytest.raises(Transient, match="unreachable"):
        connector.own_user_id()
    fake.fail_next("GET", r"/api/v2/tickets/5158$", 0, error=requests.ConnectionError("reset by peer"))
    assert connector.fetch_ticket("5158").id == "5158"  # retried once, then fine


def test_401_is_unauthorized_without_any_secret(connector, fake):
    fake.fail_next("GET", r"/api/v2/tickets/5158$", 401, times=5, body={"error": "Couldn't authenticate you"})
    with pytest.raises(Unauthorized) as raised:
        connector.fetch_ticket("5158")
    message = str(raised.value)
    for secret in (TOKEN, f"{EMAIL}/token", "Authorization", "Basic "):
        assert secret not in message
    assert "401" in message and "/api/v2/tickets/5158" in message
    assert len(fake.calls("GET", "/api/v2/tickets/5158")) == 1  # not retried


def test_error_body_echoing_the_token_is_redacted(connector, fake):
    fake.fail_next("GET", r"/api/v2/tickets/5158$", 403, body={"error": "Forbidden", "description": f"token {TOKEN}"})
    with pytest.raises(Unauthorized) as raised:
        connector.fetch_ticket("5158")
    assert TOKEN not in str(raised.value)


def test_404_is_not_found(connector, fake):
    with pytest.raises(NotFound):
        connector.fetch_ticket("999999")


def test_422_is_permanent_with_zendesk_description(connector, fake):
    ticket = connector.fetch_ticket("5158")
    fake.fail_next("PUT", r"/api/v2/tickets/5158$", 422, body={
        "error": "RecordInvalid", "description": "Record validation errors",
        "details": {"group_id": [{"description": "Group: is not a valid group", "error": "InvalidValue"}]}})
    with pytest.raises(Permanent, match="Group: is not a valid group"):
        connector.apply(ticket, decision(**ESCALATE_TO_L2))


def test_client_side_budget_turns_into_a_retry_after_wait(fake, matrix, sleeps):
    now = [0.0]
    bucket = TokenBucket(60, clock=lambda: now[0])  # one request per second, burst 60
    bucket._tokens = 0.0
    connector = ZendeskConnector(zendesk_settings(user_id="9000"), matrix, rate_limiter=bucket,
                                 retry_policy=RetryPolicy(sleep=lambda s: (sleeps.append(s), now.__setitem__(0, now[0] + s))))
    connector.fetch_ticket("5158")
    assert sleeps and all(abs(s - 1.0) < 1e-9 for s in sleeps)


# ----------------------------------------------------------------------------------- catch-up scan
def test_changed_since_walks_the_cursor_export(connector, fake):
    seen = list(connector.changed_since("1795760000"))
    page1, page2 = fake.incremental_pages
    assert [ticket_id for ticket_id, _ in seen] == ["5101", "5158", "5160", "5158", "5170"]
    # Only the last ticket of a page advances the watermark: a crash mid-page replays the page.
    assert [mark for _, mark in seen] == ["1795760000", "1795760000", page1["after_cursor"],
                                          page1["after_cursor"], page2["after_cursor"]]
    first = fake.calls("GET", "/api/v2/incremental/tickets/cursor")[0].request.url
    assert "start_time=1795760000" in first


def test_changed_since_resumes_from_a_cursor(connector, fake):
    cursor = fake.incremental_pages[0]["after_cursor"]
    seen = list(connector.changed_since(cursor))
    assert [t for t, _ in seen] == ["5158", "5170"]


# ---------------------------------------------------------------------------------------- misc API
CREDENTIAL_SETTINGS = ("ZENDESK_SUBDOMAIN", "ZENDESK_BASE_URL", "ZENDESK_EMAIL", "ZENDESK_API_TOKEN",
                       "ZENDESK_OAUTH_TOKEN")


@pytest.fixture
def no_zendesk_env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no .env to pick credentials up from
    for name in CREDENTIAL_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_build_from_env_without_any_credential_is_none(no_zendesk_env, matrix):
    assert build_from_env(matrix) is None
    assert ZendeskSettings().describe().startswith("dry run")


@pytest.mark.parametrize("given, missing", [
    ({"ZENDESK_SUBDOMAIN": "acme", "ZENDESK_EMAIL": EMAIL}, "ZENDESK_API_TOKEN or ZENDESK_OAUTH_TOKEN"),
    ({"ZENDESK_SUBDOMAIN": "acme"}, "ZENDESK_EMAIL + ZENDESK_API_TOKEN, or ZENDESK_OAUTH_TOKEN"),
    ({"ZENDESK_SUBDOMAIN": "acme", "ZENDESK_API_TOKEN": TOKEN}, "ZENDESK_EMAIL"),
    ({"ZENDESK_EMAIL": EMAIL, "ZENDESK_API_TOKEN": TOKEN}, "ZENDESK_SUBDOMAIN or ZENDESK_BASE_URL"),
    ({"ZENDESK_OAUTH_TOKEN": TOKEN}, "ZENDESK_SUBDOMAIN or ZENDESK_BASE_URL"),
    ({"ZENDESK_SUBDOMAIN": "acme", "ZENDESK_EMAIL": EMAIL, "ZENDESK_API_TOKEN": " "}, "ZENDESK_API_TOKEN"),
])
def test_partial_credentials_fail_fast_naming_settings_not_values(no_zendesk_env, matrix, given, missing):
    for name, value in given.items():
        no_zendesk_env.setenv(name, value)
    with pytest.raises(ConfigurationError) as raised:
        build_from_env(matrix)
    message = str(raised.value)
    assert "Zendesk settings incomplete" in message and missing in message
    assert TOKEN not in message and EMAIL not in message
    [line] = check_remote(matrix)
    assert "Zendesk settings incomplete" in line and TOKEN not in line


def test_describe_for_the_start_up_banner(matrix):
    assert zendesk_settings().describe() == f"live as {EMAIL} on https://acme.zendesk.com"
    oauth = zendesk_settings(email=None, api_token=None, oauth_token=TOKEN, subdomain=None,
                          base_url="https://acme-sandbox.zendesk.com/")
    assert oauth.describe() == "live with an OAuth token on https://acme-sandbox.zendesk.com"
    assert TOKEN not in zendesk_settings().describe() and TOKEN not in oauth.describe()


def test_build_from_env_makes_no_network_call(monkeypatch, matrix, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZENDESK_BASE_URL", "https://acme-sandbox.zendesk.com/")
    monkeypatch.setenv("ZENDESK_OAUTH_TOKEN", "oauth-secret")
    monkeypatch.setenv("ZENDESK_REQUESTS_PER_MINUTE", "250")
    with responses.RequestsMock() as rsps:  # any request would fail: none registered
        connector = build_from_env(matrix)
        assert len(rsps.calls) == 0
    assert connector.client.base_url == "https://acme-sandbox.zendesk.com"
    assert connector.settings.requests_per_minute == 250
    assert "oauth-secret" not in repr(connector.settings)


def test_base_url_with_port_works_for_users_me(matrix):
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, "http://127.0.0.1:8089/api/v2/users/me", json={"user": {"id": 77, "role": "admin"}})
        connector = ZendeskConnector(zendesk_settings(subdomain=None, base_url="http://127.0.0.1:8089"), matrix,
                                     rate_limiter=TokenBucket(100))
        assert connector.own_user_id() == "77"


def _webhook(name: str) -> dict:
    from pathlib import Path

    return json.loads((Path(__file__).parent / "fixtures" / "zendesk" / name).read_text())


def test_snapshot_from_event_subscription_payload(matrix, vendor_dir):
    payload = json.loads((vendor_dir / "samples" / "zendesk-event__dust__ticket.priority_changed.json").read_text())
    payload["detail"]["tags"].append("ESC_L3")
    payload["detail"]["group_id"] = "360000200005"
    ticket = snapshot_from_webhook(payload, matrix)
    assert isinstance(ticket, Ticket)
    assert (ticket.id, ticket.priority, ticket.status, ticket.group) == ("5158", "urgent", "open", "senior_engineering")
    assert ticket.fields["level"] == "L3" and ticket.version_token == "2025-01-08T11:30:15Z"


def test_snapshot_from_every_webhook_fixture(matrix):
    for name in ("ticket_created.json", "ticket_status_changed.json", "trigger_ticket_created.json"):
        ticket = snapshot_from_webhook(_webhook(name), matrix)
        assert ticket is not None and ticket.id and ticket.status in ("new", "open", "pending", "on_hold", "solved", "closed")


def test_snapshot_from_trigger_payload(matrix, vendor_dir):
    payload = json.loads((vendor_dir / "samples" / "zendesk-trigger__zulip__ticket_create_update.json").read_text())
    ticket = snapshot_from_webhook(payload, matrix)
    assert (ticket.id, ticket.status, ticket.priority) == ("7", "open", "normal")
    assert ticket.tags == frozenset({"change_address", "help", "order"})
    assert snapshot_from_webhook({"unrelated": True}, matrix) is None


def test_check_remote_accepts_a_matching_account(connector, fake, matrix):
    assert check_remote(matrix, connector=connector) == []


def test_check_remote_names_each_missing_group_field_and_option(connector, fake, matrix):
    fake.groups = [g for g in fake.groups if g["id"] != 360000200004]
    fake.ticket_fields = [f for f in fake.ticket_fields if f["id"] != 360000100008]
    impact = next(f for f in fake.ticket_fields if f["id"] == 360000100002)
    impact["custom_field_options"] = [o for o in impact["custom_field_options"] if o["value"] != "impact_high"]
    errors = check_remote(matrix, connector=connector)
    assert errors == [
        "groups.security_team.zendesk: group 360000200004 does not exist in Zendesk",
        "fields.impact.zendesk.values.high: option 'impact_high' does not exist on ticket field 360000100002 "
        "(Business impact)",
        "fields.customer_contact.zendesk.custom_field: ticket field 360000100008 does not exist in Zendesk",
    ]


def test_check_remote_without_credentials_says_so(no_zendesk_env, matrix):
    [error] = check_remote(matrix)
    assert "no credentials" in error


def test_check_remote_needs_an_option_for_every_level_on_a_level_dropdown(connector, fake):
    data = load_matrix("matrix_config/examples/enterprise.yaml").matrix.model_dump(mode="json")
    data["fields"]["level"]["zendesk"] = {"custom_field": 360000100009, "values": {"L1": "level_1"}}
    fake.ticket_fields.append({"id": 360000100009, "type": "tagger", "title": "Escalation level", "active": True,
                               "custom_field_options": [{"id": 1, "name": "Level 1", "value": "level_1"},
                                                        {"id": 2, "name": "L2", "value": "L2"}]})
    errors = check_remote(Matrix.model_validate(data), connector=connector)
    assert [e for e in errors if e.startswith("fields.level")] == [
        "fields.level.zendesk: level L3 has no option on ticket field 360000100009 (Escalation level); "
        "add it or map it under `values`",
        "fields.level.zendesk: level L4 has no option on ticket field 360000100009 (Escalation level); "
        "add it or map it under `values`",
    ]


@pytest.mark.parametrize("status, headers, expected", [
    (429, {"Retry-After": "30"}, RateLimited),
    (503, {"Retry-After": "10"}, RateLimited),
    (503, {}, Transient),
    (500, {}, Transient),
    (401, {}, Unauthorized),
    (403, {}, Unauthorized),
    (404, {}, NotFound),
    (409, {}, Conflict),
    (400, {}, Permanent),
    (422, {}, Permanent),
])
def test_one_mapping_from_zendesk_status_to_error_type(status, headers, expected):
    from connectors.zendesk.client import error_for_response

    response = requests.Response()
    response.status_code = status
    response.headers.update({"Content-Type": "application/json", **headers})
    response._content = b'{"error": "Something", "description": "Zendesk says no"}'
    response.request = requests.Request("PUT", f"{BASE}/api/v2/tickets/1?secret=x").prepare()
    error = error_for_response(response)
    assert type(error) is expected
    assert "secret=x" not in str(error)
    if expected is RateLimited:
        assert error.retry_after == float(headers["Retry-After"])


def test_list_groups_requests_are_still_checked_against_the_spec():
    # The spec's bogus required `user_id` path parameter is patched out of List Groups (see openapi_check);
    # its real query parameter keeps being validated.
    validate_request("zendesk", "GET", "/api/v2/groups", query={"exclude_deleted": "true"})
    with pytest.raises(AssertionError, match="exclude_deleted"):
        validate_request("zendesk", "GET", "/api/v2/groups", query={"exclude_deleted": "sometimes"})


# ------------------------------------------------------------------- dry run: acknowledgements from webhooks
def _comment_event(public=True, author_id="8447388090495", is_staff=True, time="2025-01-08T14:25:30.123456789Z"):
    payload = _webhook("ticket_comment_added.json")
    payload["event"]["comment"]["is_public"] = public
    payload["event"]["comment"]["author"].update(id=author_id, is_staff=is_staff)
    payload["time"] = time
    return payload


def test_a_public_agent_comment_event_is_an_acknowledgement(matrix):
    ticket = snapshot_from_webhook(_comment_event(), matrix)
    at = datetime(2025, 1, 8, 14, 25, 30, 123456, tzinfo=timezone.utc)
    assert (ticket.id, ticket.first_public_agent_reply_at, ticket.last_public_agent_reply_at) == ("5158", at, at)


@pytest.mark.parametrize("change", [
    dict(public=False),  # an internal note is not an answer to the customer
    dict(author_id="8447388090494"),  # the requester
    dict(is_staff=False),  # an end user (e.g. a CC)
])
def test_comments_that_do_not_acknowledge(matrix, change):
    ticket = snapshot_from_webhook(_comment_event(**change), matrix)
    assert ticket.first_public_agent_reply_at is None and ticket.last_public_agent_reply_at is None
    assert snapshot_from_webhook(_webhook("ticket_comment_added_internal.json"), matrix).last_public_agent_reply_at is None


def test_stored_payloads_fold_into_first_and_last_reply(matrix):
    payloads = [
        _webhook("ticket_created.json"),
        _comment_event(time="2025-01-08T11:00:00Z"),
        _webhook("ticket_comment_added_internal.json"),
        _comment_event(author_id="8447388090494", time="2025-01-08T12:00:00Z"),  # the customer answers
        _comment_event(time="2025-01-08T13:00:00.5Z"),
        _webhook("ticket_status_changed.json"),
    ]
    ticket = None
    for payload in payloads:
        ticket = snapshot_from_webhook(payload, matrix, previous=ticket)
    assert ticket.first_public_agent_reply_at == datetime(2025, 1, 8, 11, tzinfo=timezone.utc)
    assert ticket.last_public_agent_reply_at == datetime(2025, 1, 8, 13, 0, 0, 500000, tzinfo=timezone.utc)
    # Everything else comes from the latest payload.
    assert ticket.status == snapshot_from_webhook(payloads[-1], matrix).status
    assert snapshot_from_webhook({"unrelated": True}, matrix, previous=ticket) is ticket
    assert snapshot_from_webhook({"unrelated": True}, matrix) is None
    other = _comment_event()
    other["detail"]["id"] = "9999"
    assert snapshot_from_webhook(other, matrix, previous=ticket).first_public_agent_reply_at.hour == 14
