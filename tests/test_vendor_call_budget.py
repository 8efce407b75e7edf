"""Vendor API calls per event (issue 15): Zendesk's 700 requests/minute bound the whole service, so a pass
reads a ticket's comments only when they can have changed, and then only the ones newer than those seen.
Every request is validated against the Zendesk spec subset (validated_fake_zendesk)."""
from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import pytest

from connectors.ratelimit import TokenBucket
from connectors.retry import RetryPolicy
from connectors.zendesk.connector import ZendeskConnector
from integration.model import Decision
from matrix_config.loader import load_matrix
from tests.support.zendesk_fake import validated_fake_zendesk, zendesk_settings

AGENT = 2002


@pytest.fixture
def fake():
    with validated_fake_zendesk() as zendesk:
        yield zendesk


@pytest.fixture
def connector(fake) -> ZendeskConnector:
    matrix = load_matrix("matrix_config/examples/enterprise.yaml").matrix
    return ZendeskConnector(zendesk_settings(), matrix, retry_policy=RetryPolicy(attempts=3, sleep=lambda s: None),
                            rate_limiter=TokenBucket(10_000))


def comment_reads(fake) -> list:
    return fake.calls("GET", "/api/v2/tickets/5158/comments")


def agent_edits_tags(fake, at: str) -> None:
    ticket = fake.tickets["5158"]
    ticket["tags"] = [*ticket["tags"], f"triage_{at[-3:-1]}"]
    ticket["updated_at"] = at


def test_repeated_deliveries_of_an_unchanged_ticket_read_its_comments_once(connector, fake):
    for _ in range(10):  # a retried webhook, duplicates, a poll finding the same ticket
        connector.fetch_ticket("5158")
    assert len(comment_reads(fake)) == 1  # the first fetch: all of the ticket's comments (one page)
    assert len(fake.calls("GET", "/api/v2/tickets/5158")) == 11  # ticket path prefix: 10 tickets + 1 comments


def test_a_burst_of_edits_that_add_no_comment_reads_no_comments(connector, fake):
    """Tags, fields, status: updated_at moves, the ticket's comment_count (sideloaded with the ticket
    read) does not, so the comments are not read again."""
    connector.fetch_ticket("5158")
    first_reads = len(comment_reads(fake))
    for second in range(10, 15):
        agent_edits_tags(fake, f"2026-11-27T10:00:{second}Z")
        ticket = connector.fetch_ticket("5158")
    assert len(comment_reads(fake)) == first_reads
    assert ticket.last_public_agent_reply_at == datetime(2026, 11, 27, 9, 30, 15, tzinfo=timezone.utc)


def test_a_new_agent_reply_is_seen_from_the_newest_comments_alone(connector, fake):
    connector.fetch_ticket("5158")
    first_reads = len(comment_reads(fake))
    fake.comments["5158"].append({"id": 70010, "type": "Comment", "author_id": AGENT, "public": True,
                                  "body": "Engineering is on it.", "created_at": "2026-11-27T10:05:00Z"})
    fake.tickets["5158"]["updated_at"] = "2026-11-27T10:05:00Z"
    ticket = connector.fetch_ticket("5158")
    assert len(comment_reads(fake)) == first_reads + 1  # one page, newest first, up to the newest seen
    assert parse_qs(urlsplit(comment_reads(fake)[-1].request.url).query)["sort"] == ["-created_at"]
    assert ticket.first_public_agent_reply_at == datetime(2026, 11, 27, 8, 25, tzinfo=timezone.utc)
    assert ticket.last_public_agent_reply_at == datetime(2026, 11, 27, 10, 5, tzinfo=timezone.utc)
    assert ticket.last_public_agent_reply_by.id == str(AGENT)


def test_the_echo_of_our_own_update_reads_no_comments(connector, fake):
    ticket = connector.fetch_ticket("5158")
    connector.apply(ticket, Decision(vendor="zendesk", ticket_id="5158", matrix_version="v1",
                                      decided_at=datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc),
                                      add_tags=("escalation_checked",), internal_note="Checked."))
    reads = len(comment_reads(fake))
    echoed = connector.fetch_ticket("5158")  # the webhook Zendesk sends for the service's own update
    assert len(comment_reads(fake)) == reads
    assert echoed.version_token != ticket.version_token
    assert echoed.last_public_agent_reply_at == ticket.last_public_agent_reply_at  # our note is no agent reply


def test_the_31st_update_to_one_ticket_within_ten_minutes_is_deferred_not_sent(fake):
    """Zendesk answers more than 30 updates per ticket per 10 minutes with 429: the 31st is held back
    client-side as RateLimited with the wait until the oldest update leaves the window; other tickets
    are not held back, and after the wait the update goes out."""
    from connectors.base import RateLimited

    now = [datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)]
    matrix = load_matrix("matrix_config/examples/enterprise.yaml").matrix
    connector = ZendeskConnector(zendesk_settings(), matrix, retry_policy=RetryPolicy(attempts=1, sleep=lambda s: None),
                                 rate_limiter=TokenBucket(10_000), clock=lambda: now[0])

    def note(number: int) -> Decision:
        return Decision(vendor="zendesk", ticket_id="5158", matrix_version="v1", decided_at=now[0],
                        internal_note=f"Note {number}.")

    puts = lambda: len(fake.calls("PUT", "/api/v2/tickets/5158"))  # noqa: E731
    for number in range(30):
        connector.apply(connector.fetch_ticket("5158"), note(number))
        now[0] = now[0].replace(second=number + 1)
    assert puts() == 30
    with pytest.raises(RateLimited) as deferred:
        connector.apply(connector.fetch_ticket("5158"), note(30))
    assert puts() == 30
    assert deferred.value.sent is False
    assert deferred.value.retry_after == 570  # now 10:00:30; the first update (10:00:00) leaves at 10:10:00

    fake.add_ticket({**fake.tickets["5158"], "id": 5159})
    connector.apply(connector.fetch_ticket("5159"), Decision(vendor="zendesk", ticket_id="5159", matrix_version="v1",
                                                             decided_at=now[0], internal_note="Other ticket."))
    assert len(fake.calls("PUT", "/api/v2/tickets/5159")) == 1

    now[0] = datetime(2026, 11, 27, 10, 10, 0, 500000, tzinfo=timezone.utc)
    connector.apply(connector.fetch_ticket("5158"), note(30))
    assert puts() == 31


def test_jira_requests_beyond_the_sites_budget_are_deferred_not_sent():
    """JIRA_REQUESTS_PER_MINUTE is the site's client-side budget: a fetch that would exceed it raises
    RateLimited (nothing sent) with the wait the budget names, instead of spending the quota the site's
    other apps share."""
    from connectors.base import RateLimited
    from connectors.jira.connector import JiraConnector
    from tests.support.jira_helpers import enterprise_matrix, make_settings, register_fetch, validated_jira_http

    class CountingBudget:
        def __init__(self, allowed: int):
            self.allowed, self.asked = allowed, 0

        def try_acquire(self) -> float:
            self.asked += 1
            return 0.0 if self.asked <= self.allowed else 42.0

    with validated_jira_http() as http:
        register_fetch(http)
        budget = CountingBudget(allowed=10_000)
        connector = JiraConnector(make_settings(), enterprise_matrix(), rate_limiter=budget,
                                  retry_policy=RetryPolicy(attempts=1, sleep=lambda s: None))
        connector.fetch_ticket("SUP-7")
        sent = len(http.calls)
        assert budget.asked == sent  # every request was taken from the budget

        budget.allowed = budget.asked  # spent
        with pytest.raises(RateLimited) as deferred:
            connector.fetch_ticket("SUP-7")
        assert len(http.calls) == sent
        assert (deferred.value.retry_after, deferred.value.sent) == (42.0, False)


def test_a_new_ticket_holding_only_its_requesters_description_reads_no_comments(connector, fake):
    fake.add_ticket({**fake.tickets["5158"], "id": 5160, "submitter_id": 1001, "requester_id": 1001},
                    comments=[{"id": 80001, "type": "Comment", "author_id": 1001, "public": True,
                               "body": "Export is broken.", "created_at": "2026-11-27T11:00:00Z"}])
    ticket = connector.fetch_ticket("5160")
    assert fake.calls("GET", "/api/v2/tickets/5160/comments") == []
    assert ticket.first_public_agent_reply_at is None

    fake.comments["5160"].append({"id": 80002, "type": "Comment", "author_id": AGENT, "public": True,
                                  "body": "Looking into it.", "created_at": "2026-11-27T11:04:00Z"})
    fake.tickets["5160"]["updated_at"] = "2026-11-27T11:04:00Z"
    assert connector.fetch_ticket("5160").first_public_agent_reply_at == datetime(2026, 11, 27, 11, 4,
                                                                                tzinfo=timezone.utc)
    assert len(fake.calls("GET", "/api/v2/tickets/5160/comments")) == 1


def test_an_agent_created_ticket_reads_its_description(connector, fake):
    fake.add_ticket({**fake.tickets["5158"], "id": 5161, "submitter_id": AGENT, "requester_id": 1001},
                    comments=[{"id": 80011, "type": "Comment", "author_id": AGENT, "public": True,
                               "body": "Opened on the customer's behalf.", "created_at": "2026-11-27T11:00:00Z"}])
    ticket = connector.fetch_ticket("5161")
    assert len(fake.calls("GET", "/api/v2/tickets/5161/comments")) == 1
    assert ticket.first_public_agent_reply_at == datetime(2026, 11, 27, 11, 0, tzinfo=timezone.utc)
