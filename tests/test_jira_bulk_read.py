"""Jira bulk read (issue 15, vendor calls per event): a burst of events across issues is read with one
enhanced search (`GET /rest/api/3/search/jql`, JQL `key in (...)`) instead of one issue GET each, and
normalizes to the very Tickets the issue GETs give. Issues the search does not return are read alone by
their pass; anything that is not an issue key never reaches JQL. Every request is validated against the
Jira platform / JSM spec subsets, every made-up search page against the search's response schema."""
from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

import integration.pipeline as pipeline
from connectors.base import Permanent
from connectors.jira.connector import JiraConnector, issue_keys_jql
from matrix_config.loader import load_matrix
from tests.support.jira_pipeline import jira_pipeline
from tests.support.jira_helpers import (
    SITE,
    SleepRecorder,
    enterprise_matrix,
    make_settings,
    query_of,
    recorded,
    recorded_issue_as,
    register_comments,
    search_results,
    validate_search_response,
    validated_jira_http,
)
from webhooks.signatures import jira_signature

REPO = Path(__file__).resolve().parent.parent
MATRIX = REPO / "matrix_config" / "examples" / "enterprise.yaml"
WEBHOOKS = Path(__file__).resolve().parent / "fixtures" / "jira"
SECRET = "jira-bulk-read-webhook-secret"
SEARCH_URL = f"{SITE}/rest/api/3/search/jql"
RESOLVED = {"self": f"{SITE}/rest/api/3/status/10019", "description": "", "iconUrl": f"{SITE}/",
            "name": "Resolved", "id": "10019",
            "statusCategory": {"self": f"{SITE}/rest/api/3/statuscategory/3", "id": 3, "key": "done",
                               "colorName": "green", "name": "Done"}}
ORGANIZATION_TIER = f"{SITE}/rest/servicedeskapi/organization/3/property/support_tier"
ISSUE_GET = re.compile(rf"{re.escape(SITE)}/rest/api/3/issue/[A-Z]+-\d+$")


@pytest.fixture
def sleeps():
    return SleepRecorder()


def connector_for(matrix=None, sleeps=None, **settings) -> JiraConnector:
    return JiraConnector(make_settings(**settings), matrix or enterprise_matrix(),
                         retry_policy=(sleeps or SleepRecorder()).policy())


def search_page(issues, next_page_token=None) -> dict:
    page = search_results(issues, next_page_token)
    validate_search_response(page)
    return page


def searched_keys(call) -> list[str]:
    jql = query_of(call)["jql"][0]
    return re.findall(r'"([^"]+)"', jql)


def url_path(call) -> str:
    return call.request.url.split("?")[0].removeprefix(SITE)


def org_tier_matrix(tmp_path):
    """The enterprise matrix with the customer tier read from the JSM organization's `support_tier` property."""
    text = MATRIX.read_text(encoding="utf-8")
    tag_tier = '    zendesk: {tag_prefix: "tier_"}\n    jira: {label_prefix: "tier-"}\n'
    assert text.count(tag_tier) == 1
    path = tmp_path / "org-tier.yaml"
    path.write_text(text.replace(tag_tier, "    zendesk: {organization_field: support_tier}\n"
                                          "    jira: {organization_property: support_tier}\n"), encoding="utf-8")
    return load_matrix(path).matrix


# ------------------------------------------------------------------------------- bulk equals single
def recorded_issues() -> dict[str, dict]:
    """The recorded issue GET responses: SUP-7 placed at L1 (request type, organization, owner group),
    SUP-8 not placed yet, and SUP-9: SUP-7 resolved (its JSM feedback is read)."""
    return {"SUP-7": recorded("issue_SUP-7.json"), "SUP-8": recorded("issue_SUP-8_unplaced.json"),
            "SUP-9": recorded_issue_as("SUP-9", status=RESOLVED)}


def register_per_issue_reads(http, keys, with_property: bool) -> None:
    http.get(f"{SITE}/rest/api/3/myself", json=recorded("myself.json"))
    for key in keys:
        register_comments(http, key)
    if "SUP-9" in keys:
        http.get(f"{SITE}/rest/servicedeskapi/request/SUP-9/feedback",
                 json={"type": "csat", "rating": 4, "comment": {"body": "Sorted quickly, thanks"}})
    if with_property:
        http.get(ORGANIZATION_TIER, json={"key": "support_tier", "value": "enterprise"})


@pytest.mark.parametrize("tier_source", ["label", "organization property"])
def test_bulk_read_gives_the_tickets_the_issue_gets_give(tier_source, tmp_path):
    matrix = org_tier_matrix(tmp_path) if tier_source == "organization property" else enterprise_matrix()
    issues = recorded_issues()

    single_connector = connector_for(matrix)
    with validated_jira_http() as http:
        register_per_issue_reads(http, issues, with_property=tier_source == "organization property")
        for key, issue in issues.items():
            http.get(f"{SITE}/rest/api/3/issue/{key}", json=issue)
        single = {key: single_connector.fetch_ticket(key) for key in issues}
        issue_query = query_of(next(c for c in http.calls if url_path(c) == "/rest/api/3/issue/SUP-7"))

    bulk_connector = connector_for(matrix)
    with validated_jira_http() as http:
        register_per_issue_reads(http, issues, with_property=tier_source == "organization property")
        http.get(SEARCH_URL, json=search_page(list(issues.values())))
        bulk = bulk_connector.fetch_tickets(list(issues))
        searches = [c for c in http.calls if url_path(c) == "/rest/api/3/search/jql"]
        issue_gets = [c for c in http.calls if ISSUE_GET.match(c.request.url.split("?")[0])]

    assert bulk == single
    assert bulk["SUP-9"].satisfaction == "4" and bulk["SUP-7"].fields["request_type"] == "Report a system problem"
    assert bulk["SUP-7"].fields["customer_tier"] == "enterprise" and bulk["SUP-7"].organization == "Globex Corporation"
    assert len(searches) == 1 and issue_gets == []
    search_query = query_of(searches[0])
    assert search_query["jql"] == ['key in ("SUP-7", "SUP-8", "SUP-9")']
    assert search_query["fields"] == issue_query["fields"] and search_query["expand"] == issue_query["expand"]
    assert search_query["maxResults"] == ["100"]


def test_after_a_bulk_read_an_edit_needs_no_field_metadata_read():
    """The search's page-level schema serves apply() as the issue GET's does: no GET /field before the PUT."""
    from datetime import datetime, timezone

    from integration.model import Decision

    connector = connector_for()
    with validated_jira_http() as http:
        register_per_issue_reads(http, ["SUP-7"], with_property=False)
        http.get(SEARCH_URL, json=search_page([recorded("issue_SUP-7.json")]))
        http.put(f"{SITE}/rest/api/3/issue/SUP-7", status=204)
        ticket = connector.fetch_tickets(["SUP-7"])["SUP-7"]
        connector.apply(ticket, Decision(vendor="jira", ticket_id="SUP-7", matrix_version="abc123",
                                         decided_at=datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc),
                                         field_updates={"account_id": "ACC-9"}))
        assert [url_path(c) for c in http.calls][-1] == "/rest/api/3/issue/SUP-7"
        assert not any(url_path(c) == "/rest/api/3/field" for c in http.calls)
        assert json.loads(http.calls[-1].request.body) == {"fields": {"customfield_10102": "ACC-9"}}


# ------------------------------------------------------------------------------- missing and bad keys
def test_a_key_jira_does_not_return_is_left_to_its_own_read():
    connector = connector_for()
    with validated_jira_http() as http:
        register_per_issue_reads(http, ["SUP-7"], with_property=False)
        http.get(SEARCH_URL, json=search_page([recorded("issue_SUP-7.json")]))
        tickets = connector.fetch_tickets(["SUP-7", "SUP-404"])
    assert list(tickets) == ["SUP-7"]


def test_a_key_the_search_refuses_is_dropped_and_the_rest_asked_again():
    """The enhanced search has no validateQuery=warn: JQL naming a deleted (or hidden) issue is a 400."""
    connector = connector_for()
    with validated_jira_http() as http:
        register_per_issue_reads(http, ["SUP-7"], with_property=False)
        refused = http.get(SEARCH_URL, status=400, json={"errorMessages": [
            "An issue with key 'SUP-404' does not exist for field 'key'."], "errors": {}})
        refused.match = [lambda request: ("SUP-404" in request.url, "names SUP-404")]
        http.get(SEARCH_URL, json=search_page([recorded("issue_SUP-7.json")]))
        tickets = connector.fetch_tickets(["SUP-404", "SUP-7"])
        searches = [searched_keys(c) for c in http.calls if url_path(c) == "/rest/api/3/search/jql"]
    assert list(tickets) == ["SUP-7"]
    assert searches == [["SUP-404", "SUP-7"], ["SUP-7"]]


def test_a_refused_search_that_names_none_of_the_keys_is_raised(sleeps):
    connector = connector_for(sleeps=sleeps)
    with validated_jira_http() as http:
        http.get(SEARCH_URL, status=400, json={"errorMessages": ["Field 'customfield_10108' does not exist."]})
        with pytest.raises(Permanent, match="customfield_10108"):
            connector.fetch_tickets(["SUP-7", "SUP-8"])


def test_a_moved_issue_found_under_its_new_key_is_left_to_its_own_read():
    connector = connector_for()
    with validated_jira_http() as http:
        http.get(SEARCH_URL, json=search_page([recorded_issue_as("OPS-31")]))
        assert connector.fetch_tickets(["SUP-31"]) == {}


def test_after_a_per_issue_read_fails_the_rest_are_left_to_their_passes():
    """A failure completing one issue (here its JSM comments refused) would repeat for each: the issues read
    so far are returned, that one and the later ones are read by their own passes."""
    connector = connector_for()
    with validated_jira_http() as http:
        register_per_issue_reads(http, ["SUP-7"], with_property=False)
        http.get(f"{SITE}/rest/servicedeskapi/request/SUP-8/comment", status=403,
                 json={"errorMessage": "You do not have permission", "i18nErrorMessage": None})
        http.get(SEARCH_URL, json=search_page([recorded("issue_SUP-7.json"), recorded("issue_SUP-8_unplaced.json"),
                                               recorded_issue_as("SUP-9")]))
        tickets = connector.fetch_tickets(["SUP-7", "SUP-8", "SUP-9"])
        assert not any("/request/SUP-9/" in c.request.url for c in http.calls)
    assert list(tickets) == ["SUP-7"]


@pytest.mark.parametrize("bad", [
    'SUP-1") OR project = "SECRET',  # JQL injection
    "SUP-1 OR key = SECRET-1",
    "sup-7",  # not the canonical key
    "10507",  # an issue id, not a key
    "SUP-07",
    "SUP-",
    " SUP-7",
    "SUP-7\n",
    "",
])
def test_anything_but_an_issue_key_is_refused_and_never_put_into_jql(bad):
    with pytest.raises(ValueError, match="not issue keys"):
        issue_keys_jql(["SUP-7", bad])

    connector = connector_for()
    with validated_jira_http() as http:
        register_per_issue_reads(http, ["SUP-7"], with_property=False)
        http.get(SEARCH_URL, json=search_page([recorded("issue_SUP-7.json")]))
        tickets = connector.fetch_tickets([bad, "SUP-7"])
        jql = query_of(next(c for c in http.calls if url_path(c) == "/rest/api/3/search/jql"))["jql"]
    assert list(tickets) == ["SUP-7"]
    assert jql == ['key in ("SUP-7")']


def test_only_bad_keys_send_no_search():
    connector = connector_for()
    with validated_jira_http() as http:
        assert connector.fetch_tickets(['X-1" OR "1"="1', "10507"]) == {}
        assert len(http.calls) == 0


# ------------------------------------------------------------------------------- chunks and pages
def test_keys_are_searched_100_at_a_time_and_every_page_is_followed():
    """The search may answer a chunk over several pages (fewer issues a page with heavy expansions)."""
    keys = [f"SUP-{n}" for n in range(1, 151)]
    connector = connector_for()

    def answer(request):
        query = parse_qs(urlsplit(request.url).query)
        wanted = re.findall(r'"([^"]+)"', query["jql"][0])
        if "nextPageToken" in query:
            page = search_page([recorded_issue_as(k) for k in wanted[60:]])
        elif len(wanted) > 60:
            page = search_page([recorded_issue_as(k) for k in wanted[:60]], next_page_token="CAEaAggD")
        else:
            page = search_page([recorded_issue_as(k) for k in wanted])
        return 200, {"Content-Type": "application/json"}, json.dumps(page)

    with validated_jira_http() as http:
        http.get(f"{SITE}/rest/api/3/myself", json=recorded("myself.json"))
        http.add_callback(responses.GET, SEARCH_URL, callback=answer)
        comments = recorded("comments_SUP-7_page2.json")
        comments.update(start=0, isLastPage=True)
        http.get(re.compile(rf"{re.escape(SITE)}/rest/servicedeskapi/request/SUP-\d+/comment"), json=comments)
        tickets = connector.fetch_tickets(keys)
        searches = [query_of(c) for c in http.calls if url_path(c) == "/rest/api/3/search/jql"]

    assert list(tickets) == keys
    assert [len(re.findall(r'"([^"]+)"', q["jql"][0])) for q in searches] == [100, 100, 50]
    assert ["nextPageToken" in q for q in searches] == [False, True, False]


def test_bulk_reads_take_from_the_site_budget_like_every_request():
    class CountingBudget:
        taken = 0

        def try_acquire(self) -> float:
            self.taken += 1
            return 0.0

    budget = CountingBudget()
    connector = JiraConnector(make_settings(), enterprise_matrix(), retry_policy=SleepRecorder().policy(),
                              rate_limiter=budget)
    with validated_jira_http() as http:
        register_per_issue_reads(http, ["SUP-7", "SUP-8"], with_property=False)
        http.get(SEARCH_URL, json=search_page([recorded("issue_SUP-7.json"), recorded("issue_SUP-8_unplaced.json")]))
        connector.fetch_tickets(["SUP-7", "SUP-8"])
        sent = len(http.calls)
    assert budget.taken == sent == 6  # myself, one search, two comment pages per issue


# ------------------------------------------------------------------------------- the pipeline's burst
@pytest.fixture
def world(tmp_path):
    from datetime import datetime, timezone

    world = jira_pipeline(tmp_path / "events.db", datetime(2026, 11, 27, 9, 30, tzinfo=timezone.utc), secret=SECRET)
    yield world
    world["db"].dispose()


def burst(world, count: int) -> list[str]:
    """`count` signed `jira:issue_updated` webhooks, one per issue, each reporting the issue's current
    `updated` (the version the search returns)."""
    keys = [f"SUP-{100 + n}" for n in range(count)]
    updated = recorded("issue_SUP-7.json")["fields"]["updated"]
    for number, key in enumerate(keys):
        payload = json.loads((WEBHOOKS / "issue_updated_priority.json").read_text())
        payload["issue"]["key"] = key
        payload["issue"]["fields"]["updated"] = updated
        body = json.dumps(payload).encode()
        response = world["client"].post("/webhooks/jira", data=body, headers={
            "Content-Type": "application/json; charset=UTF-8", "X-Hub-Signature": jira_signature(SECRET, body),
            "X-Atlassian-Webhook-Identifier": f"wh-burst-{number}"})
        assert response.status_code in (200, 202), response.get_data(as_text=True)
    return keys


def register_burst(http, keys, *, missing=(), issue_gets: bool) -> None:
    """Each issue as SUP-7 (an enterprise outage at L1: the decision writes the fields, a reply and a note)."""
    http.get(f"{SITE}/rest/api/3/myself", json=recorded("myself.json"))
    found = [k for k in keys if k not in missing]
    if issue_gets:
        for key in found:
            http.get(f"{SITE}/rest/api/3/issue/{key}", json=recorded_issue_as(key))
    else:
        http.get(SEARCH_URL, json=search_page([recorded_issue_as(k) for k in found]))
    for key in missing:
        http.get(f"{SITE}/rest/api/3/issue/{key}", status=404, json={
            "errorMessages": ["Issue does not exist or you do not have permission to see it."], "errors": {}})
    comments = recorded("comments_SUP-7_page2.json")
    comments.update(start=0, isLastPage=True)
    http.get(re.compile(rf"{re.escape(SITE)}/rest/servicedeskapi/request/SUP-\d+/comment"), json=comments)
    http.put(re.compile(rf"{re.escape(SITE)}/rest/api/3/issue/SUP-\d+"), status=204)
    http.post(re.compile(rf"{re.escape(SITE)}/rest/servicedeskapi/request/SUP-\d+/comment"), status=201,
              json={"id": "30001"})


def calls_by_kind(http) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for call in http.calls:
        path = url_path(call)
        kind = {"/rest/api/3/search/jql": "search", "/rest/api/3/myself": "myself"}.get(path)
        if kind is None:
            kind = f"{call.request.method} " + ("issue" if path.startswith("/rest/api/3/issue/") else "comment")
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def test_a_burst_of_20_issues_is_read_with_one_search_instead_of_20_issue_gets(world):
    keys = burst(world, 20)
    with validated_jira_http() as http:
        register_burst(http, keys, issue_gets=False)
        results = pipeline.process_tickets("jira", keys, deps=world["deps"])
        assert {r.status for r in results.values()} == {"done"}, {k: r.error for k, r in results.items()}
        calls = calls_by_kind(http)
    # One search for the 20 issue GETs; each issue's public JSM comments are still read per issue, and
    # every issue is placed as one by one would (a field edit, a reply and a note each).
    assert calls == {"myself": 1, "search": 1, "GET comment": 20, "PUT issue": 20, "POST comment": 40}


def test_one_by_one_the_same_burst_reads_each_issue(world):
    keys = burst(world, 20)
    with validated_jira_http() as http:
        register_burst(http, keys, issue_gets=True)
        for key in keys:
            assert pipeline.process_ticket("jira", key, deps=world["deps"]).status == "done"
        calls = calls_by_kind(http)
    assert calls == {"myself": 1, "GET issue": 20, "GET comment": 20, "PUT issue": 20, "POST comment": 40}


def test_an_issue_missing_from_the_search_is_read_alone_and_meets_the_proper_error(world):
    keys = burst(world, 3)
    gone = keys[1]
    with validated_jira_http() as http:
        register_burst(http, keys, missing=[gone], issue_gets=False)
        results = pipeline.process_tickets("jira", keys, deps=world["deps"])
        issue_gets = [url_path(c) for c in http.calls if c.request.method == "GET" and ISSUE_GET.match(
            c.request.url.split("?")[0])]
        searches = [searched_keys(c) for c in http.calls if url_path(c) == "/rest/api/3/search/jql"]
    assert searches == [keys]
    assert issue_gets == [f"/rest/api/3/issue/{gone}"]  # only the missing issue is read alone: its 404
    assert results[keys[0]].status == results[keys[2]].status == "done"
    assert results[gone].status != "done" and "Issue does not exist" in (results[gone].error or "")
