"""Alerts that reach people outside the ticket (the matrix's `notify:` section), vendor-neutral.

    record_alerts(session, ...)        # in the pass's final commit: which events happened, one outbox row each
    deliver_due(db, send=...)          # the worker: send due rows (`send`: connectors.alert_channels'
                                       # send_with_retry, through the one retry layer, passed by service/)
    list_alerts / retry_alerts         # `escalation alerts list|retry`

Events. `enter_level` (the ticket entered a level), `role_missing` (it entered a level whose `roles` are
not all filled), `warning` / `breach` / `cadence` (an SLA timer acted: integration.clocks), `exit_unmet`
(accepted by the matrix; produced once levels have exit criteria). A route (`notify.routes[]`) takes an
event at the levels (and clocks) it names and sends it to its channels.

Durable and exactly one alert per event and channel:
- the outbox row is inserted in the same transaction as the decision, the ticket state and the fired
  timer (integration.pipeline.commit.finalize), so an alert exists if and only if its decision committed;
- its `dedupe_key` (ticket, event, level entry, clock / threshold, channel) is unique and inserted with
  ON CONFLICT DO NOTHING: a redelivered webhook, a pass recovered after a crash and a breach timer fired
  twice all arrive at the same key and add nothing;
- the worker claims due rows under a lease (committed), sends them outside any transaction with short
  timeouts through `connectors.retry` (which honours Retry-After), then marks them `sent`; transient
  failures come back after a backoff, and after ALERT_MAX_ATTEMPTS rounds (or at once for a permanent
  refusal: 4xx, bad credentials, an unset environment variable) the row is `dead` with its reason.
  A worker killed after a channel accepted the message but before the row was marked sent leaves the row
  to be sent again when its lease expires: delivery is at least once in that window (a lost page is
  worse than a repeated one); the signed webhook carries the alert id for receivers that de-duplicate.

The ticket pipeline never waits for a channel: a pass only inserts rows; sending happens in the worker's
`send_alerts` task and periodic job, which take no ticket lease and hold no transaction while sending.

Secrets: the row stores the channel's *name* and the matrix version; the sender reads the channel's
environment variables (`webhook_url_env`, `secret_env`, `password_env`) at send time. Errors stored or
logged name the channel and the HTTP status / SMTP code, never the URL or a password
(connectors.alert_channels redacts).

Messages: the route's `template` (sandboxed like replies, with an extra `alert` name) or a built-in
summary naming the ticket with its helpdesk link (`Ticket.url`: the Zendesk agent URL, the Jira
`/browse/KEY` URL), the level, the clock and the time left or overdue, and the owner group. Customer
message bodies are never included; a template sees only what reply templates see.
"""
from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable

from sqlalchemy import JSON, Index, Integer, String, Text, UniqueConstraint, event, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from connectors.base import ConnectorError, RateLimited, Transient
from integration.clocks import ClockBook, active_seconds, level_calendar
from integration.engine import compile_matrix, is_empty_value, template_context
from integration.model import Decision, Ticket, TicketState
from integration.store.db import Base, BigId, Database, TimerRow, UtcDateTime, utcnow
from integration.store.matrix_versions import load_version
from matrix_config.loader import LoadedMatrix
from matrix_config.schema import AlertChannel, Level, Matrix, format_duration
from matrix_config.templates import TemplateRenderError, render_template

log = logging.getLogger(__name__)

ALERT_MAX_ATTEMPTS = 5  # send rounds (each with the retry layer's own attempts) before a row is dead
ALERT_LEASE_SECONDS = 120.0  # a row `sending` this long with no answer is taken by another worker
ALERT_BACKOFF_BASE = 30.0
ALERT_BACKOFF_MAX = 900.0
SEND_BATCH = 50
MAX_ROWS_PER_RUN = 1000  # per deliver_due call: bounds one worker task; the next task or sweep takes the rest
ALERT_SWEEP_SECONDS = 15.0  # the worker's periodic job: retries and rows whose immediate task was lost

PENDING, SENDING, SENT, DEAD = "pending", "sending", "sent", "dead"
STATUSES = (PENDING, SENDING, SENT, DEAD)


class AlertRow(Base):
    """One alert for one channel (migration 0003)."""

    __tablename__ = "alerts_outbox"
    __table_args__ = (
        UniqueConstraint("dedupe_key", name="uq_alerts_dedupe"),
        Index("ix_alerts_status_due", "status", "next_attempt_at"),
        Index("ix_alerts_ticket", "vendor", "ticket_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    dedupe_key: Mapped[str] = mapped_column(String(400))
    vendor: Mapped[str] = mapped_column(String(16))
    ticket_id: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(32))
    level: Mapped[str] = mapped_column(String(64), default="")
    clock: Mapped[str] = mapped_column(String(32), default="")
    channel: Mapped[str] = mapped_column(String(64))  # the name in notify.channels: never the URL
    matrix_version: Mapped[str] = mapped_column(String(64))
    decision_id: Mapped[int | None] = mapped_column(BigId)
    message: Mapped[dict] = mapped_column(JSON)  # AlertMessage.to_json(): rendered text and facts, no secrets
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


# ------------------------------------------------------------------------------------ the message
@dataclass(frozen=True)
class AlertMessage:
    """What every channel formats in its own way (connectors.alert_channels)."""

    alert_id: str  # the dedupe key: stable across re-sends, for receivers that de-duplicate
    event: str
    title: str
    text: str
    vendor: str
    ticket_id: str
    ticket_url: str | None = None
    subject: str | None = None
    level: str | None = None
    level_name: str | None = None
    owner: str | None = None
    clock: str | None = None
    time_left: str | None = None
    overdue_by: str | None = None
    decided_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "AlertMessage":
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def facts(self) -> list[tuple[str, str]]:
        """(label, value) pairs a chat card or an e-mail lists under the text."""
        pairs = [("Ticket", f"{self.vendor} {self.ticket_id}"), ("Level", f"{self.level} ({self.level_name})"
                                                                 if self.level_name else self.level),
                 ("Owner group", self.owner), ("Clock", self.clock), ("Time left", self.time_left),
                 ("Overdue by", self.overdue_by)]
        return [(label, str(value)) for label, value in pairs if value]


@dataclass(frozen=True)
class AlertEvent:
    """Something that happened to a ticket and may alert people."""

    event: str  # schema.ALERT_EVENTS
    level: str
    entered_at: datetime | None  # the level entry it belongs to: the same event on a later entry alerts again
    clock: str = ""
    detail: str = ""  # what makes it unique within the entry: a warning threshold, a cadence due time
    time_left: float | None = None  # seconds
    overdue: float | None = None  # seconds
    elapsed: float | None = None
    target: float | None = None
    missing_roles: tuple[str, ...] = ()
    customer_updated: bool = False  # cadence: the service sent the customer the status update itself

    def key(self, vendor: str, ticket_id: str, channel: str) -> str:
        entered = self.entered_at.isoformat() if self.entered_at else "-"
        return ":".join((vendor, ticket_id, self.event, self.level, entered, self.clock or "-", self.detail or "-",
                         channel))[:400]


# ------------------------------------------------------------------------------------ routing
def routes_for(matrix: Matrix, alert: AlertEvent) -> list[tuple[str, str | None]]:
    """(channel, template) for every channel a route sends `alert` to; the first route naming a channel
    chooses its template."""
    if matrix.notify is None:
        return []
    chosen: dict[str, str | None] = {}
    for route in matrix.notify.routes:
        when = route.when
        if alert.event not in when.event:
            continue
        if when.level is not None and alert.level not in when.level:
            continue
        if when.clock is not None and alert.clock not in when.clock:
            continue
        for channel in route.to:
            chosen.setdefault(channel, route.template)
    return list(chosen.items())


def _human(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{int(round(seconds))}s"
    return format_duration(timedelta(seconds=seconds))


def _level_of(matrix: Matrix, level_id: str | None) -> Level | None:
    try:
        return matrix.level(level_id) if level_id else None
    except KeyError:
        return None


def _clock_facts(matrix: Matrix, state: TicketState, level: Level, clock: str, now: datetime) -> dict[str, float]:
    """Elapsed / target / left / overdue seconds of `clock` at `level`, from the stored clock bookkeeping."""
    target = getattr(level.sla, clock, None) if clock else None
    if target is None:
        return {}
    book = ClockBook.of(state)
    elapsed = active_seconds(book, level_calendar(matrix, level), now) - book.offset(clock)
    seconds = target.total_seconds()
    return {"elapsed": elapsed, "target": seconds, "time_left": max(seconds - elapsed, 0.0) if elapsed < seconds else None,
            "overdue": elapsed - seconds if elapsed >= seconds else None}


def events_of(matrix: Matrix, ticket: Ticket, state_before: TicketState | None, state_after: TicketState,
              decision: Decision | None, timer: Any, now: datetime) -> list[AlertEvent]:
    """The alert events one committed round produced. `timer`: the fired timer (kind, clock, level,
    fraction, due_at) when the round was a timer firing that acted (its decision wrote something)."""
    found: list[AlertEvent] = []
    before = state_before or TicketState(vendor=state_after.vendor, ticket_id=state_after.ticket_id)
    if timer is not None and decision is not None and not decision.is_empty and timer.kind in ("warning", "breach", "cadence"):
        level = _level_of(matrix, timer.level)
        if level is not None:
            clock = timer.clock or ""
            facts = _clock_facts(matrix, before, level, clock, now) if timer.kind != "cadence" else {}
            detail = (f"{timer.fraction:g}" if timer.kind == "warning" and timer.fraction is not None
                      else timer.due_at.isoformat() if timer.kind == "cadence" else "")
            found.append(AlertEvent(timer.kind, level.id, before.entered_level_at, clock=clock, detail=detail,
                                    time_left=facts.get("time_left"), overdue=facts.get("overdue"),
                                    elapsed=facts.get("elapsed"), target=facts.get("target"),
                                    customer_updated=bool(decision.public_reply)))
    if timer is not None and decision is not None and not decision.is_empty and timer.kind == "role" \
            and (timer.fraction or 1) == 1:
        # A role's deadline passed unfilled (integration.clocks): alerted at the deadline, not at each reminder.
        level = _level_of(matrix, timer.level)
        if level is not None:
            found.append(AlertEvent("role_missing", level.id, before.entered_level_at, clock=timer.clock or "",
                                    detail="deadline", missing_roles=(timer.clock or "",)))
    # A level change, not any change of `entered_level_at`: a later pass may re-anchor the same stay to a
    # vendor time (a hand-set level's audit read), which is not a second entry.
    entered = bool(state_after.level) and state_after.entered_level_at is not None and before.level != state_after.level
    if entered:
        level = _level_of(matrix, state_after.level)
        if level is not None:
            found.append(AlertEvent("enter_level", level.id, state_after.entered_level_at))
            missing = tuple(role for role in level.roles if is_empty_value(ticket.attribute(role)))
            if missing:
                found.append(AlertEvent("role_missing", level.id, state_after.entered_level_at, missing_roles=missing))
    return found


def _owner_and_context(loaded: LoadedMatrix, ticket: Ticket, level: Level, clock: dict[str, Any] | None) -> dict[str, Any]:
    return template_context(compile_matrix(loaded.matrix, loaded.version), ticket, level.id, clock=clock)


_EVENT_TITLES = {
    "enter_level": "entered {level}",
    "role_missing": "entered {level} with incident roles unfilled",
    "warning": "SLA warning at {level}",
    "breach": "SLA breach at {level}",
    "cadence": "customer update overdue at {level}",
    "exit_unmet": "left {level} with exit criteria unmet",
}


def build_message(loaded: LoadedMatrix, ticket: Ticket, alert: AlertEvent, channel: str, template: str | None,
                  alert_id: str, now: datetime) -> AlertMessage:
    """The message for one channel: the route's template, or the built-in summary."""
    matrix = loaded.matrix
    level = matrix.level(alert.level)
    clock_ctx = None
    if alert.clock and alert.target is not None:
        clock_ctx = {"name": alert.clock, "target": _human(alert.target), "elapsed": _human(alert.elapsed),
                     "overdue_by": _human(alert.overdue), "fraction": round((alert.elapsed or 0) / alert.target, 2)}
    context = _owner_and_context(loaded, ticket, level, clock_ctx)
    owner = str(context["level"]["owner"])
    labels = [context_label for context_label in (r["label"] for r in context["level"]["roles"]
                                                  if r["name"] in alert.missing_roles)]
    title = f"[{level.id}] Ticket {ticket.id}: " + _EVENT_TITLES.get(alert.event, alert.event).format(level=level.id)
    if alert.event == "role_missing" and alert.clock:  # a role's deadline passed (integration.clocks ROLE timer)
        title = f"[{level.id}] Ticket {ticket.id}: no {', '.join(labels) or alert.clock} by the role's deadline"
    lines = [f"Ticket {ticket.id}" + (f" \"{ticket.subject}\"" if ticket.subject else "")
             + f" is at {level.id} ({level.name}), owner group {owner}."]
    if alert.event == "warning" and alert.clock:
        lines.append(f"The {alert.clock} clock has {_human(alert.time_left) or '0s'} left "
                     f"({_human(alert.elapsed)} of {_human(alert.target)} used).")
    elif alert.event == "breach" and alert.clock:
        lines.append(f"The {alert.clock} clock ran out: target {_human(alert.target)}, overdue by "
                     f"{_human(alert.overdue) or '0s'}.")
    elif alert.event == "cadence":
        lines.append("The level's update cadence came due: the customer was sent the status update."
                     if alert.customer_updated else
                     "No public update went out within the level's update cadence: please update the customer.")
    elif alert.event == "enter_level":
        targets = ", ".join(f"{name} {format_duration(target)}" for name, target in level.sla.items())
        if targets:
            lines.append(f"SLA targets: {targets}.")
    if labels:
        lines.append(f"Unfilled roles: {', '.join(labels)}.")
    if ticket.url:
        lines.append(f"Open the ticket: {ticket.url}")
    text = "\n".join(lines)
    if template:
        context["alert"] = {"event": alert.event, "channel": channel, "level": level.id, "clock": alert.clock or None,
                            "time_left": _human(alert.time_left), "overdue_by": _human(alert.overdue),
                            "missing_roles": labels, "summary": title}
        try:
            text = render_template(matrix, template, context)
        except TemplateRenderError as exc:
            text += f"\n(Template {template!r} could not be rendered: {exc.message})"
    return AlertMessage(
        alert_id=alert_id, event=alert.event, title=title, text=text, vendor=ticket.vendor, ticket_id=ticket.id,
        ticket_url=ticket.url, subject=ticket.subject or None, level=level.id, level_name=level.name, owner=owner,
        clock=alert.clock or None, time_left=_human(alert.time_left), overdue_by=_human(alert.overdue),
        decided_at=now.isoformat(),
    )


# ------------------------------------------------------------------------------------ the outbox
def _insert_ignoring_duplicates(session: Session, values: dict[str, Any]) -> bool:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        statement = postgresql.insert(AlertRow).values(**values).on_conflict_do_nothing(index_elements=["dedupe_key"])
    elif dialect == "sqlite":
        statement = sqlite.insert(AlertRow).values(**values).on_conflict_do_nothing(index_elements=["dedupe_key"])
    else:  # not a supported database; a plain check is as good as it gets there
        if session.scalars(select(AlertRow.id).where(AlertRow.dedupe_key == values["dedupe_key"])).first():
            return False
        session.add(AlertRow(**values))
        return True
    # RETURNING rather than rowcount: an ORM-enabled INSERT reports no rowcount through psycopg.
    return session.execute(statement.returning(AlertRow.id)).first() is not None


def record_alerts(session: Session, loaded: LoadedMatrix, ticket: Ticket, state_before: TicketState | None,
                  state_after: TicketState, decision: Decision | None, *, decision_id: int | None, timer: Any,
                  now: datetime) -> int:
    """Insert the outbox rows for what this round did, in the caller's transaction (the decision's final
    commit). Returns how many new rows; 0 when the matrix has no `notify:` or the rows already exist."""
    if loaded.matrix.notify is None or not loaded.matrix.notify.routes:
        return 0
    found = events_of(loaded.matrix, ticket, state_before, state_after, decision, timer, now)
    return record_events(session, loaded, ticket, found, decision_id=decision_id, now=now)


def record_events(session: Session, loaded: LoadedMatrix, ticket: Ticket, found: Iterable[AlertEvent], *,
                  decision_id: int | None, now: datetime) -> int:
    """Outbox rows for `found` (routed by the matrix) in the caller's transaction; for a producer of its own
    events (e.g. `exit_unmet`, once levels have exit criteria). Returns how many new rows."""
    matrix = loaded.matrix
    if matrix.notify is None:
        return 0
    added = 0
    for alert in found:
        for channel, template in routes_for(matrix, alert):
            key = alert.key(ticket.vendor, ticket.id, channel)
            message = build_message(loaded, ticket, alert, channel, template, key, now)
            added += _insert_ignoring_duplicates(session, dict(
                dedupe_key=key, vendor=ticket.vendor, ticket_id=ticket.id, event=alert.event, level=alert.level,
                clock=alert.clock or "", channel=channel, matrix_version=loaded.version, decision_id=decision_id,
                message=message.to_json(), status=PENDING, attempts=0, next_attempt_at=now, created_at=now,
            ))
    if added:
        session.info["alerts_to_send"] = True
        log.info("ticket %s:%s: %d alert(s) queued", ticket.vendor, ticket.id, added)
    return added


def record_for_finalize(session: Session, loaded: LoadedMatrix, ticket: Ticket, outcome: Any, *, timer_id: int | None,
                        decision_id: int | None, dry_run: bool, now: datetime) -> None:
    """The pipeline's hook (integration.pipeline.commit.finalize): alerts for the round being committed. A dry
    run alerts nobody (its decisions reach no ticket). Never fails the commit: an alert that cannot be
    built is logged and skipped, the decision stands."""
    if dry_run or loaded.matrix.notify is None:
        return
    try:
        timer = None
        if timer_id is not None:
            timer = session.get(TimerRow, timer_id)
        with session.begin_nested():
            record_alerts(session, loaded, ticket, outcome.state_before, outcome.state_after, outcome.decision,
                          decision_id=decision_id, timer=timer, now=now)
    except Exception:  # noqa: BLE001 - the ticket's decision must commit even when an alert cannot be built
        log.error("ticket %s:%s: alerts could not be queued", ticket.vendor, ticket.id, exc_info=True)


def send_after_commit(db: Database, enqueue: Callable[[], None]) -> None:
    """Call `enqueue()` (the runtime's alert-sender task) once a session of `db` that queued alerts has
    committed; never for a rolled-back one. Registered by the runtime that owns the worker queue, for its
    own Database only (like integration.store.timers.enqueue_after_commit)."""

    def after_commit(session: Session) -> None:
        if not session.info.pop("alerts_to_send", False):
            return
        try:
            enqueue()
        except Exception:  # noqa: BLE001 - the periodic job sends due rows anyway
            log.warning("could not enqueue the alert sender; the periodic job sends the alerts", exc_info=True)

    def forget_after_rollback(session: Session) -> None:
        session.info.pop("alerts_to_send", None)

    event.listen(db.sessions, "after_commit", after_commit)
    event.listen(db.sessions, "after_rollback", forget_after_rollback)


# ------------------------------------------------------------------------------------ sending
@dataclass
class DeliveryReport:
    sent: int = 0
    retry: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.sent} sent, {self.retry} to retry, {self.dead} dead"


def _due(now: datetime) -> Any:
    return (((AlertRow.status == PENDING) & (AlertRow.next_attempt_at.is_(None) | (AlertRow.next_attempt_at <= now)))
            | ((AlertRow.status == SENDING) & (AlertRow.lease_until < now)))


def _claim(db: Database, owner: str, now: datetime, limit: int, lease_seconds: float) -> list[AlertRow]:
    with db.session() as session:
        ids = list(session.scalars(select(AlertRow.id).where(_due(now)).order_by(AlertRow.id).limit(limit)))
        claimed: list[int] = []
        for alert_id in ids:
            # Conditional: another worker claiming the same row at the same time wins or loses it whole.
            result = session.execute(
                update(AlertRow).where(AlertRow.id == alert_id, _due(now))
                .values(status=SENDING, lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds))
            )
            if result.rowcount == 1:
                claimed.append(alert_id)
        rows = list(session.scalars(select(AlertRow).where(AlertRow.id.in_(claimed)).order_by(AlertRow.id))) if claimed else []
        for row in rows:
            session.expunge(row)
        return rows


def _finish(db: Database, row_id: int, owner: str, **values: Any) -> None:
    with db.session() as session:
        session.execute(update(AlertRow).where(AlertRow.id == row_id, AlertRow.lease_owner == owner,
                                               AlertRow.status == SENDING)
                        .values(lease_owner=None, lease_until=None, **values))


class ChannelResolver:
    """Channel settings by (matrix version, name), from the stored matrix versions (cached)."""

    def __init__(self, db: Database, current: Callable[[], LoadedMatrix] | None = None):
        self.db, self.current = db, current
        self._versions: dict[str, LoadedMatrix | None] = {}

    def matrix(self, version: str) -> LoadedMatrix | None:
        if version not in self._versions:
            loaded = None
            if self.current is not None:
                current = self.current()
                if current.version == version:
                    loaded = current
            if loaded is None:
                with self.db.session() as session:
                    loaded = load_version(session, version)
            self._versions[version] = loaded
        return self._versions[version]

    def channel(self, version: str, name: str) -> AlertChannel | None:
        loaded = self.matrix(version)
        if loaded is None or loaded.matrix.notify is None:
            return None
        return loaded.matrix.notify.channels.get(name)


def _backoff(attempts: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return max(retry_after, 1.0)
    delay = min(ALERT_BACKOFF_BASE * (2 ** max(attempts - 1, 0)), ALERT_BACKOFF_MAX)
    return delay * random.uniform(0.8, 1.2)


def deliver_due(db: Database, *, send: Callable[[str, AlertChannel, AlertMessage], None],
                now: Callable[[], datetime] = utcnow, current: Callable[[], LoadedMatrix] | None = None,
                max_attempts: int = ALERT_MAX_ATTEMPTS, lease_seconds: float = ALERT_LEASE_SECONDS,
                limit: int = SEND_BATCH, max_rows: int = MAX_ROWS_PER_RUN) -> DeliveryReport:
    """Send the due outbox rows once each (the worker's `send_alerts` task and periodic job), `limit` claimed
    at a time, until none is due or `max_rows` were handled (a burst is sent in one run, a huge backlog
    in several).

    `send(name, channel, message)` is the channel sender the wiring passes in: connectors.alert_channels'
    `send_with_retry`, which goes through the one retry layer (the core imports no connector but base)."""
    resolver = ChannelResolver(db, current)
    owner = uuid.uuid4().hex
    report = DeliveryReport()
    handled = 0
    while handled < max_rows:
        rows = _claim(db, owner, now(), min(limit, max_rows - handled), lease_seconds)
        if not rows:
            break
        for row in rows:
            _deliver_one(db, row, owner, resolver, send, now, max_attempts, report)
        handled += len(rows)
    return report


def _deliver_one(db: Database, row: AlertRow, owner: str, resolver: ChannelResolver,
                 send: Callable[[str, AlertChannel, AlertMessage], None], now: Callable[[], datetime],
                 max_attempts: int, report: DeliveryReport) -> None:
    attempts = row.attempts + 1
    channel = resolver.channel(row.matrix_version, row.channel)
    if channel is None:
        reason = f"channel '{row.channel}' is not in notify.channels of matrix version {row.matrix_version}"
        _finish(db, row.id, owner, status=DEAD, attempts=attempts, last_error=reason)
        report.dead += 1
        report.errors.append(reason)
        log.warning("alert %d dead: %s", row.id, reason)
        return
    message = AlertMessage.from_json(row.message)
    try:
        send(row.channel, channel, message)
    except ConnectorError as exc:
        reason = str(exc)[:500]  # connectors.alert_channels builds these without URLs or passwords
        transient = isinstance(exc, Transient)
        if transient and attempts < max_attempts:
            retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
            due = now() + timedelta(seconds=_backoff(attempts, retry_after))
            _finish(db, row.id, owner, status=PENDING, attempts=attempts, last_error=reason, next_attempt_at=due)
            report.retry += 1
            log.info("alert %d to %s: attempt %d failed (%s); retry at %s", row.id, row.channel, attempts, reason,
                     due.isoformat())
        else:
            if transient:
                reason = f"gave up after {attempts} attempts: {reason}"
            _finish(db, row.id, owner, status=DEAD, attempts=attempts, last_error=reason)
            report.dead += 1
            log.warning("alert %d to %s dead-lettered: %s", row.id, row.channel, reason)
        report.errors.append(reason)
    except Exception as exc:  # noqa: BLE001 - unknown failure: retried like a transient one, text withheld
        reason = f"unexpected {type(exc).__name__} while sending to channel '{row.channel}'"
        status = PENDING if attempts < max_attempts else DEAD
        _finish(db, row.id, owner, status=status, attempts=attempts, last_error=reason,
                next_attempt_at=now() + timedelta(seconds=_backoff(attempts, None)))
        report.retry += status == PENDING
        report.dead += status == DEAD
        report.errors.append(reason)
        log.error("alert %d: %s", row.id, reason)  # no exc_info: a traceback may quote a URL
    else:
        _finish(db, row.id, owner, status=SENT, attempts=attempts, last_error=None, sent_at=now())
        report.sent += 1
        log.info("alert %d (%s, ticket %s:%s) sent to %s", row.id, row.event, row.vendor, row.ticket_id, row.channel)


def pending_due(db: Database, now: datetime) -> bool:
    with db.session() as session:
        return session.scalars(select(AlertRow.id).where(_due(now)).limit(1)).first() is not None


# ------------------------------------------------------------------------------------ admin
def list_alerts(db: Database, *, status: str | None = None, vendor: str | None = None, ticket_id: str | None = None,
                limit: int = 50) -> list[AlertRow]:
    with db.session() as session:
        query = select(AlertRow).order_by(AlertRow.id.desc()).limit(limit)
        if status:
            query = query.where(AlertRow.status == status)
        if vendor:
            query = query.where(AlertRow.vendor == vendor)
        if ticket_id:
            query = query.where(AlertRow.ticket_id == ticket_id)
        rows = list(session.scalars(query))
        for row in rows:
            session.expunge(row)
        return rows


def retry_alerts(db: Database, ids: Iterable[int] = (), *, all_dead: bool = False, now: datetime | None = None) -> int:
    """Dead alerts back to pending with a fresh budget (after fixing a channel's URL or password)."""
    ids = list(ids)
    if not ids and not all_dead:
        return 0
    with db.session() as session:
        query = update(AlertRow).where(AlertRow.status == DEAD)
        if ids:
            query = query.where(AlertRow.id.in_(ids))
        result = session.execute(query.values(status=PENDING, attempts=0, next_attempt_at=now or utcnow(),
                                              lease_owner=None, lease_until=None))
        return result.rowcount


def test_message(loaded: LoadedMatrix, channel: str, now: datetime | None = None) -> AlertMessage:
    """The wiring check `escalation notify test CHANNEL` sends."""
    now = now or utcnow()
    return AlertMessage(
        alert_id=f"test:{channel}:{uuid.uuid4().hex[:12]}", event="test",
        title=f"Test alert from escalation matrix '{loaded.matrix.name}'",
        text=(f"This is a test of channel '{channel}' (matrix version {loaded.version}). "
              "Escalation alerts routed to this channel will arrive here."),
        vendor="test", ticket_id="-", decided_at=now.isoformat(),
    )
