"""Vendor-neutral data the core works on: ticket snapshots, per-ticket state, events and decisions.

Connectors turn vendor records into `Ticket`s and carry out `Decision`s; nothing here knows a vendor.
All of these are immutable values so `decide()` stays pure and decisions can be compared and stored.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Annotated, Any, Mapping

from pydantic import AfterValidator, PlainSerializer


def _stdlib_offset(moment: datetime) -> datetime:
    offset = moment.utcoffset()
    return moment if offset is None else moment.replace(tzinfo=timezone(offset))


# A time in stored state and decisions (integration.store.codec): written as `datetime.isoformat()`
# ("+00:00", the format of every row so far; pydantic's own would be "Z") and read back with a
# `datetime.timezone` offset, as `datetime.fromisoformat` gives.
IsoDateTime = Annotated[
    datetime, AfterValidator(_stdlib_offset), PlainSerializer(lambda moment: moment.isoformat(), when_used="json")
]


@dataclass(frozen=True)
class Person:
    id: str | None = None
    name: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class Ticket:
    """A snapshot of one helpdesk ticket, read from the vendor API (the truth), in matrix terms.

    `fields` holds every attribute declared under the matrix's `fields:` (issue_type, impact,
    customer_tier, account_id, level, ...) already translated to matrix values by the connector;
    an unset field is absent or None. `group` is the matrix group key, or None when the vendor's group
    is not one the matrix knows.
    """

    vendor: str  # "zendesk" | "jira" | "neutral"
    id: str  # Zendesk ticket id or Jira issue key
    subject: str = ""
    status: str = "open"  # neutral status, see matrix_config.schema.STATUSES
    priority: str | None = None  # neutral priority, see matrix_config.schema.PRIORITIES
    tags: frozenset[str] = frozenset()  # Zendesk tags / Jira labels
    organization: str | None = None
    group: str | None = None
    channel: str | None = None
    requester: Person = Person()
    assignee: Person | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None  # the vendor's time of the ticket's latest change
    # When the level field (or level tag) got its current value, from the vendor's history (Zendesk ticket
    # audits, Jira changelog). None when unknown or not read: connectors read the history only when a pass
    # needs it (the level on the ticket differs from the stored one), and the engine falls back to
    # `updated_at`. Level entries are anchored to these vendor times, never to when the service got round
    # to the ticket (see docs/clocks.md "When a clock starts").
    level_set_at: datetime | None = None
    # When matrix attributes last changed (attribute -> vendor time): Jira from the changelog that comes with
    # the issue, Zendesk from the audits the pipeline reads when a pass moves a level. A rule-caused move
    # starts at the latest change of the attributes its rule and the level's required data name; none
    # known: `updated_at`.
    field_changed_at: Mapping[str, datetime] = field(default_factory=dict)
    # Facts for milestone detection, from the comment stream (agent = not the requester/customer,
    # and not the integration itself).
    first_public_agent_reply_at: datetime | None = None
    last_public_agent_reply_at: datetime | None = None
    # Who wrote that last public agent reply (None: unknown or no such reply): the one-customer-voice check at
    # incident levels (integration.incident) compares it with the named customer contact.
    last_public_agent_reply_by: Person | None = None
    # Satisfaction score as the vendor reports it ("good"/"bad" or 1..5), for CSAT metrics.
    satisfaction: str | None = None
    # Opaque optimistic-concurrency token (Zendesk updated_stamp); connectors send it back on write.
    version_token: str | None = None
    url: str | None = None

    def attribute(self, name: str) -> Any:
        """Value of a matrix attribute: a built-in ticket attribute or a mapped field."""
        if name == "tags":
            return self.tags
        if name == "requester_email":
            return self.requester.email
        if name in ("status", "priority", "organization", "group", "channel", "subject"):
            return getattr(self, name)
        return self.fields.get(name)

    @property
    def level(self) -> str | None:
        """The level shown on the ticket (mapped `level` field/tag), which an agent may set by hand."""
        value = self.fields.get("level")
        return str(value) if value else None

    def with_(self, **changes: Any) -> "Ticket":
        return replace(self, **changes)


@dataclass(frozen=True)
class TicketState:
    """What the service remembers about a ticket between passes (persisted by integration.store)."""

    vendor: str
    ticket_id: str
    level: str | None = None  # None: the service has not placed the ticket yet
    entered_level_at: IsoDateTime | None = None
    matrix_version: str | None = None  # pinned: a ticket in flight keeps the matrix version it started with
    rule_id: str | None = None  # rule that placed it, or "manual", "breach:<clock>"
    bypassed: bool = False  # a bypass rule matched: never escalate automatically
    # Required-data gate: the level the ticket is waiting to enter and the data asked for.
    pending_level: str | None = None
    data_requested: tuple[str, ...] = ()
    # Milestones met at the current level: clock name -> when (acknowledge, diagnose, interim_fix, resolve).
    milestones: Mapping[str, IsoDateTime] = field(default_factory=dict)
    # Clocks that ran out and have not been acted on yet; set by the timer code before it calls decide().
    pending_breaches: tuple[str, ...] = ()
    last_public_update_at: IsoDateTime | None = None
    # Why the ticket waits for `pending_level` (same encoding as `rule_id`), for the note when it proceeds.
    pending_cause: str | None = None
    # Set when an agent set the level by hand: the level the rules pointed at then. From then on rules
    # only move the ticket when they point above it, so a hand-made de-escalation sticks.
    manual_rule_level: str | None = None
    # A level-field value that names no level; the agent was told once (not repeated every pass).
    rejected_level: str | None = None
    # SLA clock bookkeeping owned by integration.clocks (pause accounting, warnings sent, last cadence
    # message), JSON-serializable (ISO strings), valid only for the level/entry it names. Persist as one
    # JSON value; refresh it each pass with integration.clocks.track(state, ticket, matrix, now).
    clock_state: Mapping[str, Any] = field(default_factory=dict)
    # The vendor's updated_at of the newest version of the ticket a committed pass decided on: the snapshot
    # it read, or the ticket as the vendor returned it after the pass's own write. An event that reports
    # nothing newer needs no read (integration.pipeline.seen).
    seen_updated_at: IsoDateTime | None = None

    def with_(self, **changes: Any) -> "TicketState":
        return replace(self, **changes)


@dataclass(frozen=True)
class ClockStart:
    """An SLA clock the decision starts: `clock` must be met within `target_seconds` (business time when
    `calendar` is set) counted from the level entry (`Decision.entered_at`, else the decision's time)."""

    clock: str  # acknowledge | diagnose | interim_fix | resolve | update_cadence
    target_seconds: int
    calendar: str | None = None


@dataclass(frozen=True)
class Decision:
    """What one pass decided for one ticket. Empty fields mean "leave as is".

    Only differences from the ticket snapshot appear here, so carrying out a decision on a ticket that
    already reflects it is a no-op and `is_empty` holds for the decision made after it.
    """

    vendor: str
    ticket_id: str
    matrix_version: str
    decided_at: IsoDateTime
    from_level: str | None = None
    to_level: str | None = None  # set when the ticket enters a (new) level
    reason: str = ""  # one line for the audit log: "rule outage-enterprise", "breach acknowledge", "manual"
    rule_id: str | None = None
    priority: str | None = None
    owner_group: str | None = None  # matrix group key; connectors map it to the vendor's id
    add_tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()
    field_updates: Mapping[str, Any] = field(default_factory=dict)  # matrix attribute -> matrix value
    public_reply: str | None = None  # rendered text for the customer
    internal_note: str | None = None  # rendered text for agents: what happened and why
    missing_data: tuple[str, ...] = ()  # required-data gate held the escalation back
    start_clocks: tuple[ClockStart, ...] = ()
    stop_clocks: tuple[str, ...] = ()  # clocks whose milestone this pass detected
    milestones: Mapping[str, IsoDateTime] = field(default_factory=dict)  # milestones detected this pass
    # When the entry into `to_level` happened on the ticket (the vendor's time of its cause; never later than
    # `decided_at`, never earlier than the previous entry): `next_state` stores it as `entered_level_at` and
    # the level's clocks run from it. None: `decided_at`.
    entered_at: IsoDateTime | None = None
    # Informational (not part of `is_empty`), consumed by integration.engine.next_state and reports:
    held_level: str | None = None  # the required-data gate holds the ticket back from this level
    rule_level: str | None = None  # the level the matrix rules point at this pass (None: bypassed)
    bypassed: bool | None = None  # bypass status changed to this value this pass (counts in is_empty)
    reply_template: str | None = None  # template name behind `public_reply`
    rejected_level: str | None = None  # the level field named no level; the note told the agent
    # A level a person set was entered although this required data was missing (gate `manual: flag`);
    # counted by integration.metrics.entered_without_required_data.
    entered_without: tuple[str, ...] = ()
    bypass_rule: str | None = None  # the bypass rule that matches from this pass on (counted per rule)

    @property
    def writes_to_ticket(self) -> bool:
        return bool(
            self.priority
            or self.owner_group
            or self.add_tags
            or self.remove_tags
            or self.field_updates
            or self.public_reply
            or self.internal_note
        )

    @property
    def is_empty(self) -> bool:
        """Nothing to write and nothing to remember."""
        return not (
            self.writes_to_ticket
            or self.to_level
            or self.missing_data
            or self.start_clocks
            or self.stop_clocks
            or self.milestones
            or self.bypassed is not None
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["decided_at"] = self.decided_at.isoformat()
        data["milestones"] = {k: v.isoformat() for k, v in self.milestones.items()}
        data["entered_at"] = self.entered_at.isoformat() if self.entered_at else None
        return data


@dataclass(frozen=True)
class TimerSpec:
    """One due time for one ticket (a durable `timers` row, see integration.store.timers). `kind` says what happens when it fires (e.g. "warning", "breach",
    "cadence"); `clock` the SLA clock it belongs to ("" when none); `level` the level it was planned
    for; `fraction` the share of the target elapsed at due time (pre-breach warnings)."""

    vendor: str
    ticket_id: str
    kind: str
    clock: str | None
    due_at: datetime
    level: str | None = None
    matrix_version: str | None = None
    fraction: float | None = None
    timer_id: int | None = None  # set when read back from the database

    def key(self) -> tuple[Any, ...]:
        return (self.vendor, self.ticket_id, self.kind, self.clock or "", self.level or "", self.due_at)


@dataclass(frozen=True)
class TimerOutcome:
    """What firing a timer leads to (returned by `integration.clocks.on_timer`).

    `decision`: carried out like any pass decision (None: nothing to write).
    `state`: the ticket state afterwards (None: unchanged, or `next_state` of the decision).
    `schedule`: further timers (e.g. the next cadence interval).
    `cancel_kinds`: pending timers of these kinds for this ticket are cancelled.
    """

    decision: Decision | None = None
    state: TicketState | None = None
    schedule: list[TimerSpec] = field(default_factory=list)
    cancel_kinds: tuple[str, ...] = ()
    note: str = ""


def ticket_reference(value: object) -> str:
    """The one normalisation of a vendor ticket id / issue key, used by the webhook intake (the stored
    `events.ticket_id`) and by the connectors' tickets (offline snapshots, API reads): text without
    surrounding whitespace. Vendors never pad ids, but templated bodies (`" {{issue.key}} "`) do; two
    spellings of one ticket would place it twice and hide it from `history`."""
    return str(value).strip()


@dataclass(frozen=True)
class NeutralEvent:
    """One webhook delivery, normalized. It is only a hint that a ticket changed: the pass re-reads the
    ticket from the vendor API."""

    vendor: str
    ticket_id: str
    event_type: str  # e.g. "ticket.created", "ticket.priority_changed", "jira:issue_updated", "comment_created"
    delivery_id: str | None  # X-Zendesk-Webhook-Invocation-Id / X-Atlassian-Webhook-Identifier
    actor_id: str | None = None  # who caused it: used to drop echoes of the service's own writes
    occurred_at: datetime | None = None
    handled: bool = True  # False: a known event type the service records and ignores
