"""What a pass is given and what it returns: `PassDeps` (database, connectors, matrix, queue, engine and
clock rules), the shared per-cycle values, and the constants every stage of a pass agrees on."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Protocol

from connectors.base import ApplyResult, Connector, NotFound, Permanent, Unauthorized
from integration import clocks as clock_rules
from integration.engine import decide as engine_decide
from integration.engine import next_state as engine_next_state
from integration.model import Decision, Ticket, TicketState, TimerOutcome, TimerSpec
from integration.store.db import Database, utcnow
from matrix_config.loader import LoadedMatrix
from matrix_config.schema import Matrix

MAX_CONFLICT_ROUNDS = 3
MAX_ROUNDS_PER_TASK = 3  # events that arrive during a pass are taken in the same task, a few times over
RESOLVED = frozenset({"solved", "closed"})
# A pass that gets NotFound while one of these events is pending closes the ticket as deleted rather than
# dead-lettering its events: the dead-letter list is what operators watch for real problems. Zendesk's
# event names (a merged-away ticket is closed and may no longer be readable), and Jira's, should the edge
# record that one for processing.
DELETION_EVENTS = frozenset({"ticket.soft_deleted", "ticket.permanently_deleted", "ticket.merged",
                             "jira:issue_deleted"})
DELETED = "deleted"  # ticket_state.status of a ticket closed that way
PERMANENT_ERRORS = (NotFound, Unauthorized, Permanent)


class ClockRules(Protocol):
    """The SLA clock rules a pass consults (`integration.clocks`; tests give stubs)."""

    def track(self, state: TicketState, ticket: Ticket, matrix: Matrix, now: datetime) -> TicketState: ...

    def plan_timers(self, before: TicketState | None, after: TicketState, decision: Decision | None,
                    ticket: Ticket, matrix: Matrix, now: datetime) -> list[TimerSpec]: ...

    def on_timer(self, timer: TimerSpec, ticket: Ticket, state: TicketState, matrix: Matrix,
                 now: datetime) -> TimerOutcome: ...


@dataclass
class PassDeps:
    db: Database
    connector_for: Callable[[str], Connector]
    current_matrix: Callable[[], LoadedMatrix]
    dry_run_for: Callable[[str], bool]
    lease_seconds: float = 30.0  # Settings.lease_seconds (LEASE_SECONDS) in a Runtime
    max_attempts: int = 8
    backoff_base: float = 2.0
    backoff_max: float = 600.0
    now: Callable[[], datetime] = utcnow
    enqueue_ticket: Callable[[str, str, float | None], None] | None = None
    enqueue_timer: Callable[[int, datetime | None], None] | None = None
    # Takes the reconciler's hint marker `name` (integration.pipeline.reconcile.ticket_hint / timer_hint):
    # False while the task of its earlier hint under that name still waits in the queue
    # (service.runtime.Runtime.take_hint). None: the reconciler enqueues every time.
    take_hint: Callable[[str], bool] | None = None
    decide: Callable[..., Decision] = engine_decide
    next_state: Callable[[TicketState | None, Ticket, Decision], TicketState] = engine_next_state
    clocks: ClockRules | None = clock_rules  # None: no SLA clocks (no timers planned, none fired)
    # (vendor, matrix version) -> the connector whose field/group mappings serve tickets pinned to that
    # version (service.runtime.Runtime.connector_for_version). None: `connector_for` serves every ticket.
    connector_for_version: Callable[[str, str], Connector] | None = None


@dataclass
class PassResult:
    status: str  # busy | nothing | echo | seen (no read: nothing newer, pipeline.seen) | done | retry | dead
    decision_id: int | None = None
    writes: int = 0
    events: list[int] = field(default_factory=list)
    error: str | None = None


class AlreadyFired(Exception):
    pass


DecideFn = Callable[[Ticket, TicketState | None, LoadedMatrix, datetime],
                    tuple[Decision | None, TicketState, list | None, tuple[str, ...]]]


@dataclass(frozen=True)
class PassContext:
    """What every final commit of one cycle shares; built once per cycle."""

    trigger: str  # "events", "timer:<id>"
    matrix: LoadedMatrix  # the version that decides the ticket (its pin, or the current one)
    dry_run: bool
    event_ids: tuple[int, ...] = ()  # marked done in the final commit (an events pass)
    owner: str | None = None  # the lease owner that claimed `event_ids`
    timer_id: int | None = None  # marked fired in the final commit (a timer firing)


@dataclass(frozen=True)
class RoundOutcome:
    """One decision round: what `decide_fn` returned, and the state it started from."""

    decision: Decision | None
    state_before: TicketState | None
    state_after: TicketState
    extra_timers: list | None = None  # None: the clocks plan the timers
    cancel_kinds: tuple[str, ...] = ()


@dataclass(frozen=True)
class RoundEnd:
    """How a round ends in the final commit: the decision row's status and, when an intent was written
    first, what became of it (the vendor's answer, parts written, a note for the history)."""

    status: str  # noop | dry_run | applied | recovered
    intent_id: int | None = None
    api_result: ApplyResult | None = None
    plan: bool = True  # the clock rules plan the timers (not when recovering a timer's own intent)
    resent: bool = False  # parts were sent again after a crash
    note: str | None = None
    parts: dict[str, str] | None = None  # outcome per part (connectors.base.PART_*)


def short_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:500]


def direction(matrix: LoadedMatrix, from_level: str | None, to_level: str | None) -> str | None:
    """How a decision moved the ticket: placed, up, down or same (None: it entered no level)."""
    if not to_level:
        return None
    if not from_level:
        return "placed"
    try:
        a, b = matrix.matrix.level_index(from_level), matrix.matrix.level_index(to_level)
    except KeyError:
        return "same" if from_level == to_level else "up"
    return "up" if b > a else "down" if b < a else "same"
