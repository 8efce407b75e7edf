"""A week of escalation history for the metrics and report tests, seeded through the public write path:
the pipeline (`add_hint` + `process_ticket`, `fire_timer` for the SLA timers) with the fake helpdesk and
an injected clock, on the example enterprise matrix (business calendar Europe/Berlin, Mon-Fri
08:00-18:00; Berlin is UTC+1 in November). Every ticket is the fake's default organization "acme" with
requester "cust-1" unless said otherwise. Times below are UTC.

  Oct 01 10:00  404 question, rated bad (outside any 30-day window of the week)
  Mon 11-23 08:00  603 bug placed at L1; acknowledged 08:30
  Mon 11-23 09:00  605 bug placed at L1 (L2 data present); an agent sets the level to L2 Tue 09:00
  Mon 11-23 10:00  401 question, rated good
  Tue 11-24 10:00  402 question, rated bad; 405 question of organization "globex", rated good
  Tue 11-24 16:00  604 bug placed at L1; acknowledged Wed 07:30 (after a night)
  Wed 11-25 09:00  301 enterprise production outage: placed straight at L3 by rule enterprise-outage;
                   acknowledged 09:10; solved Thu 11-26 09:00; rated good Thu 12:00
  Wed 11-25 12:00  501 the same kind of outage for "initech", handled by a DRY-RUN service: placed at L3,
                   acknowledged and rated good 12:05, never solved
  Fri 11-27 10:00  403 question, rated good
  Fri 11-27 16:30  601 bug placed at L1; acknowledged Mon 11-30 07:20 (after a weekend)
  Fri 11-27 16:45  602 bug placed at L1 (L2 data present); its acknowledge warning (50 %) fires Mon 07:15
                   and its breach Mon 07:45, which moves it to L2 (on_breach acknowledge: L2)
  NOW = Mon 11-30 09:00
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select

from integration.store.events import add_hint
from integration.pipeline import fire_timer, process_ticket
from integration.store.db import TimerRow
from tests.support.fake_connector import FakeConnector, ManualClock, make_runtime, make_settings


def utc(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=timezone.utc)


NOW = utc(11, 30, 9)
OUTAGE = {"issue_type": "outage", "customer_tier": "enterprise", "environment": "production",
          "account_id": "GLX-1", "recent_changes": "deploy 4.2", "affected_users": 40}
BUG_WITH_L2_DATA = {"issue_type": "bug", "account_id": "A-1", "environment": "production", "recent_changes": "none"}


@dataclass
class History:
    database_url: str
    live: Any  # Runtime
    dry: Any  # Runtime (DRY_RUN=true) over the same database
    fake: FakeConnector
    breach_reason: str  # the reason the service recorded for 602's acknowledge breach

    def dispose(self) -> None:
        self.live.db.dispose()
        self.dry.db.dispose()


def build_history(database_url: str) -> History:
    fake = FakeConnector("zendesk")
    clock = ManualClock(utc(10, 1, 10))
    live = make_runtime(make_settings(database_url), fake, clock=clock)
    dry = make_runtime(make_settings(database_url, DRY_RUN=True), fake, clock=clock)

    def run(runtime: Any, ticket_id: str, at: datetime) -> None:
        clock.value = at
        add_hint(runtime.db, "zendesk", ticket_id, "test", key=f"{ticket_id}@{at.isoformat()}", now=at)
        process_ticket("zendesk", ticket_id, deps=runtime.deps())

    def create(ticket_id: str, at: datetime, runtime: Any = live, **record: Any) -> None:
        fake.put(ticket_id, created_at=at.isoformat(), updated_at=at.isoformat(), **record)
        run(runtime, ticket_id, at)

    def edit(ticket_id: str, at: datetime, runtime: Any = live, fields: dict | None = None, **changes: Any) -> None:
        def change(record: dict) -> None:
            record.update(changes, updated_at=at.isoformat())
            if fields:
                record["fields"] = {**record["fields"], **fields}
        fake.edit(ticket_id, change)
        run(runtime, ticket_id, at)

    def acknowledge(ticket_id: str, at: datetime, runtime: Any = live, **changes: Any) -> None:
        edit(ticket_id, at, runtime, first_public_agent_reply_at=at.isoformat(),
             last_public_agent_reply_at=at.isoformat(), **changes)

    def fire(ticket_id: str, kind: str, fraction: float, at: datetime) -> None:
        clock.value = at
        with live.db.session() as session:
            (timer_id,) = session.scalars(select(TimerRow.id).where(
                TimerRow.ticket_id == ticket_id, TimerRow.kind == kind, TimerRow.clock == "acknowledge",
                TimerRow.level == "L1", TimerRow.fraction == fraction, TimerRow.status == "pending")).all()
        assert fire_timer(timer_id, deps=live.deps()) == "fired"

    question = {"issue_type": "question"}
    create("404", utc(10, 1, 10), fields=question, satisfaction="bad")
    create("603", utc(11, 23, 8), fields={"issue_type": "bug"})
    acknowledge("603", utc(11, 23, 8, 30))
    create("605", utc(11, 23, 9), fields=BUG_WITH_L2_DATA)
    create("401", utc(11, 23, 10), fields=question, satisfaction="good")
    edit("605", utc(11, 24, 9), fields={"level": "L2"})  # set by hand
    create("402", utc(11, 24, 10), fields=question, satisfaction="bad")
    create("405", utc(11, 24, 10), fields=question, satisfaction="good", organization="globex")
    create("604", utc(11, 24, 16), fields={"issue_type": "bug"})
    acknowledge("604", utc(11, 25, 7, 30))
    create("301", utc(11, 25, 9), fields=OUTAGE)
    acknowledge("301", utc(11, 25, 9, 10))
    create("501", utc(11, 25, 12), dry, fields=OUTAGE, organization="initech")
    acknowledge("501", utc(11, 25, 12, 5), dry, satisfaction="good")
    edit("301", utc(11, 26, 9), status="solved")
    edit("301", utc(11, 26, 12), satisfaction="good")
    create("403", utc(11, 27, 10), fields=question, satisfaction="good")
    create("601", utc(11, 27, 16, 30), fields={"issue_type": "bug"})
    create("602", utc(11, 27, 16, 45), fields=BUG_WITH_L2_DATA)
    fire("602", "warning", 0.5, utc(11, 30, 7, 15))
    acknowledge("601", utc(11, 30, 7, 20))
    fire("602", "breach", 1.0, utc(11, 30, 7, 45))
    clock.value = NOW

    from integration.store.db import DecisionRow

    with live.db.session() as session:
        reason = session.scalars(select(DecisionRow.reason).where(
            DecisionRow.ticket_id == "602", DecisionRow.to_level == "L2")).one()
    return History(database_url, live, dry, fake, reason)
