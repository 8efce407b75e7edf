"""Replay: what a draft matrix would have done to recorded history (`escalation replay`).

For every ticket in a `snapshots.History`, two worlds are simulated over the recorded timeline with the
pure engine and the clock rules, and compared:

- the *baseline*: each pass decided with the matrix version that really decided it (stored by version);
- the *draft*: every pass decided with the draft matrix.

Both run the same way, so a draft equal to the recorded versions differs in nothing, and every difference
reported is the draft's. In each world a pass at its recorded time (`taken_at`) runs
`decide` -> `next_state` -> `clocks.track` -> `clocks.plan_timers` on the recorded snapshot, and the
world's own SLA timers fire in simulated time, at their due time, on the ticket as that world left it
(`clocks.on_timer`, like the worker). Recorded timer passes are observations of the ticket only: the
timers a world fires are its own. After a ticket's last pass its timers keep firing up to the end of
the history (the latest recorded pass of all), so a tightened target breaches a ticket still open then.

A recorded snapshot shows the ticket after the *recorded* service's writes (its level field, priority,
group, tags). Each world sees the ticket with its own writes instead: an attribute whose value in a
snapshot is what the previous snapshot showed, before or after the recorded decision was carried out,
was left alone by people, so the world's own value stands; any other value was set by a person (or the
vendor) and applies in both worlds. Nothing is written and no vendor is called.
"""
from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Callable, Mapping

from integration import clocks
from integration.engine import apply_to_ticket, decide, next_state
from integration.model import Decision, Ticket, TicketState, TimerSpec
from integration.snapshots import History, RecordedPass
from matrix_config.loader import LoadedMatrix, MatrixInvalid, load_matrix_text

RESOLVED = frozenset({"solved", "closed"})


# ------------------------------------------------------------------------------------ one world
@dataclass
class Course:
    """What one world did to one ticket: the effects an admin compares."""

    levels: list[str] = field(default_factory=list)  # each level entered, in order
    owners: list[str] = field(default_factory=list)  # each owner group set
    priorities: list[str] = field(default_factory=list)  # each priority set
    messages: list[str] = field(default_factory=list)  # customer messages: "template: text"
    breaches: list[tuple[str, str]] = field(default_factory=list)  # (level, clock) that ran out
    decisions: int = 0

    def take(self, decision: Decision | None, *, breach: tuple[str, str] | None = None) -> None:
        if decision is None or decision.is_empty:
            return
        self.decisions += 1
        if decision.to_level:
            self.levels.append(decision.to_level)
        if decision.owner_group:
            self.owners.append(decision.owner_group)
        if decision.priority:
            self.priorities.append(decision.priority)
        if decision.public_reply:
            self.messages.append(f"{decision.reply_template or 'reply'}: {decision.public_reply}")
        if breach is not None:
            self.breaches.append(breach)


def _same(value: Any, *seen: Any) -> bool:
    return any(value == other for other in seen)


def rebase(snapshot: Ticket, real_before: Ticket, real_after: Ticket, world: Ticket) -> Ticket:
    """The recorded `snapshot` as one world would have seen it: attributes people left alone since the
    previous pass (`real_before`, `real_after` = the recorded decision carried out) keep the world's
    values (`world` = the world's ticket after its own writes)."""
    changes: dict[str, Any] = {}
    for name in ("priority", "group"):
        if _same(getattr(snapshot, name), getattr(real_before, name), getattr(real_after, name)):
            changes[name] = getattr(world, name)
    fields = dict(snapshot.fields)
    for key in set(snapshot.fields) | set(real_before.fields) | set(real_after.fields) | set(world.fields):
        if _same(snapshot.fields.get(key), real_before.fields.get(key), real_after.fields.get(key)):
            if world.fields.get(key) is None:
                fields.pop(key, None)
            else:
                fields[key] = world.fields[key]
    if fields != dict(snapshot.fields):
        changes["fields"] = fields
        if fields.get("level") != snapshot.fields.get("level"):
            changes["level_set_at"] = world.level_set_at if world.fields.get("level") == fields.get("level") else None
    tags = set()
    for tag in snapshot.tags | real_before.tags | real_after.tags | world.tags:
        present = tag in snapshot.tags
        if _same(present, tag in real_before.tags, tag in real_after.tags):
            present = tag in world.tags
        if present:
            tags.add(tag)
    if tags != set(snapshot.tags):
        changes["tags"] = frozenset(tags)
    return replace(snapshot, **changes) if changes else snapshot


class World:
    """One ticket's simulation under one way of choosing the matrix (`matrix_for(version)`)."""

    def __init__(self, matrix_for: Callable[[str | None], LoadedMatrix]):
        self.matrix_for = matrix_for
        self.state: TicketState | None = None
        self.ticket: Ticket | None = None  # the ticket after this world's writes
        self.timers: list[tuple[datetime, int, TimerSpec]] = []
        self._keys: set[tuple] = set()
        self._seq = 0
        self.course = Course()

    def _schedule(self, specs: list[TimerSpec]) -> None:
        for spec in specs:
            if spec.key() in self._keys:
                continue
            self._keys.add(spec.key())
            self._seq += 1
            heapq.heappush(self.timers, (spec.due_at, self._seq, spec))

    def _cancel(self, keep: Callable[[TimerSpec], bool]) -> None:
        kept = [entry for entry in self.timers if keep(entry[2])]
        if len(kept) != len(self.timers):
            heapq.heapify(kept)
            self.timers = kept

    def _after(self, before: TicketState, after: TicketState, ticket: Ticket, cancel_kinds: tuple[str, ...] = ()) -> None:
        """The timer host's cancellations after a pass (integration.pipeline.commit._replan_timers)."""
        if before.level and before.level != after.level:
            self._cancel(lambda spec: (spec.level or "") == (after.level or ""))
        if ticket.status in RESOLVED:
            self._cancel(lambda spec: False)
        if cancel_kinds:
            self._cancel(lambda spec: spec.kind not in cancel_kinds)

    def fire_until(self, until: datetime) -> None:
        while self.timers and self.timers[0][0] < until:
            due, _, spec = heapq.heappop(self.timers)
            if self.ticket is None:
                continue
            current = self.state or TicketState(vendor=spec.vendor, ticket_id=spec.ticket_id)
            loaded = self.matrix_for(current.matrix_version or spec.matrix_version)
            outcome = clocks.on_timer(spec, self.ticket, current, loaded.matrix, due)
            after = outcome.state if outcome.state is not None else current
            decision = outcome.decision
            key = f"{spec.clock}:breach"
            # The breach is in the clock book of the level it happened at; a breach that moved the ticket left
            # that level (and its book) behind.
            ran_out = after.level != current.level or (
                key in clocks.ClockBook.of(after).alerts and key not in clocks.ClockBook.of(current).alerts)
            breach = (spec.level or "", spec.clock or "") if spec.kind == clocks.BREACH and ran_out else None
            self.course.take(decision, breach=breach)
            self._after(current, after, self.ticket, tuple(outcome.cancel_kinds or ()))
            self._schedule(list(outcome.schedule or []))
            self.state = after
            if decision is not None:
                self.ticket = apply_to_ticket(self.ticket, decision)

    def observe(self, ticket: Ticket) -> None:
        """A recorded timer pass: the ticket as it was then; this world's timers do the firing."""
        self.ticket = ticket

    def decide(self, ticket: Ticket, version: str, now: datetime) -> None:
        loaded = self.matrix_for(version)
        before = self.state
        decision = decide(ticket, before, loaded.matrix, now, version=loaded.version)
        after = clocks.track(next_state(before, ticket, decision), ticket, loaded.matrix, now)
        self.course.take(decision)
        start = before or TicketState(vendor=ticket.vendor, ticket_id=ticket.id)
        self._after(start, after, ticket)
        self._schedule(clocks.plan_timers(before, after, decision, ticket, loaded.matrix, now))
        self.state = after
        self.ticket = apply_to_ticket(ticket, decision)


def run_ticket(passes: list[RecordedPass], matrix_for: Callable[[str | None], LoadedMatrix], end: datetime) -> Course:
    """One world over one ticket's recorded passes (oldest first), its timers fired up to `end`."""
    world = World(matrix_for)
    real_before: Ticket | None = None
    real_after: Ticket | None = None
    for recorded in passes:
        world.fire_until(recorded.taken_at)
        snapshot = recorded.ticket
        seen = snapshot if world.ticket is None or real_before is None else rebase(
            snapshot, real_before, real_after, world.ticket)
        if recorded.is_timer:
            world.observe(seen)
        else:
            world.decide(seen, recorded.matrix_version, recorded.taken_at)
        real_before = snapshot
        real_after = apply_to_ticket(snapshot, recorded.decision) if recorded.decision is not None else snapshot
    world.fire_until(end)
    return world.course


# ------------------------------------------------------------------------------------ comparing
@dataclass
class TicketDifference:
    vendor: str
    ticket_id: str
    levels: tuple[list[str], list[str]] | None = None  # (baseline, draft) level paths, when they differ
    owners: tuple[list[str], list[str]] | None = None
    priorities: tuple[list[str], list[str]] | None = None
    messages_added: list[str] = field(default_factory=list)
    messages_removed: list[str] = field(default_factory=list)
    breaches_added: list[tuple[str, str]] = field(default_factory=list)  # would breach with the draft
    breaches_removed: list[tuple[str, str]] = field(default_factory=list)  # would no longer breach

    @property
    def any(self) -> bool:
        return bool(self.levels or self.owners or self.priorities or self.messages_added or self.messages_removed
                    or self.breaches_added or self.breaches_removed)

    def as_dict(self) -> dict[str, Any]:
        def pair(value: tuple[list[str], list[str]] | None) -> dict[str, list[str]] | None:
            return None if value is None else {"baseline": value[0], "draft": value[1]}

        return {"vendor": self.vendor, "ticket_id": self.ticket_id, "levels": pair(self.levels),
                "owners": pair(self.owners), "priorities": pair(self.priorities),
                "messages_added": self.messages_added, "messages_removed": self.messages_removed,
                "breaches_added": [{"level": level, "clock": clock} for level, clock in self.breaches_added],
                "breaches_removed": [{"level": level, "clock": clock} for level, clock in self.breaches_removed]}


def _multiset_minus(a: list, b: list) -> list:
    return list((Counter(a) - Counter(b)).elements())


def compare(vendor: str, ticket_id: str, baseline: Course, draft: Course) -> TicketDifference:
    def paths(a: list[str], b: list[str]) -> tuple[list[str], list[str]] | None:
        return None if a == b else (list(a), list(b))

    return TicketDifference(
        vendor, ticket_id, levels=paths(baseline.levels, draft.levels), owners=paths(baseline.owners, draft.owners),
        priorities=paths(baseline.priorities, draft.priorities),
        messages_added=_multiset_minus(draft.messages, baseline.messages),
        messages_removed=_multiset_minus(baseline.messages, draft.messages),
        breaches_added=sorted(_multiset_minus(draft.breaches, baseline.breaches)),
        breaches_removed=sorted(_multiset_minus(baseline.breaches, draft.breaches)))


@dataclass
class ReplayReport:
    draft_version: str
    tickets: int = 0
    passes: int = 0
    end: datetime | None = None
    differences: list[TicketDifference] = field(default_factory=list)  # only tickets that differ
    skipped: dict[str, list[str]] = field(default_factory=dict)  # matrix version not stored -> ticket keys
    breaches_baseline: int = 0
    breaches_draft: int = 0
    per_level: dict[str, dict[str, int]] = field(default_factory=dict)  # level -> entries/breaches per world

    @property
    def empty(self) -> bool:
        return self.passes == 0

    def summary(self) -> dict[str, Any]:
        return {
            "tickets": self.tickets, "passes": self.passes, "tickets_differing": len(self.differences),
            "level_path_changes": sum(1 for d in self.differences if d.levels),
            "messages_added": sum(len(d.messages_added) for d in self.differences),
            "messages_removed": sum(len(d.messages_removed) for d in self.differences),
            "breaches_baseline": self.breaches_baseline, "breaches_draft": self.breaches_draft,
            "breach_delta": self.breaches_draft - self.breaches_baseline,
            "per_level": {level: dict(counts) for level, counts in sorted(self.per_level.items())},
            "skipped_tickets": sum(len(keys) for keys in self.skipped.values()),
        }

    def as_dict(self) -> dict[str, Any]:
        return {"draft_version": self.draft_version, "history_end": self.end.isoformat() if self.end else None,
                "summary": self.summary(), "tickets": [d.as_dict() for d in self.differences],
                "skipped": {version: keys for version, keys in sorted(self.skipped.items())}}


class _RecordedVersions:
    """The stored matrix versions of a history, parsed once each."""

    def __init__(self, sources: Mapping[str, tuple[str, str]]):
        self.sources = sources
        self.loaded: dict[str, LoadedMatrix | None] = {}

    def get(self, version: str | None) -> LoadedMatrix | None:
        if version is None:
            return None
        if version not in self.loaded:
            source = self.sources.get(version)
            loaded = None
            if source is not None:
                try:
                    loaded = load_matrix_text(source[1], source[0])
                except MatrixInvalid:
                    loaded = None
                if loaded is not None and loaded.version != version:
                    loaded = replace(loaded, version=version)  # stored under its version (see matrix_versions)
            self.loaded[version] = loaded
        return self.loaded[version]


def replay(history: History, draft: LoadedMatrix, *, progress: Callable[[int], None] | None = None) -> ReplayReport:
    """Compare the draft with the recorded matrix versions over `history`. `progress(n)` after each ticket
    (n passes done)."""
    report = ReplayReport(draft_version=draft.version, passes=len(history.passes))
    if not history.passes:
        return report
    end = max(p.taken_at for p in history.passes)
    report.end = end
    recorded = _RecordedVersions(history.matrix_sources)

    def per_level(level: str, key: str) -> None:
        counts = report.per_level.setdefault(level, {"entries_baseline": 0, "entries_draft": 0,
                                                     "breaches_baseline": 0, "breaches_draft": 0})
        counts[key] += 1

    for (vendor, ticket_id), passes in history.by_ticket().items():
        missing = sorted({p.matrix_version for p in passes if recorded.get(p.matrix_version) is None})
        if missing:
            report.skipped.setdefault(missing[0], []).append(f"{vendor}:{ticket_id}")
            if progress is not None:
                progress(len(passes))
            continue
        report.tickets += 1

        def baseline_matrix(version: str | None, _fallback: str = passes[-1].matrix_version) -> LoadedMatrix:
            return recorded.get(version) or recorded.get(_fallback)

        base = run_ticket(passes, baseline_matrix, end)
        other = run_ticket(passes, lambda _version: draft, end)
        for world, course in (("baseline", base), ("draft", other)):
            for level in course.levels:
                per_level(level, f"entries_{world}")
            for level, _clock in course.breaches:
                per_level(level, f"breaches_{world}")
        report.breaches_baseline += len(base.breaches)
        report.breaches_draft += len(other.breaches)
        difference = compare(vendor, ticket_id, base, other)
        if difference.any:
            report.differences.append(difference)
        if progress is not None:
            progress(len(passes))
    return report
