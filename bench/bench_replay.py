"""Recorded passes per second of `escalation replay` (integration.replay) on one core.

The history is recorded through the product's own write path: the pipeline (`add_hint` + `process_ticket`,
`fire_timer` for every SLA timer at its due time) with the fake helpdesk and an injected clock, on the
example enterprise matrix (business calendar), in a throwaway SQLite file. A mix of tickets: questions and
bugs placed at L1 (some acknowledged in time, some not, so their breach moves them to L2), enterprise
outages placed at L3, wide outages at L2, some set to L2 by hand, some solved. That history is then
exported, read back (`read_history_file`) and its tickets repeated under new ids until it holds
`--passes` passes (default 10,000), and replayed with the same matrix and with a draft whose L1
acknowledge target is tighter (1h -> 30m).

Run: `.venv/bin/python bench/bench_replay.py [--passes 10000] [--tickets 40] [--matrix enterprise.yaml]`
(`taskset -c 0` to hold it to one core).
Goal (issue 14): 10,000 recorded passes in under a minute on one core.
"""
from __future__ import annotations

import argparse
import gzip
import random
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import select  # noqa: E402

from integration.store.events import add_hint  # noqa: E402
from integration.pipeline import fire_timer, process_ticket  # noqa: E402
from integration.replay import replay  # noqa: E402
from integration.snapshots import History, export_lines, read_history_file  # noqa: E402
from integration.store.db import TimerRow  # noqa: E402
from matrix_config.loader import load_matrix, load_matrix_text  # noqa: E402
from tests.support.fake_connector import FakeConnector, ManualClock, make_runtime, make_settings  # noqa: E402

MATRIX = REPO / "matrix_config" / "examples" / "enterprise.yaml"
START = datetime(2026, 11, 2, 7, 0, tzinfo=timezone.utc)  # a Monday
OUTAGE = {"issue_type": "outage", "customer_tier": "enterprise", "environment": "production",
          "account_id": "GLX-1", "recent_changes": "deploy 4.2", "affected_users": 40}
WIDE = {"issue_type": "outage", "affected_users": 500, "account_id": "A-2", "environment": "production",
        "recent_changes": "none"}
BUG_WITH_L2_DATA = {"issue_type": "bug", "account_id": "A-1", "environment": "production", "recent_changes": "none"}


def record(database_url: str, matrix: Path, tickets: int, seed: int = 14) -> None:
    rng = random.Random(seed)
    fake = FakeConnector("zendesk")
    clock = ManualClock(START)
    runtime = make_runtime(make_settings(database_url, MATRIX_PATH=str(matrix)), fake, clock=clock)
    db = runtime.db

    def advance(to: datetime) -> None:
        while True:
            with db.session() as session:
                due = session.execute(select(TimerRow.id, TimerRow.due_at).where(
                    TimerRow.status == "pending", TimerRow.due_at <= to).order_by(TimerRow.due_at, TimerRow.id)).first()
            if due is None:
                break
            clock.value = due.due_at
            fire_timer(due.id, deps=runtime.deps())
        clock.value = to

    plan: list[tuple[datetime, str, str, dict]] = []  # (when, ticket, action, changes)
    for n in range(tickets):
        ticket_id = f"B{n:04d}"
        opened = START + timedelta(minutes=rng.randrange(0, 5 * 24 * 60))
        kind = rng.choices(["question", "bug", "bug_l2_data", "outage", "wide"], [4, 3, 2, 1, 1])[0]
        fields = {"question": {"issue_type": "question"}, "bug": {"issue_type": "bug"},
                  "bug_l2_data": BUG_WITH_L2_DATA, "outage": OUTAGE, "wide": WIDE}[kind]
        plan.append((opened, ticket_id, "create", {"fields": dict(fields)}))
        if rng.random() < 0.7:
            ack = opened + timedelta(minutes=rng.randrange(5, 600))
            plan.append((ack, ticket_id, "edit", {"first_public_agent_reply_at": ack.isoformat(),
                                                   "last_public_agent_reply_at": ack.isoformat()}))
        if kind.startswith("bug") and rng.random() < 0.2:
            plan.append((opened + timedelta(hours=rng.randrange(1, 30)), ticket_id, "level", {"level": "L2"}))
        if rng.random() < 0.5:
            plan.append((opened + timedelta(hours=rng.randrange(2, 72)), ticket_id, "edit", {"status": "solved"}))
    plan.sort(key=lambda step: step[0])
    for when, ticket_id, action, changes in plan:
        advance(when)
        if action == "create":
            fake.put(ticket_id, created_at=when.isoformat(), updated_at=when.isoformat(), **changes)
        else:
            def change(record: dict, changes: dict = changes, action: str = action, when: datetime = when) -> None:
                if action == "level":
                    record["fields"] = {**record["fields"], **changes}
                else:
                    record.update(changes)
                record["updated_at"] = when.isoformat()
            fake.edit(ticket_id, change)
        add_hint(db, "zendesk", ticket_id, "bench", key=f"{ticket_id}@{when.isoformat()}", now=when)
        process_ticket("zendesk", ticket_id, deps=runtime.deps())
    advance(max(step[0] for step in plan))
    db.dispose()


def repeated(history: History, passes: int) -> History:
    """The history's tickets again under new ids (same timeline) until it holds `passes` passes."""
    tickets = list(history.by_ticket().values())
    out: list = []
    copy = 0
    while len(out) < passes:
        for ticket_passes in tickets:
            for recorded in ticket_passes:
                new_id = f"{recorded.ticket_id}-{copy}"
                out.append(replace(recorded, ticket_id=new_id, ticket=replace(recorded.ticket, id=new_id)))
            if len(out) >= passes:
                break
        copy += 1
    return History(passes=out, matrix_sources=dict(history.matrix_sources))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=10_000)
    parser.add_argument("--tickets", type=int, default=40, help="tickets recorded through the pipeline")
    parser.add_argument("--matrix", default=str(MATRIX), help="a matrix shaped like the enterprise example")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        database_url = f"sqlite:///{Path(tmp) / 'history.db'}"
        started = time.perf_counter()
        record(database_url, Path(args.matrix), args.tickets)
        recorded_in = time.perf_counter() - started
        from integration.store.db import Database

        db = Database(database_url)
        exported = Path(tmp) / "history.jsonl.gz"
        with gzip.open(exported, "wt", encoding="utf-8") as handle:
            for line in export_lines(db):
                handle.write(line + "\n")
        db.dispose()
        started = time.perf_counter()
        history = read_history_file(exported)
        read_in = time.perf_counter() - started
        print(f"recorded {len(history.passes)} passes of {history.ticket_count} tickets through the pipeline "
              f"in {recorded_in:.1f} s; export {exported.stat().st_size / 1024:.0f} KiB, read back in {read_in:.2f} s")
        base = load_matrix(args.matrix)
        draft = load_matrix_text(base.source.replace("sla: {acknowledge: 1h, diagnose: 8h",
                                                     "sla: {acknowledge: 30m, diagnose: 8h"), "draft.yaml")
        if draft.version == base.version:
            raise SystemExit("the draft did not change: the example matrix's L1 line moved, update the bench")
        big = repeated(history, args.passes)
        for name, matrix in (("same matrix", base), ("draft (L1 acknowledge 30m)", draft)):
            started = time.perf_counter()
            report = replay(big, matrix)
            elapsed = time.perf_counter() - started
            summary = report.summary()
            print(f"{name}: {summary['passes']} passes, {summary['tickets']} tickets in {elapsed:.1f} s = "
                  f"{summary['passes'] / elapsed:,.0f} passes/s; {summary['tickets_differing']} tickets differ, "
                  f"breaches {summary['breaches_baseline']} -> {summary['breaches_draft']}")


if __name__ == "__main__":
    main()
