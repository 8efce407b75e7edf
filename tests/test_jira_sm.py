"""Jira Service Management connector: the requests it sends (each validated against the vendor specs),
how it reads issues, and how vendor errors reach the core."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
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
from connectors.jira.connector import JiraConnector, build_from_env
from connectors.jira.mapping import encode_field_value, neutral_status
from connectors.jira.remote import check_remote
from connectors.jira.settings import JiraSettings, StatusConfig
from connectors.jira.webhook_snapshot import snapshot_from_webhook
from integration.model import Decision, Ticket
from matrix_config.schema import Matrix
from tests.support.jira_helpers import (
    EMAIL,
    ENV,
    SITE,
    TOKEN,
    SleepRecorder,
    body_of,
    enterprise_matrix,
    make_settings,
    query_of,
    recorded,
    register_fetch,
    validated_jira_http,
)

VENDOR_SAMPLES = Path(__file__).resolve().parent / "vendor" / "samples"
JIRA_WEBHOOK_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "jira"
ISSUE_URL = f"{SITE}/rest/api/3/issue/SUP-7"
COMMENT_URL = f"{SITE}/rest/servicedeskapi/request/SUP-7/comment"
BERLIN = timezone(timedelta(hours=1))


@pytest.fixture
def http():
    with validated_jira_http() as rsps:
        yield rsps


@pytest.fixture
def sleeps():
    return SleepRecorder()


@pytest.fixture
def connector(sleeps):
    return JiraConnector(make_settings(), enterprise_matrix(), retry_policy=sleeps.policy())


def snapshot(**changes) -> Ticket:
    """SUP-7 as fetch_ticket reads it from the recorded responses (L1, Medium, frontline)."""
    base = Ticket(
        vendor="jira", id="SUP-7", subject="Checkout API returns 500 for all EU customers", status="open",
        priority="normal", tags=frozenset({"tier-enterprise", "checkout"}), group="frontline",
        fields={"level": "L1", "customer_tier": "enterprise", "recent_changes": "Deployed v2.14 at 08:40."},
    )
    return base.with_(**changes)


def decision(**changes) -> Decision:
    return Decision(vendor="jira", ticket_id="SUP-7", matrix_version="abc123",
                    decided_at=datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc), **changes)


# ------------------------------------------------------------------------------------ construction
def test_client_is_built_without_a_request_and_never_retries_by_itself(http, monkeypatch):
    import jira.resilientsession as resilient

    naps: list[float] = []
    monkeypatch.setattr(resilient.time, "sleep", naps.append)
    connector = JiraConnector(make_settings(), enterprise_matrix())
    assert len(http.calls) == 0  # no serverInfo, no session check, no update check
    assert isinstance(connector, Connector)

    # The raw client, without our retry layer: a 503 (which ResilientSession would retry) is sent once.
    http.get(ISSUE_URL, status=503, json={"errorMessages": ["Service unavailable"]})
    from jira.exceptions import JIRAError

    with pytest.raises(JIRAError):
        connector.client.jira.issue("SUP-7")
    assert len(http.calls) == 1
    assert naps == []


def test_build_from_env_without_credentials_is_dry_run(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(Path(__file__).parent)  # no .env to pick credentials up from
    assert build_from_env(enterprise_matrix()) is None
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    assert isinstance(build_from_env(enterprise_matrix()), JiraConnector)
    assert make_settings().describe() == f"live as {EMAIL} on {SITE}"


@pytest.mark.parametrize("given, missing", [
    ({"JIRA_URL": SITE}, "JIRA_EMAIL, JIRA_API_TOKEN"),
    ({"JIRA_URL": SITE, "JIRA_EMAIL": EMAIL}, "JIRA_API_TOKEN"),
    ({"JIRA_API_TOKEN": TOKEN}, "JIRA_URL, JIRA_EMAIL"),
    ({"JIRA_EMAIL": EMAIL, "JIRA_API_TOKEN": TOKEN}, "JIRA_URL"),
    ({"JIRA_URL": SITE, "JIRA_EMAIL": EMAIL, "JIRA_API_TOKEN": "  "}, "JIRA_API_TOKEN"),
])
def test_partial_credentials_fail_fast_naming_settings_not_values(monkeypatch, given, missing):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(Path(__file__).parent)
    for name, value in given.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as raised:
        build_from_env(enterprise_matrix())
    message = str(raised.value)
    assert f"missing {missing}." in message
    assert TOKEN not in message and EMAIL not in message and SITE not in message
    [line] = check_remote(enterprise_matrix())
    assert line.startswith("jira: Jira settings incomplete") and TOKEN not in line


def test_describe_never_shows_the_token():
    assert TOKEN not in make_settings().describe()
    assert JiraSettings(_env_file=None).describe().startswith("dry run")
    assert JiraSettings(_env_file=None, JIRA_URL=SITE).describe() == \
        "incomplete settings (missing JIRA_EMAIL, JIRA_API_TOKEN)"


# ------------------------------------------------------------------------------------ fetch
def test_fetch_ticket_normalizes_a_jsm_request(http, connector):
    register_fetch(http)
    ticket = connector.fetch_ticket("SUP-7")

    assert ticket.vendor == "jira" and ticket.id == "SUP-7"
    assert ticket.subject == "Checkout API returns 500 for all EU customers"
    assert ticket.status == "open"  # "In Progress", category indeterminate
    assert ticket.priority == "normal"  # Jira "Medium" via vendors.jira.priorities
    assert ticket.tags == {"tier-enterprise", "checkout"}
    assert ticket.organization == "Globex Corporation"
    assert ticket.group == "frontline"  # group picker "support-frontline"
    assert ticket.requester.email == "dana@customer.example"
    assert ticket.level == "L1"
    assert ticket.fields["issue_type"] == "outage"
    assert ticket.fields["customer_tier"] == "enterprise"  # from the label tier-enterprise
    assert ticket.fields["environment"] == "production"
    assert ticket.fields["account_id"] == "ACC-4242"
    assert ticket.fields["affected_users"] == 250
    assert ticket.fields["recent_changes"] == "Deployed v2.14 at 08:40.\nRotated the DB password."  # ADF -> text
    assert ticket.fields["incident_commander"] is None
    assert ticket.fields["request_type"] == "Report a system problem"
    assert ticket.updated_at == datetime(2026, 11, 27, 10, 15, 30, tzinfo=BERLIN)
    assert ticket.url == f"{SITE}/browse/SUP-7"
    # Public replies: the customer's, the service's own (09:01) and a portal participant's do not count.
    assert ticket.first_public_agent_reply_at == datetime(2026, 11, 27, 9, 42, tzinfo=BERLIN)
    assert ticket.last_public_agent_reply_at == datetime(2026, 11, 27, 10, 10, tzinfo=BERLIN)

    issue_query = query_of(http.calls[0])
    assert issue_query["expand"] == ["schema,changelog"]  # the level's history comes with the one issue GET
    assert {"customfield_10108", "customfield_10001", "customfield_10002", "labels"} <= set(
        issue_query["fields"][0].split(","))
    comment_query = query_of(http.calls[1])
    assert comment_query["public"] == ["true"] and comment_query["internal"] == ["false"]


def test_fetch_of_a_missing_issue_raises_not_found_with_jiras_reason(http, connector):
    http.get(ISSUE_URL, status=404, json={
        "errorMessages": ["Issue does not exist or you do not have permission to see it."], "errors": {}})
    with pytest.raises(NotFound, match="Issue does not exist"):
        connector.fetch_ticket("SUP-7")
    assert len(http.calls) == 1  # not retried


@pytest.mark.parametrize("name, category, expected", [
    ("Waiting for support", "new", "new"),
    ("In Progress", "indeterminate", "open"),
    ("Waiting for customer", "indeterminate", "pending"),
    ("Pending", "indeterminate", "on_hold"),
    ("Resolved", "done", "solved"),
    ("Closed", "done", "closed"),
    ("Canceled", "done", "closed"),
])
def test_statuses_map_by_category_and_configured_names(name, category, expected):
    status = {"name": name, "statusCategory": {"key": category}}
    assert neutral_status(status, StatusConfig()) == expected


def test_status_names_are_configurable():
    settings = make_settings(JIRA_PENDING_STATUSES="Awaiting reply, Waiting for customer")
    status = {"name": "Awaiting Reply", "statusCategory": {"key": "indeterminate"}}
    assert neutral_status(status, settings.status_config()) == "pending"


# ------------------------------------------------------------------------------------ apply
def test_field_edit_is_one_put_with_priority_group_level_and_labels(http, connector):
    http.get(f"{SITE}/rest/api/3/field", json=recorded("fields.json"))  # the level field's type, read once
    http.put(ISSUE_URL, status=204)
    result = connector.apply(snapshot(), decision(
        priority="high", owner_group="product_specialists", add_tags=("escalated",), remove_tags=("checkout",),
        field_updates={"level": "L2", "customer_tier": "premium"}))

    assert [(c.request.method, c.request.url.split("?")[0]) for c in http.calls] == [
        ("GET", f"{SITE}/rest/api/3/field"), ("PUT", ISSUE_URL)]
    assert body_of(http.calls[1]) == {
        "fields": {
            "priority": {"name": "High"},
            "customfield_10001": {"name": "support-l2"},
            "customfield_10108": {"value": "L2"},
        },
        "update": {"labels": [{"add": "escalated"}, {"add": "tier-premium"},
                              {"remove": "checkout"}, {"remove": "tier-enterprise"}]},
    }
    assert result.writes == 1
    assert result.requests == [{"method": "PUT", "path": "/rest/api/3/issue/SUP-7", "status": 204}]


def test_after_fetch_the_edit_needs_no_extra_read(http, connector):
    register_fetch(http)
    http.put(ISSUE_URL, status=204)
    ticket = connector.fetch_ticket("SUP-7")
    connector.apply(ticket, decision(field_updates={"level": "L2", "recent_changes": "Rolled back v2.14"}))
    assert [c.request.method for c in http.calls] == ["GET", "GET", "GET", "GET", "PUT"]
    # API v3: a multi-line text field takes ADF.
    assert body_of(http.calls[-1]) == {"fields": {
        "customfield_10108": {"value": "L2"},
        "customfield_10104": {"type": "doc", "version": 1, "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": "Rolled back v2.14"}]}]},
    }}


def test_api_v2_edits_under_rest_api_2_with_plain_text(http, sleeps):
    connector = JiraConnector(make_settings(JIRA_API_VERSION="2"), enterprise_matrix(), retry_policy=sleeps.policy())
    http.get(f"{SITE}/rest/api/2/field", json=recorded("fields.json"))
    http.put(f"{SITE}/rest/api/2/issue/SUP-7", status=204)
    connector.apply(snapshot(), decision(field_updates={"recent_changes": "Rolled back v2.14"}))
    assert body_of(http.calls[-1]) == {"fields": {"customfield_10104": "Rolled back v2.14"}}


@pytest.mark.parametrize("kind, expected", [
    ("group", {"name": "support-l2"}),
    ("select", {"value": "support-l2"}),
    ("team", "support-l2"),
])
def test_owner_group_is_written_through_the_configured_field_kind(http, sleeps, kind, expected):
    data = enterprise_matrix().model_dump(mode="json")
    data["vendors"]["jira"]["group_field_kind"] = kind
    connector = JiraConnector(make_settings(), Matrix.model_validate(data), retry_policy=sleeps.policy())
    http.put(ISSUE_URL, status=204)
    connector.apply(snapshot(), decision(owner_group="product_specialists"))
    assert body_of(http.calls[0]) == {"fields": {"customfield_10001": expected}}


def test_customer_reply_is_a_public_jsm_comment(http, connector):
    http.post(COMMENT_URL, status=201, json={"id": "20010", "body": "Escalated", "public": True})
    result = connector.apply(snapshot(), decision(public_reply="Your request is with our specialists."))
    assert len(http.calls) == 1
    assert body_of(http.calls[0]) == {"body": "Your request is with our specialists.", "public": True}
    assert result.writes == 1


def test_internal_note_is_a_private_jsm_comment(http, connector):
    http.post(COMMENT_URL, status=201, json={"id": "20011", "body": "note", "public": False})
    result = connector.apply(snapshot(), decision(internal_note="Escalated from L1 to L2 by rule critical-impact."))
    assert body_of(http.calls[0]) == {"body": "Escalated from L1 to L2 by rule critical-impact.", "public": False}
    assert result.writes == 1


def test_full_decision_is_edit_then_reply_then_note(http, connector):
    http.put(ISSUE_URL, status=204)
    http.post(COMMENT_URL, status=201, json={"id": "1"})
    http.post(COMMENT_URL, status=201, json={"id": "2"})
    result = connector.apply(snapshot(), decision(priority="high", public_reply="reply", internal_note="note"))
    assert [(c.request.method, body_of(c).get("public")) for c in http.calls] == [
        ("PUT", None), ("POST", True), ("POST", False)]
    assert result.writes == 3


def test_a_decision_the_ticket_already_reflects_writes_nothing(http, connector):
    # http registers nothing: any request would fail the test.
    already = decision(priority="normal", owner_group="frontline", add_tags=("checkout",), remove_tags=("gone",),
                       field_updates={"level": "L1", "customer_tier": "enterprise"})
    assert connector.apply(snapshot(), already).writes == 0
    assert connector.apply(snapshot(), decision()).writes == 0
    assert len(http.calls) == 0


# ------------------------------------------------------------------------------------ errors and retries
def test_429_waits_retry_after_then_succeeds(http, connector, sleeps):
    http.put(ISSUE_URL, status=429, headers={"Retry-After": "7"}, json={"errorMessages": ["Rate limit exceeded"]})
    http.put(ISSUE_URL, status=204)
    result = connector.apply(snapshot(), decision(priority="high"))
    assert sleeps.waits == [7.0]
    assert len(http.calls) == 2 and result.writes == 1


def test_a_long_retry_after_leaves_the_connector_at_once_without_sleeping(http, connector, sleeps):
    # A worker thread must not sleep through 30 s: the pipeline re-queues the ticket with that eta instead.
    http.put(ISSUE_URL, status=429, headers={"Retry-After": "30"}, json={"errorMessages": ["Rate limit exceeded"]})
    with pytest.raises(RateLimited) as caught:
        connector.apply(snapshot(), decision(priority="high"))
    assert caught.value.retry_after == 30.0 and sleeps.waits == [] and len(http.calls) == 1


def test_our_own_bug_propagates_instead_of_being_retried_as_transient(connector, sleeps, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("a bug of ours, not a Jira answer")

    monkeypatch.setattr(connector.client.session, "request", broken)
    with pytest.raises(ValueError, match="a bug of ours"):
        connector.apply(snapshot(), decision(priority="high"))
    assert sleeps.waits == []


def test_a_2xx_body_that_is_not_json_is_transient(http, sleeps):
    connector = JiraConnector(make_settings(), enterprise_matrix(), retry_policy=sleeps.policy(attempts=2))
    http.get(COMMENT_URL, body="<html>maintenance</html>", content_type="application/json")
    with pytest.raises(Transient, match="unreadable response"):
        connector.public_comments("SUP-7")


def test_a_rate_limited_reply_is_retried_because_jira_did_not_post_it(http, connector, sleeps):
    http.post(COMMENT_URL, status=429, headers={"Retry-After": "3"})
    http.post(COMMENT_URL, status=201, json={"id": "1"})
    connector.apply(snapshot(), decision(public_reply="hello"))
    assert sleeps.waits == [3.0] and len(http.calls) == 2


def test_a_reply_that_failed_with_500_is_not_repeated_in_process(http, connector, sleeps):
    # Jira may have stored the comment before failing; repeating the POST could send the customer two replies.
    http.post(COMMENT_URL, status=500, json={"errorMessage": "Internal server error"})
    with pytest.raises(Transient):
        connector.apply(snapshot(), decision(public_reply="hello"))
    assert len(http.calls) == 1 and sleeps.waits == []


def test_503_with_retry_after_is_rate_limited_and_5xx_is_transient(http, sleeps):
    connector = JiraConnector(make_settings(), enterprise_matrix(), retry_policy=sleeps.policy(attempts=1))
    http.get(ISSUE_URL, status=503, headers={"Retry-After": "12"})
    with pytest.raises(RateLimited) as caught:
        connector.fetch_ticket("SUP-7")
    assert caught.value.retry_after == 12.0
    http.get(ISSUE_URL, status=502)
    with pytest.raises(Transient) as caught:
        connector.fetch_ticket("SUP-7")
    assert not isinstance(caught.value, RateLimited)


def test_401_is_unauthorized_and_the_message_carries_no_secret(http, connector):
    http.get(ISSUE_URL, status=401, body=f"Client must be authenticated ({EMAIL})")
    with pytest.raises(Unauthorized) as caught:
        connector.fetch_ticket("SUP-7")
    message = str(caught.value)
    assert http.calls[0].request.headers["Authorization"].startswith("Basic ")  # credentials were sent
    for secret in (TOKEN, EMAIL, "Authorization", "Basic "):
        assert secret not in message
    assert "401" in message and caught.value.__cause__ is None and len(http.calls) == 1


def test_403_is_unauthorized(http, connector):
    http.post(COMMENT_URL, status=403, json={"errorMessage": "You do not have permission"})
    with pytest.raises(Unauthorized):
        connector.apply(snapshot(), decision(internal_note="note"))


def test_400_is_permanent_with_jiras_field_errors(http, connector):
    http.put(ISSUE_URL, status=400, json={"errorMessages": [], "errors": {
        "priority": "The priority selected is invalid."}})
    with pytest.raises(Permanent, match="priority: The priority selected is invalid"):
        connector.apply(snapshot(), decision(priority="high"))
    assert len(http.calls) == 1


def test_409_is_conflict(http, connector):
    http.put(ISSUE_URL, status=409, json={"errorMessages": ["Issue was modified"]})
    with pytest.raises(Conflict):
        connector.apply(snapshot(), decision(priority="high"))


def test_connection_failure_is_transient_and_retried(http, connector, sleeps):
    import requests

    http.get(ISSUE_URL, body=requests.ConnectionError("reset by peer"))
    register_fetch(http)
    ticket = connector.fetch_ticket("SUP-7")
    assert ticket.id == "SUP-7" and len(sleeps.waits) == 1


# ------------------------------------------------------------------------------------ identity, catch-up
def test_own_user_id_is_read_once_from_myself(http, connector):
    http.get(f"{SITE}/rest/api/3/myself", json=recorded("myself.json"))
    assert connector.own_user_id() == "712020:0e3c1b7a-2d4f-4a5b-9c8d-7e6f5a4b3c2d"
    assert connector.own_user_id() == "712020:0e3c1b7a-2d4f-4a5b-9c8d-7e6f5a4b3c2d"
    assert len(http.calls) == 1


def test_configured_account_id_needs_no_request(http, sleeps):
    connector = JiraConnector(make_settings(JIRA_ACCOUNT_ID="acc-1"), enterprise_matrix(), retry_policy=sleeps.policy())
    assert connector.own_user_id() == "acc-1"
    assert len(http.calls) == 0


def test_changed_since_pages_through_jql_in_the_users_time_zone(http, connector):
    http.get(f"{SITE}/rest/api/3/myself", json=recorded("myself.json"))  # timeZone Europe/Berlin
    first = http.get(f"{SITE}/rest/api/3/search/jql", json=recorded("search_changed_page1.json"),
                     match=[responses.matchers.query_param_matcher({"maxResults": "100"}, strict_match=False)])
    http.get(f"{SITE}/rest/api/3/search/jql", json=recorded("search_changed_page2.json"),
             match=[responses.matchers.query_param_matcher({"nextPageToken": "CAEaAggD"}, strict_match=False)])
    first.match = [lambda request: ("nextPageToken" not in request.url, "first page")]

    seen = list(connector.changed_since("2026-11-27T07:00:30+00:00"))

    assert seen == [
        ("SUP-3", "2026-11-27T07:01:00+00:00"),
        ("SUP-7", "2026-11-27T09:15:30+00:00"),
        ("OPS-2", "2026-11-27T10:45:10+00:00"),
    ]
    query = query_of(http.calls[1])
    assert query["jql"] == ['project in ("SUP", "OPS") AND updated >= "2026/11/27 08:00" ORDER BY updated ASC']
    assert query["fields"] == ["updated"]


# ------------------------------------------------------------------------------------ webhooks
def test_snapshot_from_the_real_webhook_sample():
    payload = json.loads((VENDOR_SAMPLES / "jira-cloud__mattermost__webhook-issue-updated-raised-priority.json")
                         .read_text())
    ticket = snapshot_from_webhook(payload, enterprise_matrix())
    assert ticket is not None
    assert ticket.id == payload["issue"]["key"]
    assert ticket.priority == "high"  # Jira "High"
    assert ticket.subject == payload["issue"]["fields"]["summary"]
    assert ticket.first_public_agent_reply_at is None  # a webhook never proves an acknowledgement


def test_snapshot_from_the_many_fields_sample_reads_status_and_labels():
    payload = json.loads((VENDOR_SAMPLES / "jira-cloud__mattermost__webhook-cloud-issue-created-many-fields.json")
                         .read_text())
    ticket = snapshot_from_webhook(payload, enterprise_matrix())
    assert ticket.id == "KT-22" and ticket.status == "new" and ticket.tags == {"Label1", "Label2"}


def test_snapshot_needs_an_issue():
    assert snapshot_from_webhook({"webhookEvent": "jira:issue_updated"}, enterprise_matrix()) is None
    assert snapshot_from_webhook({"issueKey": "SUP-7", "event": "issue_updated"}, enterprise_matrix()) is None


def test_snapshot_from_the_team_webhook_fixtures():
    paths = sorted(JIRA_WEBHOOK_FIXTURES.glob("issue_*.json"))
    assert paths, f"no webhook fixtures in {JIRA_WEBHOOK_FIXTURES}"
    for path in paths:
        payload = json.loads(path.read_text())
        ticket = snapshot_from_webhook(payload, enterprise_matrix())
        if isinstance(payload.get("issue"), dict) and payload["issue"].get("fields"):
            assert ticket is not None and ticket.id == payload["issue"]["key"], path.name


# ------------------------------------------------------------------------------------ values
def test_field_values_take_the_shape_of_their_type():
    assert encode_field_value("L2", {"type": "option"}) == {"value": "L2"}
    assert encode_field_value(["a", "b"], {"type": "array", "items": "option"}) == [{"value": "a"}, {"value": "b"}]
    assert encode_field_value("150", {"type": "number"}) == 150
    assert encode_field_value("x", {"type": "string", "custom": "x:textfield"}, 3) == "x"
    assert encode_field_value("x", {"type": "string", "custom": "x:textarea"}, 2) == "x"
    assert encode_field_value("acc", {"type": "user"}) == {"accountId": "acc"}
    assert encode_field_value(None, {"type": "option"}) is None


# ------------------------------------------------------------------------------------ remote validation
def test_check_remote_names_each_missing_item(http, monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    data = enterprise_matrix().model_dump(mode="json")
    data["vendors"]["jira"]["priorities"]["urgent"] = "Blocker"
    fields = [f for f in recorded("fields.json") if f["id"] != "customfield_10107"]
    http.get(f"{SITE}/rest/api/3/priority/search", json=recorded("priorities.json"))
    http.get(f"{SITE}/rest/api/3/field", json=fields)
    http.get(f"{SITE}/rest/api/3/field/customfield_10108/context", json=recorded("field_contexts.json"))
    http.get(f"{SITE}/rest/api/3/field/customfield_10108/context/10208/option", json=recorded("level_options.json"))
    http.get(f"{SITE}/rest/api/3/group/bulk", json=recorded("groups_bulk.json"))
    http.get(f"{SITE}/rest/api/3/project/OPS", json=recorded("project_OPS.json"))
    http.get(f"{SITE}/rest/api/3/issueLinkType", json=recorded("issue_link_types.json"))

    problems = check_remote(Matrix.model_validate(data))

    assert problems == [
        "vendors.jira.priorities.urgent: Jira has no priority named 'Blocker'",
        "fields.customer_contact.jira.field: Jira has no field 'customfield_10107'",
        "fields.level.jira: field customfield_10108 has no option 'L4'",
        "groups.leadership.jira: Jira has no group 'support-leadership'",
    ]
    assert sorted(query_of(http.calls[-1])["groupName"]) == sorted(
        {g.jira for g in enterprise_matrix().groups.values()})


def test_check_remote_stops_with_one_line_on_rejected_credentials(http, monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    http.get(f"{SITE}/rest/api/3/priority/search", status=401)
    assert check_remote(enterprise_matrix()) == [
        "jira: remote validation stopped: jira GET /rest/api/3/priority/search: HTTP 401: credentials rejected or "
        "not permitted (check JIRA_EMAIL / JIRA_API_TOKEN and the API user's project permissions)"]


def test_check_remote_without_credentials_says_what_to_set(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(Path(__file__).parent)
    assert check_remote(enterprise_matrix()) == [
        "jira: set JIRA_URL, JIRA_EMAIL and JIRA_API_TOKEN to validate against Jira"]


def _register_remote_basics(http, fields=None):
    options = recorded("level_options.json")
    options["values"].append({"id": "10304", "value": "L4", "disabled": False})
    http.get(f"{SITE}/rest/api/3/priority/search", json=recorded("priorities.json"))
    http.get(f"{SITE}/rest/api/3/field", json=fields if fields is not None else recorded("fields.json"))
    http.get(f"{SITE}/rest/api/3/field/customfield_10108/context", json=recorded("field_contexts.json"))
    http.get(f"{SITE}/rest/api/3/field/customfield_10108/context/10208/option", json=options)
    http.get(f"{SITE}/rest/api/3/project/OPS", json=recorded("project_OPS.json"))
    http.get(f"{SITE}/rest/api/3/issueLinkType", json=recorded("issue_link_types.json"))


def _matrix_with_group_field(http, kind: str, schema_type: str, custom_type: str) -> Matrix:
    """The example matrix with `group_field_kind: kind`; the site's group field (customfield_10001) gets that
    schema, and the reads every remote check makes are registered."""
    data = enterprise_matrix().model_dump(mode="json")
    data["vendors"]["jira"]["group_field_kind"] = kind
    fields = recorded("fields.json")
    for f in fields:
        if f["id"] == "customfield_10001":
            f["schema"] = {"type": schema_type, "customId": 10001,
                           "custom": f"com.atlassian.jira.plugin.system.customfieldtypes:{custom_type}"}
    _register_remote_basics(http, fields)
    return Matrix.model_validate(data)


def test_check_remote_tries_each_team_id_in_jql(http, sleeps):
    matrix = _matrix_with_group_field(http, "team", "team", "atlassian-team")

    def search(request):
        jql = query_of_request(request)["jql"][0]
        if '"eng-senior"' in jql:
            return 400, {}, json.dumps({"errorMessages": ["The value 'eng-senior' does not exist for the field 'Team'."],
                                        "warningMessages": []})
        return 200, {}, json.dumps({"isLast": True, "issues": []})

    http.add_callback(responses.GET, f"{SITE}/rest/api/3/search/jql", callback=search)
    connector = JiraConnector(make_settings(), matrix, retry_policy=sleeps.policy())

    assert check_remote(matrix, connector=connector) == [
        "groups.senior_engineering.jira: team 'eng-senior' not accepted by Jira (jira GET /rest/api/3/search/jql: "
        "HTTP 400: The value 'eng-senior' does not exist for the field 'Team'.)"]
    searched = [query_of_request(c.request)["jql"][0] for c in http.calls if "search/jql" in c.request.url]
    assert searched[0] == 'cf[10001] = "support-frontline"' and len(searched) == len(matrix.groups)


def test_check_remote_checks_select_options_for_a_select_group_field(http, sleeps):
    matrix = _matrix_with_group_field(http, "select", "option", "select")
    http.get(f"{SITE}/rest/api/3/field/customfield_10001/context", json=recorded("field_contexts.json"))
    http.get(f"{SITE}/rest/api/3/field/customfield_10001/context/10208/option", json={
        "isLast": True, "maxResults": 50, "startAt": 0, "total": 5,
        "values": [{"id": str(10500 + i), "value": g.jira, "disabled": False}
                   for i, g in enumerate(matrix.groups.values()) if g.jira != "support-billing"]})
    connector = JiraConnector(make_settings(), matrix, retry_policy=sleeps.policy())
    assert check_remote(matrix, connector=connector) == [
        "groups.billing_desk.jira: field customfield_10001 has no option 'support-billing'"]


def query_of_request(request):
    from urllib.parse import parse_qs, urlsplit

    return parse_qs(urlsplit(request.url).query)


def test_a_caller_supplied_session_gets_the_credentials_and_sends_once(http, sleeps):
    import requests

    session = requests.Session()
    connector = JiraConnector(make_settings(), enterprise_matrix(), session=session,
                              retry_policy=sleeps.policy(attempts=1))
    http.put(ISSUE_URL, status=503)
    with pytest.raises(Transient):
        connector.apply(snapshot(), decision(priority="high"))
    assert len(http.calls) == 1
    assert http.calls[0].request.headers["Authorization"].startswith("Basic ")
    assert connector.client.jira._session is session


def test_bot_and_automation_replies_are_not_acknowledgements():
    from connectors.jira.mapping import AUTOMATION_ACCOUNT_ID, reply_times

    def public(author, minute):
        return {"public": True, "author": {"accountId": author},
                "created": {"epochMillis": int(datetime(2026, 11, 27, 9, minute, tzinfo=timezone.utc).timestamp() * 1000)}}

    comments = [public(AUTOMATION_ACCOUNT_ID, 1), public("chatbot-1", 2), public("agent-1", 3),
                {**public("agent-2", 4), "public": False}]
    first, last = reply_times(comments, "customer-1", "service-1", frozenset({"chatbot-1"}))
    assert first == last == datetime(2026, 11, 27, 9, 3, tzinfo=timezone.utc)
    assert make_settings(JIRA_NON_AGENT_ACCOUNTS="chatbot-1, bot-2").non_agent_accounts_csv
    from connectors.jira.settings import NormalizeOptions

    assert NormalizeOptions.from_settings(make_settings(JIRA_NON_AGENT_ACCOUNTS="chatbot-1, bot-2")).non_agents == {
        "chatbot-1", "bot-2"}


# ------------------------------------------------------------------- dry run: acknowledgements from webhooks
AGENT = "5b10ac8d82e05b22cc7d4ef5"


def _comment_webhook(author=AGENT, public=True, created="2019-02-15T19:11:18.321-0800"):
    payload = json.loads((JIRA_WEBHOOK_FIXTURES / "comment_created.json").read_text())
    payload["comment"]["author"]["accountId"] = author
    payload["comment"]["jsdPublic"] = public
    payload["comment"]["created"] = created
    return payload


def test_a_public_agent_comment_webhook_is_an_acknowledgement():
    ticket = snapshot_from_webhook(_comment_webhook(), enterprise_matrix())
    at = datetime(2019, 2, 16, 3, 11, 18, 321000, tzinfo=timezone.utc)
    assert (ticket.id, ticket.first_public_agent_reply_at, ticket.last_public_agent_reply_at) == ("TES-41", at, at)


@pytest.mark.parametrize("change", [
    dict(public=False),  # an internal comment
    dict(author="qm:a713c8ea-1075-4e30-9d96-891a7d181739:5ad6d3581db05e2a66fa80b"),  # a portal customer
    dict(author="557058:f58131cb-b67d-43c7-b30d-6b58d40bd077"),  # Automation for Jira
])
def test_comment_webhooks_that_do_not_acknowledge(change):
    ticket = snapshot_from_webhook(_comment_webhook(**change), enterprise_matrix())
    assert ticket.first_public_agent_reply_at is None


def test_stored_webhooks_fold_into_first_and_last_reply_keeping_the_issue_attributes():
    issue_event = json.loads((JIRA_WEBHOOK_FIXTURES / "issue_updated_priority.json").read_text())  # TES-41
    reporter = issue_event["issue"]["fields"]["reporter"]["accountId"]
    payloads = [
        issue_event,
        _comment_webhook(created="2026-11-27T09:00:00.000+0000"),
        _comment_webhook(author=reporter, created="2026-11-27T09:30:00.000+0000"),  # the reporter is the customer
        _comment_webhook(public=False, created="2026-11-27T09:45:00.000+0000"),
        _comment_webhook(created="2026-11-27T10:00:00.000+0000"),
        json.loads((JIRA_WEBHOOK_FIXTURES / "automation_comment_created.json").read_text()),  # no issue: nothing new
    ]
    ticket = None
    for payload in payloads:
        ticket = snapshot_from_webhook(payload, enterprise_matrix(), previous=ticket)
    assert ticket.first_public_agent_reply_at == datetime(2026, 11, 27, 9, tzinfo=timezone.utc)
    assert ticket.last_public_agent_reply_at == datetime(2026, 11, 27, 10, tzinfo=timezone.utc)
    # The comment payloads' partial issue does not wipe the labels and reporter the issue event gave.
    assert ticket.tags == {"sad", "test-label"} and ticket.requester.id == reporter
    # The next issue event keeps the reply facts.
    again = snapshot_from_webhook(issue_event, enterprise_matrix(), previous=ticket)
    assert again.first_public_agent_reply_at == ticket.first_public_agent_reply_at
    assert again.last_public_agent_reply_at == ticket.last_public_agent_reply_at


def test_a_reply_answered_503_with_retry_after_is_not_repeated_in_process(http, connector, sleeps):
    # A proxy may answer 503 after Jira stored the comment; repeating the POST could reply twice.
    http.post(COMMENT_URL, status=503, headers={"Retry-After": "3"})
    with pytest.raises(RateLimited) as caught:
        connector.apply(snapshot(), decision(public_reply="hello"))
    assert caught.value.sent is None
    assert len(http.calls) == 1 and sleeps.waits == []
