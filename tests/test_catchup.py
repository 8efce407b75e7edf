"""Catch-up scan against recorded Zendesk incremental-export and Jira JQL-search responses, through the
real connectors (HTTP stubbed with `responses`)."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
import responses
from responses import matchers

from connectors.base import NotFound, Transient
from connectors.jira.connector import JiraConnector
from connectors.jira.settings import JiraSettings
from connectors.retry import RetryPolicy
from connectors.zendesk.connector import ZendeskConnector
from connectors.zendesk.settings import ZendeskSettings
from integration.catchup import DatabaseWatermarks, catch_up, watermark_name
from matrix_config.loader import load_matrix
from tests.support.watermarks import MemoryWatermarks

FIXTURES = Path(__file__).parent / "fixtures" / "catchup"
ZENDESK = "https://acme.zendesk.com"
EXPORT = f"{ZENDESK}/api/v2/incremental/tickets/cursor"
JIRA = "https://acme.atlassian.net"
SEARCH = f"{JIRA}/rest/api/3/search/jql"
NOW = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)
START = str(int(NOW.timestamp()) - 3600)  # the connector's first scan looks back one hour
CURSOR_1 = "MTU3NjYxMzUzOS4wfHw0Njd8"
CURSOR_2 = "MTU3NjYxNDAwMC4wfHw0NzF8"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture(scope="module")
def matrix(enterprise_matrix_path):
    return load_matrix(enterprise_matrix_path).matrix


class _NoLimit:
    def try_acquire(self) -> float:
        return 0.0


@pytest.fixture
def zendesk(matrix):
    settings = ZendeskSettings(subdomain="acme", email="bot@acme.example", api_token="zd-secret-token", user_id="1")
    return ZendeskConnector(settings, matrix, retry_policy=RetryPolicy(attempts=1, sleep=lambda s: None),
                            rate_limiter=_NoLimit(), clock=lambda: NOW)


@pytest.fixture
def jira(matrix):
    settings = JiraSettings(url=JIRA, email="bot@acme.example", api_token="jira-secret-token",
                            project_keys_csv="SUP", timezone_name="Europe/Berlin", account_id="557058:bot")
    return JiraConnector(settings, matrix, retry_policy=RetryPolicy(attempts=1, sleep=lambda s: None))


def stub_zendesk_export(rsps: responses.RequestsMock) -> None:
    rsps.get(EXPORT, json=fixture("zendesk_export_page1.json"),
             match=[matchers.query_param_matcher({"start_time": START})])
    rsps.get(EXPORT, json=fixture("zendesk_export_page2.json"),
             match=[matchers.query_param_matcher({"cursor": CURSOR_1})])


class Recorder:
    def __init__(self, fail: dict[str, Exception] | None = None):
        self.calls: list[tuple[str, str]] = []
        self.fail = fail or {}

    def __call__(self, vendor: str, ticket_id: str) -> None:
        self.calls.append((vendor, ticket_id))
        if ticket_id in self.fail:
            raise self.fail[ticket_id]


@responses.activate
def test_zendesk_export_processes_each_changed_ticket_once_and_stores_the_last_cursor(zendesk):
    stub_zendesk_export(responses.mock)
    store, process = MemoryWatermarks(), Recorder()
    assert catch_up(zendesk, store, process) == 4
    assert process.calls == [("zendesk", "35436"), ("zendesk", "35437"), ("zendesk", "35438"), ("zendesk", "35440")]
    assert store.get("scan:zendesk") == CURSOR_2
    # the watermark only ever moved to positions whose tickets were all processed
    assert [value for _, value in store.history] == [START, CURSOR_1, CURSOR_2]


@responses.activate
def test_zendesk_next_scan_continues_from_the_stored_cursor(zendesk):
    responses.get(EXPORT, json={"tickets": [], "after_cursor": CURSOR_2, "after_url": None, "before_cursor": None,
                                "before_url": None, "end_of_stream": True},
                  match=[matchers.query_param_matcher({"cursor": CURSOR_2})])
    store = MemoryWatermarks({watermark_name("zendesk"): CURSOR_2})
    process = Recorder()
    assert catch_up(zendesk, store, process) == 0
    assert process.calls == []
    assert store.get("scan:zendesk") == CURSOR_2


@responses.activate
def test_failed_pass_stops_the_scan_and_keeps_the_watermark_before_it(zendesk):
    stub_zendesk_export(responses.mock)
    store = MemoryWatermarks()
    process = Recorder(fail={"35438": Transient("zendesk GET /api/v2/tickets/35438: 503")})
    with pytest.raises(Transient):
        catch_up(zendesk, store, process)
    # 35438 closed page 1: its cursor must not be stored, or the page's unprocessed rest would be skipped
    assert store.get("scan:zendesk") == START
    # the next run replays page 1 from the start time and finishes
    stub_zendesk_export(responses.mock)
    retry = Recorder()
    assert catch_up(zendesk, store, retry) == 4
    assert retry.calls[0] == ("zendesk", "35436")
    assert store.get("scan:zendesk") == CURSOR_2


@responses.activate
def test_ticket_that_cannot_be_processed_does_not_block_the_scan(zendesk):
    stub_zendesk_export(responses.mock)
    store = MemoryWatermarks()
    process = Recorder(fail={"35437": NotFound("zendesk ticket 35437 not found")})
    assert catch_up(zendesk, store, process) == 4
    assert store.get("scan:zendesk") == CURSOR_2


@responses.activate
def test_limit_bounds_one_run_and_the_next_run_resumes(zendesk):
    stub_zendesk_export(responses.mock)
    store = MemoryWatermarks()
    first = Recorder()
    assert catch_up(zendesk, store, first, limit=2) == 2
    assert store.get("scan:zendesk") == START
    stub_zendesk_export(responses.mock)
    second = Recorder()
    assert catch_up(zendesk, store, second) == 4  # replays page 1 (at-least-once), then page 2
    assert store.get("scan:zendesk") == CURSOR_2


@responses.activate
def test_jira_jql_scan_on_updated_advances_to_the_last_issue(jira):
    expected_jql = 'project in ("SUP") AND updated >= "2026/11/27 09:00" ORDER BY updated ASC'
    responses.get(SEARCH, json=fixture("jira_search_page1.json"), match=[matchers.query_param_matcher(
        {"jql": expected_jql, "fields": "updated"}, strict_match=False)])
    responses.get(SEARCH, json=fixture("jira_search_page2.json"), match=[matchers.query_param_matcher(
        {"jql": expected_jql, "nextPageToken": "CAEaAggD"}, strict_match=False)])
    store = MemoryWatermarks({"scan:jira": "2026-11-27T08:00:00+00:00"})  # 09:00 in Berlin
    process = Recorder()
    assert catch_up(jira, store, process) == 3
    assert process.calls == [("jira", "SUP-41"), ("jira", "SUP-44"), ("jira", "SUP-45")]
    assert store.get("scan:jira") == "2026-11-27T09:11:05+00:00"
    for call in responses.calls:
        assert "jira-secret-token" not in call.request.url


def test_database_watermarks_survive_a_new_store(tmp_path):
    from integration.store.db import Database

    url = f"sqlite:///{tmp_path / 'wm.db'}"
    database = Database(url)
    database.migrate()
    DatabaseWatermarks(database).put("scan:zendesk", CURSOR_1)
    DatabaseWatermarks(database).put("scan:zendesk", CURSOR_2)
    database.dispose()
    assert DatabaseWatermarks(Database(url)).get("scan:zendesk") == CURSOR_2
    assert DatabaseWatermarks(Database(url)).get("scan:jira") is None
