"""Shared helpers for the Jira connector tests (no tests here): settings, recorded API responses, spec validation."""
from __future__ import annotations

import copy
import json
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import requests
import responses

from connectors.jira.settings import JiraSettings
from connectors.retry import RetryPolicy
from matrix_config.loader import load_matrix
from tests.support.openapi_check import validate_request

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "jira_api"
SITE = "https://acme.atlassian.net"
EMAIL = "escalation-bot@acme.example"
TOKEN = "ATATT3xFfGF0-not-a-real-token-7c1d"

ENV = {
    "JIRA_URL": SITE,
    "JIRA_EMAIL": EMAIL,
    "JIRA_API_TOKEN": TOKEN,
    "JIRA_PROJECT_KEYS": "SUP,OPS",
    "JIRA_ORGANIZATION_FIELD": "customfield_10002",
    "JIRA_REQUEST_TYPE_FIELD": "customfield_10010",
    "JIRA_REQUESTS_PER_MINUTE": "100000",  # a client-side budget the tests never reach
}


def recorded(name: str) -> Any:
    """A fresh copy of a recorded API response."""
    return copy.deepcopy(_load(name))


@lru_cache(maxsize=None)
def _load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def enterprise_matrix():
    return load_matrix(Path(__file__).resolve().parents[2] / "matrix_config" / "examples" / "enterprise.yaml").matrix


def make_settings(**overrides: Any) -> JiraSettings:
    return JiraSettings(_env_file=None, **{**ENV, **overrides})


class SleepRecorder:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)

    def policy(self, **kwargs: Any) -> RetryPolicy:
        return RetryPolicy(sleep=self, **kwargs)


def spec_for(path: str) -> str:
    if path.startswith("/rest/servicedeskapi/"):
        return "jsm"
    if path.startswith(("/rest/api/3/", "/rest/api/2/")):
        return "jira"
    raise AssertionError(f"request to {path}: not a Jira or JSM API path")


@contextmanager
def validated_jira_http() -> Iterator[responses.RequestsMock]:
    """A `responses` mock for a fixture (`with validated_jira_http() as http: yield http`): every request
    must be registered and every registered one sent; when the block ends each recorded request is
    validated against the Jira platform / JSM specs."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps
        validate_all(rsps.calls)


def validate_all(calls: Any) -> int:
    """Validate every request `responses` recorded against the Jira platform / JSM specs. The platform spec is
    v3; a v2 request is checked against the same operation under /rest/api/3 (same shapes outside ADF)."""
    count = 0
    for call in calls:
        request = call.request
        split = urlsplit(request.url)
        path = split.path.replace("/rest/api/2/", "/rest/api/3/", 1)
        body = json.loads(request.body) if request.body else None
        validate_request(spec_for(path), request.method, path + (f"?{split.query}" if split.query else ""), body)
        count += 1
    return count


def body_of(call: Any) -> Any:
    return json.loads(call.request.body)


def query_of(call: Any) -> dict[str, list[str]]:
    from urllib.parse import parse_qs

    return parse_qs(urlsplit(call.request.url).query)


def register_fetch(rsps: responses.RequestsMock, key: str = "SUP-7", issue: Any = None, with_myself: bool = True) -> None:
    rsps.get(f"{SITE}/rest/api/3/issue/{key}", json=issue if issue is not None else recorded(f"issue_{key}.json"))
    register_comments(rsps, key)
    if with_myself:
        rsps.get(f"{SITE}/rest/api/3/myself", json=recorded("myself.json"))


def register_comments(rsps: responses.RequestsMock, key: str) -> None:
    """SUP-7's recorded public JSM comments (two pages) as the comments of `key`."""
    rsps.get(f"{SITE}/rest/servicedeskapi/request/{key}/comment", json=recorded("comments_SUP-7_page1.json"),
             match=[responses.matchers.query_param_matcher({"start": "0"}, strict_match=False)])
    rsps.get(f"{SITE}/rest/servicedeskapi/request/{key}/comment", json=recorded("comments_SUP-7_page2.json"),
             match=[responses.matchers.query_param_matcher({"start": "2"}, strict_match=False)])


def recorded_issue_as(key: str, recorded_name: str = "issue_SUP-7.json", **field_changes: Any) -> dict[str, Any]:
    """A recorded issue GET response (`IssueBean` with `expand=schema`) as the issue `key`: key, id and self
    renamed, `field_changes` applied to its fields."""
    issue = recorded(recorded_name)
    number = int(key.rsplit("-", 1)[1])
    issue_id = str(20000 + number)
    issue.update(key=key, id=issue_id, self=f"{SITE}/rest/api/3/issue/{issue_id}")
    issue["fields"].update(field_changes)
    return issue


def search_results(issues: list[dict[str, Any]], next_page_token: str | None = None) -> dict[str, Any]:
    """A `GET /rest/api/3/search/jql` page (`SearchAndReconcileResults`) holding these issue GET responses
    as the search returns them: `expand=schema` gives the field types once for the page, not per issue."""
    schema: dict[str, Any] = {}
    hits = []
    for issue in issues:
        hit = copy.deepcopy(issue)
        schema.update(hit.pop("schema", None) or {})
        hits.append(hit)
    page: dict[str, Any] = {"isLast": next_page_token is None, "issues": hits}
    if schema:
        page["schema"] = schema
    if next_page_token is not None:
        page["nextPageToken"] = next_page_token
    return page


def validate_search_response(page: dict[str, Any]) -> None:
    """Assert that a made-up search page fits the spec's response (`SearchAndReconcileResults`, whose issues
    are `IssueBean`s: both refuse undeclared keys)."""
    from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

    from tests.support.openapi_check import _openapi

    request = requests.Request("GET", "https://your-domain.atlassian.net/rest/api/3/search/jql",
                               params={"jql": "key in (SUP-1)"}, auth=("validator@example.com", "token")).prepare()
    response = requests.Response()
    response.status_code = 200
    response.headers["Content-Type"] = "application/json"
    response._content = json.dumps(page).encode()
    _openapi("jira").validate_response(RequestsOpenAPIRequest(request), RequestsOpenAPIResponse(response))
