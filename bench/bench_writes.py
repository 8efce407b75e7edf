"""Zendesk API writes per processed event: engine + Zendesk connector against an in-memory account.

Replays a mixed event stream over a few tickets: ticket creation, duplicate deliveries (processed again,
as if intake's de-duplication had missed them), no-op updates (subject edits, echoes of the service's
own writes), bursts of agent edits on one ticket, agent replies (acknowledgement), customers filling in
required data, a manual escalation by an agent, an agent edit racing a write (409 -> re-fetch,
re-decide), and solving. Every event gets a full pass: fetch (the API is the truth), `decide`, `apply`,
`next_state`; the HTTP layer is `responses` with tests/support/zendesk_fake.FakeZendesk behind it.

Prints API writes per effective decision (goal <= 1.0, the minimum Zendesk allows is 1 per decision
plus 1 when a decision carries both a customer reply and an internal note), and writes for no-op and
duplicate events (goal 0). Run: `.venv/bin/python bench/bench_writes.py`.
"""
from __future__ import annotations

import re
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import responses  # noqa: E402

from connectors.base import Conflict  # noqa: E402
from connectors.ratelimit import TokenBucket  # noqa: E402
from connectors.retry import RetryPolicy  # noqa: E402
from connectors.zendesk.connector import ZendeskConnector  # noqa: E402
from connectors.zendesk.settings import ZendeskSettings  # noqa: E402
from integration.engine import decide, next_state  # noqa: E402
from matrix_config.loader import load_matrix  # noqa: E402
from tests.support.zendesk_fake import FakeZendesk  # noqa: E402

START = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)  # a Monday, inside business hours


def new_ticket(ticket_id: int, *, issue_type: str, tier: str, environment: str | None = None,
               account: str | None = None, affected: int | None = None, tags: list[str] | None = None) -> dict:
    return {
        "id": ticket_id, "subject": f"Ticket {ticket_id}", "status": "new", "priority": None,
        "requester_id": 1001, "submitter_id": 1001, "assignee_id": None, "organization_id": 501, "group_id": None,
        "created_at": "2026-11-30T09:00:00Z", "updated_at": "2026-11-30T09:00:00Z",
        "via": {"channel": "email"}, "satisfaction_rating": None,
        "tags": [f"tier_{tier}", *(tags or [])],
        "custom_fields": [
            {"id": 360000100001, "value": issue_type}, {"id": 360000100003, "value": account},
            {"id": 360000100004, "value": environment}, {"id": 360000100005, "value": None},
            {"id": 360000100006, "value": str(affected) if affected is not None else None},
        ],
    }


class Replay:
    def __init__(self, fake: FakeZendesk, connector: ZendeskConnector, loaded):
        self.fake = fake
        self.connector = connector
        self.loaded = loaded
        self.states: dict[str, object] = {}
        self.now = START
        self.stats: Counter = Counter()
        self.log: list[tuple[str, str, int, bool]] = []  # kind, ticket, writes, effective
        self.reads_by_kind: Counter = Counter()
        self.minimum = 0  # writes Zendesk needs at least: 1 per writing decision, 2 for reply + note

    def agent_edit(self, ticket_id: str, **changes) -> None:
        ticket = self.fake.tickets[ticket_id]
        tags = changes.pop("add_tags", [])
        ticket["tags"] = [t for t in ticket["tags"] if t not in changes.pop("remove_tags", [])] + tags
        for cf_id, value in changes.pop("custom", {}).items():
            next(cf for cf in ticket["custom_fields"] if cf["id"] == cf_id)["value"] = value
        ticket.update(changes)
        self.now += timedelta(seconds=20)
        ticket["updated_at"] = self.now.strftime("%Y-%m-%dT%H:%M:%SZ")

    def agent_reply(self, ticket_id: str) -> None:
        self.now += timedelta(minutes=3)
        self.fake.comments.setdefault(ticket_id, []).append({
            "id": 99000 + len(self.log), "author_id": 2002, "public": True, "body": "On it.",
            "created_at": self.now.strftime("%Y-%m-%dT%H:%M:%SZ")})
        self.agent_edit(ticket_id)

    def event(self, kind: str, ticket_id: str, *, race=None) -> None:
        """One webhook -> one processing pass (fetch, decide, apply, next_state); 409 -> re-fetch, re-decide."""
        before = len(self.fake.writes)
        reads_before = len(self.fake.calls("GET"))
        effective = False
        minimum = 0
        for _round in range(3):
            ticket = self.connector.fetch_ticket(ticket_id)
            state = self.states.get(ticket_id)
            decision = decide(ticket, state, self.loaded.matrix, self.now, version=self.loaded.version)
            effective = effective or decision.writes_to_ticket
            minimum = (1 + bool(decision.public_reply and decision.internal_note)) if decision.writes_to_ticket else 0
            if race is not None:
                race()  # an agent saves the ticket between our read and our write
                race = None
            try:
                self.connector.apply(ticket, decision)
            except Conflict:
                self.stats["conflicts"] += 1
                continue
            self.states[ticket_id] = next_state(state, ticket, decision)
            break
        writes = len(self.fake.writes) - before
        self.minimum += minimum
        self.log.append((kind, ticket_id, writes, effective))
        self.reads_by_kind[kind] += len(self.fake.calls("GET")) - reads_before
        self.now += timedelta(seconds=30)


def run(loaded, *, baseline: bool = False) -> dict:
    """`baseline`: the connector as it was before per-ticket comment tracking (every pass reads all of a
    ticket's comments), for the side-by-side figures."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeZendesk(rsps)
        settings = ZendeskSettings(_env_file=None, subdomain="acme", email="bot@acme.example", api_token="x",
                                   user_id="9000")
        connector = ZendeskConnector(settings, loaded.matrix, rate_limiter=TokenBucket(100_000),
                                     retry_policy=RetryPolicy(sleep=lambda s: None))
        if baseline:
            connector.remembers_comments = False
        r = Replay(fake, connector, loaded)

        # A: a question that stays at L1.
        fake.add_ticket(new_ticket(6001, issue_type="question", tier="standard"))
        r.event("created", "6001")
        r.event("duplicate", "6001")
        r.event("echo", "6001")  # the webhook for the service's own update
        r.agent_edit("6001", subject="Where is the export button?")
        r.event("noop", "6001")
        r.agent_reply("6001")
        r.event("agent_reply", "6001")
        r.event("duplicate", "6001")

        # B: enterprise production outage -> L3, but required data is missing: data request first.
        fake.add_ticket(new_ticket(6002, issue_type="outage", tier="enterprise", environment="production"))
        r.event("created", "6002")
        r.event("duplicate", "6002")
        r.event("echo", "6002")
        # burst: five agent edits within two minutes
        for i in range(5):
            r.agent_edit("6002", add_tags=[f"triage_{i}"])
            r.event("burst", "6002")
        r.agent_edit("6002", custom={360000100003: "ACME-1", 360000100005: "deploy 14:02", 360000100006: "300"})
        r.event("data_supplied", "6002")  # the gate opens: escalation to L3
        r.event("duplicate", "6002")
        r.agent_reply("6002")
        r.event("agent_reply", "6002")

        # C: wide outage -> L2, then an agent escalates by hand to L4 while the service writes (409).
        fake.add_ticket(new_ticket(6003, issue_type="outage", tier="standard", environment="staging", account="A-3",
                                   affected=150))
        fake.tickets["6003"]["custom_fields"][3]["value"] = "rolled back"
        r.event("created", "6003")
        r.event("duplicate", "6003")
        r.agent_edit("6003", add_tags=["esc_l4"], remove_tags=["esc_l2"])
        r.event("manual_level", "6003", race=lambda: r.agent_edit("6003", subject="Outage (edited)"))
        r.event("echo", "6003")
        r.agent_edit("6003", status="solved")
        r.event("solved", "6003")
        r.event("duplicate", "6003")

        # D: a password reset (bypass rule): never escalates.
        fake.add_ticket(new_ticket(6004, issue_type="question", tier="enterprise", tags=["password_reset"]))
        r.event("created", "6004")
        for _ in range(3):
            r.agent_edit("6004", subject="pw")
            r.event("noop", "6004")

        puts = len(fake.calls("PUT", "/api/v2/tickets/"))
        gets = len(fake.calls("GET"))
        calls = Counter(re.sub(r"/\d+", "/{id}", urlsplit(c.request.url).path) for c in fake.calls("GET"))
        return {"log": r.log, "conflicts": r.stats["conflicts"], "puts": puts, "gets": gets, "writes": len(fake.writes),
                "minimum": r.minimum, "reads_by_kind": r.reads_by_kind, "reads_by_path": calls}


def without_entry_replies(loaded):
    """The example matrix with the on-enter customer replies removed: every decision is note + fields."""
    from matrix_config.loader import LoadedMatrix
    from matrix_config.schema import Matrix

    data = loaded.matrix.model_dump(mode="json")
    for level in data["levels"]:
        level["on_enter"]["reply"] = None
    matrix = Matrix.model_validate(data)
    return LoadedMatrix(matrix=matrix, version=matrix.version(), path=loaded.path)


def main() -> int:
    loaded = load_matrix(REPO / "matrix_config" / "examples" / "enterprise.yaml")
    failed = 0
    for title, matrix in (("example matrix (on-enter reply + note)", loaded),
                          ("example matrix without on-enter replies (note only)", without_entry_replies(loaded))):
        print(f"== {title}")
        failed |= report(run(matrix))
        calls_side_by_side(run(matrix, baseline=True), run(matrix))
        print()
    return failed


def calls_side_by_side(before: dict, after: dict) -> None:
    """Vendor API calls (reads + writes) per webhook: Zendesk's 700 requests/minute is the ceiling of the
    whole service, so this is the figure that bounds webhooks per minute (goal <= 1.5)."""
    events = max(1, len(after["log"]))
    print(f"{'per webhook':<34}{'baseline':>10}{'now':>10}")
    for label, key in (("reads (GET)", "gets"), ("writes (PUT)", "puts")):
        print(f"  {label:<32}{before[key] / events:>10.2f}{after[key] / events:>10.2f}")
    print(f"  {'API calls (goal <= 1.5)':<32}{(before['gets'] + before['puts']) / events:>10.2f}"
          f"{(after['gets'] + after['puts']) / events:>10.2f}")
    print("  reads by path (whole run):")
    for path in sorted(set(before["reads_by_path"]) | set(after["reads_by_path"])):
        print(f"    {path:<44}{before['reads_by_path'][path]:>6}{after['reads_by_path'][path]:>6}")
    print("  reads by event kind (whole run):")
    for kind in before["reads_by_kind"]:
        print(f"    {kind:<44}{before['reads_by_kind'][kind]:>6}{after['reads_by_kind'][kind]:>6}")


def report(result: dict) -> int:
    log = result["log"]
    effective = [w for kind, _, w, eff in log if eff]
    idle = [(kind, w) for kind, _, w, eff in log if not eff]
    dup_noop = [(kind, w) for kind, w in idle if kind in ("duplicate", "noop", "echo", "burst")]
    by_kind: dict[str, list[int]] = {}
    for kind, _, writes, _ in log:
        by_kind.setdefault(kind, []).append(writes)
    print(f"events processed:                 {len(log)}")
    print(f"effective decisions:              {len(effective)}")
    print(f"API writes (PUT /tickets):        {sum(effective) + sum(w for _, w in idle)}")
    print(f"writes per effective decision:    {sum(effective) / max(1, len(effective)):.2f}  "
          "(Zendesk takes one comment per update: a decision with reply + note needs 2)")
    print(f"writes / Zendesk's minimum:       {sum(effective) / max(1, result['minimum']):.2f}  (goal <= 1.0)")
    single = [w for kind, _, w, eff in log if eff]
    print(f"  max writes for one decision:    {max(single) if single else 0}")
    print(f"writes for duplicates/no-ops:     {sum(w for _, w in dup_noop)} over {len(dup_noop)} events (goal 0)")
    print(f"writes per processed event:       {result['writes'] / max(1, len(log)):.2f}")
    print(f"reads per processed event:        {result['gets'] / max(1, len(log)):.2f}")
    print(f"409 conflicts re-decided:         {result['conflicts']}")
    for kind, writes in by_kind.items():
        print(f"  {kind:<16} events {len(writes):>2}  writes {sum(writes):>2}")
    return 0 if sum(w for _, w in dup_noop) == 0 and sum(effective) <= result["minimum"] else 1


if __name__ == "__main__":
    sys.exit(main())
