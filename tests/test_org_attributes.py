"""Customer tier where accounts keep it (issue 9, item 6): matrix attributes read from Zendesk organization
and user fields (`zendesk: {organization_field: ...}` / `{user_field: ...}`) and from JSM organization
properties (`jira: {organization_property: ...}`), read once per organization per TTL, checked by
`escalation validate --remote`. Every request is validated against the vendor specs."""
from __future__ import annotations

import copy
import re
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import responses
from click.testing import CliRunner

from cli.main import cli
from connectors.jira.connector import JiraConnector
from connectors.jira.remote import remote_problems
from connectors.ratelimit import TokenBucket
from connectors.retry import RetryPolicy
from connectors.zendesk.connector import ZendeskConnector
from connectors.zendesk.remote import check_remote
from integration.pipeline import process_ticket
from matrix_config.loader import load_matrix
from tests.conftest import REPO_ROOT
from tests.support.jira_helpers import SITE, SleepRecorder, make_settings, recorded, validate_all
from tests.support.openapi_check import validate_zendesk_calls
from tests.support.zendesk_fake import FakeZendesk, zendesk_settings
from tests.support.zendesk_pipeline import signed_headers, zendesk_runtime

EXAMPLE = REPO_ROOT / "matrix_config" / "examples" / "enterprise.yaml"
TAG_TIER = '    zendesk: {tag_prefix: "tier_"}\n    jira: {label_prefix: "tier-"}\n'
ORG_TIER = "    zendesk: {organization_field: support_tier}\n    jira: {organization_property: support_tier}\n"
START = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)
GLOBEX = 501  # the organization of ticket 5158 (fixture)
SECRET = "zd-org-tier-secret"


def org_tier_matrix_file(tmp_path: Path) -> Path:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert text.count(TAG_TIER) == 1
    path = tmp_path / "org-tier.yaml"
    path.write_text(text.replace(TAG_TIER, ORG_TIER), encoding="utf-8")
    return path


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


class AccountWithCustomerData(FakeZendesk):
    """The in-memory account plus organizations, users and their custom field definitions."""

    def __init__(self, rsps):
        super().__init__(rsps)
        for organization in self.organizations.values():
            organization.setdefault("organization_fields", {"support_tier": "enterprise", "contract": "gold"})
        for user in self.users.values():
            user.setdefault("user_fields", {"plan": "premium"})
        self.organization_fields = [{"id": 7001, "key": "support_tier", "type": "dropdown", "title": "Support tier",
                                     "active": True},
                                    {"id": 7002, "key": "contract", "type": "text", "title": "Contract", "active": True}]
        self.user_fields = [{"id": 7101, "key": "plan", "type": "text", "title": "Plan", "active": True}]
        base = re.escape(self.base)
        for pattern, handler in (
            (rf"{base}/api/v2/organizations/(\d+)(\?.*)?$", self._show_organization),
            (rf"{base}/api/v2/users/(\d+)(\?.*)?$", self._show_user),
            (rf"{base}/api/v2/organization_fields(\?.*)?$", self._organization_fields),
            (rf"{base}/api/v2/user_fields(\?.*)?$", self._user_fields),
        ):
            self.rsps.add_callback("GET", re.compile(pattern), callback=self._wrap("GET", handler))

    def _show_organization(self, path, query, body):
        organization = self.organizations.get(path.rstrip("/").split("/")[-1])
        if organization is None:
            return 404, {"error": "RecordNotFound", "description": "Not found"}
        # A sideloaded organization is partial (no organization_fields); the organization itself is whole.
        return 200, {"organization": organization}

    def _show_user(self, path, query, body):
        user = self.users.get(path.rstrip("/").split("/")[-1])
        return (200, {"user": user}) if user else (404, {"error": "RecordNotFound", "description": "Not found"})

    def _organization_fields(self, path, query, body):
        return 200, {"organization_fields": self.organization_fields, "next_page": None, "previous_page": None,
                     "count": len(self.organization_fields)}

    def _user_fields(self, path, query, body):
        return 200, {"user_fields": self.user_fields, "next_page": None, "previous_page": None,
                     "count": len(self.user_fields)}

    def _show_ticket(self, path, query, body):
        status, payload = super()._show_ticket(path, query, body)
        payload = copy.deepcopy(payload)
        for organization in payload.get("organizations") or []:
            organization.pop("organization_fields", None)
        for user in payload.get("users") or []:
            user.pop("user_fields", None)
        return status, payload

    def add_copy_of_5158(self, ticket_id: int) -> None:
        ticket = copy.deepcopy(self.tickets["5158"])
        ticket["id"] = ticket_id
        self.add_ticket(ticket)


@pytest.fixture
def fake():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        account = AccountWithCustomerData(rsps)
        yield account
        validate_zendesk_calls(rsps.calls)


def org_reads(fake) -> int:
    return len(fake.calls("GET", f"/api/v2/organizations/{GLOBEX}"))


# ---------------------------------------------------------------------------------- Zendesk reads
def test_zendesk_organization_field_is_read_once_per_organization_per_ttl(fake, tmp_path):
    matrix = load_matrix(org_tier_matrix_file(tmp_path)).matrix
    clock = Clock()
    connector = ZendeskConnector(zendesk_settings(customer_data_ttl_seconds=600), matrix,
                                 retry_policy=RetryPolicy(sleep=lambda s: None), rate_limiter=TokenBucket(10_000),
                                 clock=clock)
    for ticket_id in (5159, 5160):
        fake.add_copy_of_5158(ticket_id)
    # The ticket's own tag says nothing about the tier any more: the organization is the source.
    fake.tickets["5158"]["tags"].remove("tier_enterprise")

    tiers = [connector.fetch_ticket(t).fields.get("customer_tier") for t in ("5158", "5159", "5160")]
    assert tiers == ["enterprise"] * 3
    assert org_reads(fake) == 1

    fake.organizations[str(GLOBEX)]["organization_fields"]["support_tier"] = "premium"
    clock.now += timedelta(minutes=9)
    assert connector.fetch_ticket("5158").fields["customer_tier"] == "enterprise"  # within the TTL: cached
    assert org_reads(fake) == 1
    clock.now += timedelta(minutes=2)
    assert connector.fetch_ticket("5158").fields["customer_tier"] == "premium"  # after the TTL: read again
    assert org_reads(fake) == 2


def test_zendesk_user_field_and_values_map(fake, tmp_path):
    base = load_matrix(org_tier_matrix_file(tmp_path)).matrix.model_dump(mode="json")
    base["fields"]["customer_tier"]["zendesk"] = {"user_field": "plan", "values": {"enterprise": "premium"}}
    from matrix_config.schema import Matrix

    connector = ZendeskConnector(zendesk_settings(), Matrix.model_validate(base),
                                 retry_policy=RetryPolicy(sleep=lambda s: None), rate_limiter=TokenBucket(10_000))
    ticket = connector.fetch_ticket("5158")

    assert ticket.fields["customer_tier"] == "enterprise"
    assert len(fake.calls("GET", "/api/v2/users/1001")) == 1  # the requester, Dana Customer
    assert org_reads(fake) == 0


def test_zendesk_customer_data_reads_take_from_the_request_budget(fake, tmp_path):
    matrix = load_matrix(org_tier_matrix_file(tmp_path)).matrix
    budget = TokenBucket(100, clock=lambda: 0.0)  # a frozen clock: the budget never refills in this test
    connector = ZendeskConnector(zendesk_settings(), matrix, retry_policy=RetryPolicy(sleep=lambda s: None),
                                 rate_limiter=budget)

    connector.fetch_ticket("5158")

    assert org_reads(fake) == 1
    left = sum(1 for _ in range(100) if budget.try_acquire() == 0.0)
    assert 100 - left == len(fake.rsps.calls)  # every call took from the budget, the organization read too


# ---------------------------------------------------------------------- placement, end to end
@pytest.mark.parametrize(("tier", "group", "level_tag"), [
    ("enterprise", 360000200005, "esc_l3"),  # rule enterprise-outage: L3, senior engineering
    ("standard", 360000200003, "esc_l2"),  # not enterprise: rule wide-outage, L2, product specialists
])
def test_organization_tier_places_the_ticket_by_the_rule(fake, tmp_path, tier, group, level_tag):
    matrix_path = org_tier_matrix_file(tmp_path)
    runtime, client = zendesk_runtime(tmp_path, matrix_path, fake, secret=SECRET, now=START)
    ticket = fake.tickets["5158"]
    ticket["tags"].remove("tier_enterprise")
    next(cf for cf in ticket["custom_fields"] if cf["id"] == 360000100005)["value"] = "deploy at 08:00"
    fake.organizations[str(GLOBEX)]["organization_fields"]["support_tier"] = tier
    body = (Path(__file__).parent / "fixtures" / "zendesk" / "ticket_created.json").read_bytes()
    try:
        assert client.post("/webhooks/zendesk", data=body,
                           headers=signed_headers(SECRET, START, body, "inv-1")).status_code < 300
        result = process_ticket("zendesk", "5158", deps=runtime.deps())
    finally:
        runtime.db.dispose()

    assert result.status == "done", result.error
    assert fake.tickets["5158"]["group_id"] == group
    assert level_tag in fake.tickets["5158"]["tags"]
    assert org_reads(fake) == 1


# ------------------------------------------------------------------------------- JSM properties
@contextmanager
def jira_http():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as http:
        yield http
        validate_all(http.calls)


def register_issue(http, key: str) -> None:
    issue = recorded("issue_SUP-7.json")
    issue["key"] = key
    issue["fields"]["labels"] = ["checkout"]  # no tier label: the organization is the source
    http.get(f"{SITE}/rest/api/3/issue/{key}", json=issue)
    comments = recorded("comments_SUP-7_page2.json")
    comments.update(start=0, isLastPage=True)
    http.get(f"{SITE}/rest/servicedeskapi/request/{key}/comment", json=comments)


def test_jsm_organization_property_is_read_once_per_organization_per_ttl(tmp_path):
    matrix = load_matrix(org_tier_matrix_file(tmp_path)).matrix
    clock = Clock()
    connector = JiraConnector(make_settings(JIRA_CUSTOMER_DATA_TTL_SECONDS=600), matrix,
                              retry_policy=SleepRecorder().policy(), clock=clock)
    property_url = f"{SITE}/rest/servicedeskapi/organization/3/property/support_tier"
    with jira_http() as http:
        http.get(f"{SITE}/rest/api/3/myself", json=recorded("myself.json"))
        for key in ("SUP-7", "SUP-8", "SUP-9"):
            register_issue(http, key)
        tier = http.get(property_url, json={"key": "support_tier", "value": "enterprise"})

        tiers = [connector.fetch_ticket(key).fields.get("customer_tier") for key in ("SUP-7", "SUP-8", "SUP-9")]
        assert tiers == ["enterprise"] * 3
        assert tier.call_count == 1

        clock.now += timedelta(minutes=11)
        http.replace(responses.GET, property_url, json={"key": "support_tier", "value": "premium"})
        assert connector.fetch_ticket("SUP-7").fields["customer_tier"] == "premium"
        assert len([c for c in http.calls if c.request.url == property_url]) == 2


def test_jsm_organization_without_the_property_leaves_the_attribute_empty(tmp_path):
    matrix = load_matrix(org_tier_matrix_file(tmp_path)).matrix
    connector = JiraConnector(make_settings(), matrix, retry_policy=SleepRecorder().policy())
    with jira_http() as http:
        http.get(f"{SITE}/rest/api/3/myself", json=recorded("myself.json"))
        register_issue(http, "SUP-7")
        http.get(f"{SITE}/rest/servicedeskapi/organization/3/property/support_tier", status=404,
                 json={"errorMessage": "The property 'support_tier' does not exist."})
        assert "customer_tier" not in connector.fetch_ticket("SUP-7").fields


# ------------------------------------------------------------------------------ validate --remote
def test_validate_remote_zendesk_reports_a_missing_organization_field(fake, tmp_path):
    loaded = load_matrix(org_tier_matrix_file(tmp_path))
    connector = ZendeskConnector(zendesk_settings(), loaded.matrix, retry_policy=RetryPolicy(sleep=lambda s: None),
                                 rate_limiter=TokenBucket(10_000))
    fake.organization_fields = [f for f in fake.organization_fields if f["key"] != "support_tier"]

    problems = check_remote(loaded.matrix, connector=connector)

    assert "fields.customer_tier.zendesk.organization_field: organization field 'support_tier' does not exist " \
           "in Zendesk (its organization fields: contract)" in problems


def test_validate_remote_zendesk_accepts_an_existing_organization_field(fake, tmp_path):
    loaded = load_matrix(org_tier_matrix_file(tmp_path))
    connector = ZendeskConnector(zendesk_settings(), loaded.matrix, retry_policy=RetryPolicy(sleep=lambda s: None),
                                 rate_limiter=TokenBucket(10_000))
    problems = check_remote(loaded.matrix, connector=connector)
    assert not [p for p in problems if "organization" in p]
    assert len(fake.calls("GET", "/api/v2/organization_fields")) == 1


def test_validate_remote_jira_needs_the_organizations_field(tmp_path, monkeypatch):
    loaded = load_matrix(org_tier_matrix_file(tmp_path))
    connector = JiraConnector(make_settings(JIRA_ORGANIZATION_FIELD=None), loaded.matrix,
                              retry_policy=SleepRecorder().policy())
    import connectors.jira.remote as jira_remote

    monkeypatch.setattr(jira_remote, "_paged_values", lambda *args, **kwargs: [])
    monkeypatch.setattr(jira_remote, "_incident_problems", lambda *args, **kwargs: [])  # no site behind it
    monkeypatch.setattr(connector, "all_fields", lambda: [])
    problems = remote_problems(connector, loaded.matrix)
    assert ("fields.customer_tier.jira.organization_property: JIRA_ORGANIZATION_FIELD is not set, so the "
            "request's organizations (and their properties) cannot be read") in problems


# ------------------------------------------------------------------------------------ the language
def test_the_cli_validates_a_matrix_reading_the_tier_from_organizations(tmp_path):
    path = org_tier_matrix_file(tmp_path)
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
