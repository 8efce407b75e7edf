"""The escalation-matrix language: the typed shape of a matrix file.

Every model forbids unknown keys, so a typo in the admin's YAML is an error and never a silent no-op.
Shape errors come from these models; cross-references (levels, groups, issue types, templates, attributes,
calendars, template placeholders) are checked by `matrix_config.loader`, semantic problems (shadowed rules,
unreachable levels, ...) by `matrix_config.lint`, so each message can point at its own `FILE:LINE:COL`.
"""
from __future__ import annotations

import hashlib
import json
import re
from datetime import date, timedelta
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    Tag,
    model_validator,
)

# Vendor-neutral priorities, lowest first. Connectors map them to vendor values.
PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "urgent")
Priority = Literal["low", "normal", "high", "urgent"]

# Vendor-neutral statuses. Connectors map vendor statuses onto these.
STATUSES: tuple[str, ...] = ("new", "open", "pending", "on_hold", "solved", "closed")
Status = Literal["new", "open", "pending", "on_hold", "solved", "closed"]

# SLA clocks, in the order a ticket normally meets them.
CLOCKS: tuple[str, ...] = ("acknowledge", "diagnose", "interim_fix", "resolve")
ClockName = Literal["acknowledge", "diagnose", "interim_fix", "resolve"]

# Ticket attributes every connector provides without a field mapping. Anything else a rule,
# required_data or role names must be declared under `fields:`.
BUILTIN_ATTRIBUTES: frozenset[str] = frozenset(
    {"status", "priority", "tags", "organization", "group", "channel", "subject", "requester_email"}
)
# Attribute names with a meaning to the engine; they are declared under `fields:` like any other.
ISSUE_TYPE_ATTRIBUTE = "issue_type"
LEVEL_ATTRIBUTE = "level"  # where the ticket's current level is shown to agents (tag or field)

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

_DURATION_RE = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*$")
_ID_RE = r"^[A-Za-z][A-Za-z0-9_.-]*$"


def parse_duration(value: Any) -> timedelta:
    """`30m`, `4h`, `2d`, `1d12h`, `1h30m` -> timedelta. Bare numbers are refused: units must be explicit."""
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError(f"duration must be a string like '30m', '4h' or '2d', got {value!r}")
    match = _DURATION_RE.match(value)
    if not value.strip() or match is None or not any(match.groups()):
        raise ValueError(f"invalid duration {value!r}: use d/h/m units, e.g. '30m', '4h', '2d', '1h30m'")
    days, hours, minutes = (int(g) if g else 0 for g in match.groups())
    result = timedelta(days=days, hours=hours, minutes=minutes)
    if result <= timedelta(0):
        raise ValueError(f"duration {value!r} must be greater than zero")
    return result


def format_duration(value: timedelta) -> str:
    minutes = int(value.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    out = "".join(f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "m")) if n)
    return out or "0m"


Duration = Annotated[timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)]
Identifier = Annotated[str, Field(pattern=_ID_RE, max_length=64)]
Scalar = Union[bool, int, float, str]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------- rules
class Matcher(Strict):
    """How one attribute is tested. All given operators must hold.

    Scalars are compared case-insensitively for strings. For list attributes (`tags`), `any`/`all`/`none`
    test membership; for scalar attributes `any` means "one of" and `none` means "none of".
    """

    any: list[Scalar] | None = None
    all: list[Scalar] | None = None
    none: list[Scalar] | None = None
    gte: float | None = None
    gt: float | None = None
    lte: float | None = None
    lt: float | None = None
    present: bool | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> "Matcher":
        if all(v is None for v in self.__dict__.values()):
            raise ValueError("a matcher needs at least one of any, all, none, gte, gt, lte, lt, present")
        return self


def _condition_kind(value: Any) -> str:
    if isinstance(value, (dict, Matcher)):
        return "matcher"
    if isinstance(value, list):
        return "one_of"
    return "equals"


# In YAML: `issue_type: outage` (equals), `customer_tier: [enterprise, premium]` (one of),
# or a Matcher mapping such as `tags: {any: [security]}` or `affected_users: {gte: 100}`.
# The discriminator picks the branch from the YAML shape, so an error names one branch, not all three.
Condition = Annotated[
    Union[
        Annotated[Scalar, Tag("equals")],
        Annotated[list[Scalar], Tag("one_of")],
        Annotated[Matcher, Tag("matcher")],
    ],
    Discriminator(_condition_kind),
]


def _check_link(value: str) -> str:
    if not re.fullmatch(r"https?://[^\s/]+\S*", value.strip()):
        raise ValueError(f"invalid link {value!r}: give the article's http(s) address, "
                         f"e.g. https://help.example.com/hc/articles/123")
    return value.strip()


class Rule(Strict):
    """Places a ticket at a level from its attributes. Rules are tried in file order; the first match wins."""

    id: Identifier
    description: str | None = None
    when: dict[str, Condition] = Field(default_factory=dict)
    level: Identifier | None = None
    bypass: bool = False  # a known benign fault: the ticket never escalates by rule or breach
    priority: Priority | None = None  # overrides the level's priority for tickets this rule places
    note: str | None = None  # template name for an extra internal note when this rule fires
    # Bypass rules only: a public reply template sent instead of the entry level's welcome (e.g. the
    # help-centre answer), and a knowledge-base link the internal note shows the agent.
    reply: Identifier | None = None
    kb_article: Annotated[str, AfterValidator(_check_link)] | None = None

    @model_validator(mode="after")
    def _level_xor_bypass(self) -> "Rule":
        if self.bypass and self.level is not None:
            raise ValueError("a bypass rule must not name a `level`")
        if not self.bypass and self.level is None:
            raise ValueError("a rule needs either `level` or `bypass: true`")
        if self.bypass and self.priority is not None:
            raise ValueError("a bypass rule changes no priority: remove `priority`")
        if not self.bypass and self.reply is not None:
            raise ValueError("`reply` is for bypass rules: a ticket placed at a level gets the level's "
                             "on_enter.reply")
        if not self.bypass and self.kb_article is not None:
            raise ValueError("`kb_article` is for bypass rules (the known answer to a benign fault)")
        return self


# -------------------------------------------------------------------------------------------- levels
class SlaTargets(Strict):
    acknowledge: Duration | None = None
    diagnose: Duration | None = None
    interim_fix: Duration | None = None
    resolve: Duration | None = None

    def items(self) -> list[tuple[str, timedelta]]:
        return [(name, getattr(self, name)) for name in CLOCKS if getattr(self, name) is not None]


class UpdateCadence(Strict):
    every: Duration
    mode: Literal["send", "remind"] = "remind"
    template: Identifier | None = None  # public status-update template (mode send) or reminder note

    @model_validator(mode="after")
    def _send_needs_template(self) -> "UpdateCadence":
        if self.mode == "send" and self.template is None:
            raise ValueError("mode `send` needs a `template` to send to the customer")
        return self


class Owner(Strict):
    default: Identifier  # key into `groups:`
    by_issue_type: dict[str, Identifier] = Field(default_factory=dict)


class OnEnter(Strict):
    reply: Identifier | None = None  # public reply template, sent once when the ticket enters the level
    note: Identifier | None = None  # internal note template for the owner group


class Role(Strict):
    """A person the level needs (`roles:` entry): `within` after entering the level the attribute must be
    filled, else the owner group is reminded (again every `within` until it is) and the `role_missing`
    alert goes out; `on_missing` escalates to that level at the first reminder."""

    within: Duration | None = None
    on_missing: Identifier | None = None

    @model_validator(mode="after")
    def _on_missing_needs_within(self) -> "Role":
        if self.on_missing is not None and self.within is None:
            raise ValueError("`on_missing` needs `within`: the deadline after which the role counts as missing")
        return self


def _roles_as_mapping(value: Any) -> Any:
    # The original form, `roles: [incident_commander, customer_contact]`, stays valid: roles without deadlines.
    if isinstance(value, list):
        return {name: {} if isinstance(name, str) else name for name in value}
    return {name: ({} if spec is None else spec) for name, spec in value.items()} if isinstance(value, dict) else value


def _dump_roles(roles: dict[str, Role]) -> Any:
    # Roles without deadlines dump as the plain list they were written as, so the matrix version of a matrix
    # written before deadlines existed does not change.
    if all(spec == Role() for spec in roles.values()):
        return list(roles)
    return {name: spec.model_dump(mode="json", exclude_none=True) for name, spec in roles.items()}


Roles = Annotated[dict[str, Role], BeforeValidator(_roles_as_mapping), PlainSerializer(_dump_roles)]


class ExitCriteria(Strict):
    """What must hold when a ticket is solved at the level; the service flags a solve that breaks them
    (internal note + `exit_unmet` alert) and never reopens the ticket."""

    # at least one corrective action recorded (`escalation incident actions`), each with an owner and a due date
    actions_owned: bool = False


class Level(Strict):
    id: Identifier
    name: str
    priority: Priority
    owner: Owner
    sla: SlaTargets = SlaTargets()
    required_data: list[str] = Field(default_factory=list)  # attribute names that must be filled to enter
    data_request: Identifier | None = None  # template asking the customer for the missing data
    # attribute names (fields) naming people, e.g. incident_commander, each with an optional deadline
    roles: Roles = Field(default_factory=dict)
    update_cadence: UpdateCadence | None = None
    on_enter: OnEnter = OnEnter()
    on_breach: dict[ClockName, Identifier] = Field(default_factory=dict)  # clock -> level to escalate to
    calendar: Identifier | None = None  # key into `calendars:`; default `clocks.calendar`
    exit: ExitCriteria | None = None  # checked when the ticket is solved at this level (integration.incident_report)


# ---------------------------------------------------------------------------------- vendor mappings
class ZendeskField(Strict):
    """Exactly one source: a custom field id, a tag prefix (value = rest of the tag), or - read only, where
    accounts keep tier and contract data - a custom field of the requester's organization
    (`organization_field: support_tier`, the field's key) or of the requester (`user_field: ...`)."""

    custom_field: int | None = None
    tag_prefix: str | None = None
    organization_field: Annotated[str, Field(min_length=1)] | None = None
    user_field: Annotated[str, Field(min_length=1)] | None = None
    values: dict[str, Scalar] = Field(default_factory=dict)  # matrix value -> Zendesk option value/tag

    @model_validator(mode="after")
    def _one_source(self) -> "ZendeskField":
        sources = (self.custom_field, self.tag_prefix, self.organization_field, self.user_field)
        if sum(source is not None for source in sources) != 1:
            raise ValueError("give exactly one of `custom_field`, `tag_prefix`, `organization_field` or `user_field`")
        return self

    @property
    def read_only(self) -> bool:
        """Organization and user fields describe the customer, not the ticket: the service never writes them."""
        return self.organization_field is not None or self.user_field is not None


class JiraField(Strict):
    """A Jira field id (`customfield_10050`, `components`, ...), a label prefix, or - read only - a property
    of the request's (first) JSM organization (`organization_property: support_tier`, the property key)."""

    field: str | None = None
    label_prefix: str | None = None
    organization_property: Annotated[str, Field(min_length=1)] | None = None
    values: dict[str, Scalar] = Field(default_factory=dict)  # matrix value -> Jira option value

    @model_validator(mode="after")
    def _one_source(self) -> "JiraField":
        if sum(source is not None for source in (self.field, self.label_prefix, self.organization_property)) != 1:
            raise ValueError("give exactly one of `field`, `label_prefix` or `organization_property`")
        return self


class FieldMapping(Strict):
    label: str | None = None  # human name used in data requests, e.g. "Account ID"
    zendesk: ZendeskField | None = None
    jira: JiraField | None = None


class GroupMapping(Strict):
    label: str | None = None
    zendesk: int | None = None  # Zendesk group id
    jira: str | None = None  # Jira group name, select option value or team id, per vendors.jira.group_field_kind


# ------------------------------------------------------------------------------------- milestones
class MilestoneSignal(Strict):
    """A milestone is met when any given signal holds on the ticket."""

    tags: list[str] = Field(default_factory=list)
    statuses: list[Status] = Field(default_factory=list)
    field: str | None = None  # attribute name
    equals: Scalar | None = None  # with `field`; absent = any non-empty value


class Milestones(Strict):
    # Acknowledgement is always the first public agent reply after entering the level.
    acknowledge: Literal["first_public_agent_reply"] = "first_public_agent_reply"
    diagnose: MilestoneSignal = MilestoneSignal(tags=["diagnosed"])
    interim_fix: MilestoneSignal = MilestoneSignal(tags=["workaround_provided"])
    resolve: MilestoneSignal = MilestoneSignal(statuses=["solved", "closed"])


# ------------------------------------------------------------------------------------ clocks
def _check_span(span: str) -> str:
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d|([01]\d|2[0-3]):[0-5]\d-24:00", span):
        raise ValueError(f"invalid span {span!r}: use 'HH:MM-HH:MM', e.g. '09:00-17:00'")
    start, end = span.split("-")
    if end <= start:
        raise ValueError(f"span {span!r} ends before it starts")
    return span


# One opening span of a working day, `HH:MM-HH:MM` (end may be 24:00). Validated per item so an error
# points at the span itself.
Span = Annotated[str, AfterValidator(_check_span)]


class Calendar(Strict):
    timezone: str  # IANA name, e.g. Europe/Berlin
    hours: dict[Weekday, list[Span]]  # e.g. {mon: ["09:00-17:00"]}; missing day = closed
    holidays: list[date] = Field(default_factory=list)


class ClockSettings(Strict):
    warn_at: list[Annotated[float, Field(gt=0, lt=1)]] = Field(default_factory=lambda: [0.5, 0.75, 0.9])
    pause_statuses: list[Status] = Field(default_factory=lambda: ["pending", "on_hold"])
    calendar: Identifier | None = None  # default calendar for all levels; none = 24x7


# ------------------------------------------------------------------------------------ data gate
class GateSettings(Strict):
    """How the required-data gate treats a level a person set (the level field on a new ticket, or an
    agent's change of it). The service's own moves (rules, breaches) always wait for the data.

    `flag` (default): the hand-set level stands (level, group and assignee are kept); the customer is asked
    once for the missing data, and the internal note and the metrics record that the level was entered
    without it. `hold`: the strict gate; the ticket stays where it was until the data arrives.
    """

    manual: Literal["flag", "hold"] = "flag"


# ------------------------------------------------------------------------------------ vendors
class ZendeskSla(Strict):
    title_prefix: str = "[matrix] "
    position: Literal["first", "last"] = "first"  # managed policies before or after unmanaged ones
    update_metric: Literal["periodic_update_time", "next_reply_time"] = "periodic_update_time"
    resolve_metric: Literal["requester_wait_time", "total_resolution_time"] = "requester_wait_time"
    business_hours: bool = False


class ZendeskVendor(Strict):
    sla: ZendeskSla = ZendeskSla()


class JiraVendor(Strict):
    priorities: dict[Priority, str] = Field(
        default_factory=lambda: {"low": "Low", "normal": "Medium", "high": "High", "urgent": "Highest"}
    )
    group_field: str | None = None  # field id holding the owner group/team, e.g. customfield_10001
    group_field_kind: Literal["group", "select", "team"] = "group"


class Vendors(Strict):
    zendesk: ZendeskVendor = ZendeskVendor()
    jira: JiraVendor = JiraVendor()


# ------------------------------------------------------------------------------------ alerts
# Events that alert people outside the ticket (integration.alerts). role_missing: a level with `roles`
# entered while one is unfilled; exit_unmet: a ticket leaving a level whose exit criteria are not met
# (produced once exit criteria exist; accepted now so a matrix can route it ahead of time).
ALERT_EVENTS: tuple[str, ...] = ("enter_level", "warning", "breach", "cadence", "role_missing", "exit_unmet")
AlertEvent = Literal["enter_level", "warning", "breach", "cadence", "role_missing", "exit_unmet"]
def _check_env_name(value: str) -> str:
    if not re.fullmatch(r"[A-Z_][A-Z0-9_]{0,127}", value):
        looks_secret = "://" in value or len(value) > 40 or any(c in value for c in "/:@")
        raise ValueError(
            f"expected the NAME of an environment variable (upper case, digits, '_'), e.g. SLACK_INCIDENT_WEBHOOK_URL"
            + ("; never put the URL or secret itself in the matrix" if looks_secret else f", got {value!r}"))
    return value


# An environment variable name: the secret itself never appears in the matrix.
EnvName = Annotated[str, AfterValidator(_check_env_name)]


class SlackChannel(Strict):
    """A Slack incoming webhook; its URL (the secret) is read from the environment variable named here."""

    webhook_url_env: EnvName


class TeamsChannel(Strict):
    """A Microsoft Teams channel through a Workflows ("Post to a channel when a webhook request is received")
    webhook; the URL is read from the environment variable named here."""

    webhook_url_env: EnvName


class WebhookChannel(Strict):
    """Any HTTPS endpoint (PagerDuty/Grafana OnCall bridges, chat-ops): a JSON POST signed with HMAC-SHA256
    of the body with the secret read from `secret_env` (integration.alerts documents the headers)."""

    webhook_url_env: EnvName
    secret_env: EnvName


class EmailChannel(Strict):
    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(gt=0, lt=65536)] = 587
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password_env: EnvName | None = None
    sender: Annotated[str, Field(min_length=3)]
    to: list[Annotated[str, Field(min_length=3)]] = Field(min_length=1)

    @model_validator(mode="after")
    def _password_with_username(self) -> "EmailChannel":
        if self.password_env is not None and self.username is None:
            raise ValueError("`password_env` needs a `username` to log in with")
        for address in (self.sender, *self.to):
            if "@" not in address:
                raise ValueError(f"invalid e-mail address {address!r}")
        return self


class AlertChannel(Strict):
    """Exactly one of slack, teams, webhook, email."""

    slack: SlackChannel | None = None
    teams: TeamsChannel | None = None
    webhook: WebhookChannel | None = None
    email: EmailChannel | None = None
    # Per send attempt; the worker's retry layer decides what happens after a timeout.
    timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0

    @model_validator(mode="after")
    def _one_kind(self) -> "AlertChannel":
        if sum(kind is not None for kind in (self.slack, self.teams, self.webhook, self.email)) != 1:
            raise ValueError("give exactly one of `slack`, `teams`, `webhook` or `email`")
        return self

    @property
    def kind(self) -> str:
        return next(name for name in ("slack", "teams", "webhook", "email") if getattr(self, name) is not None)

    @property
    def target(self) -> Any:
        return getattr(self, self.kind)


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class AlertWhen(Strict):
    """Which events a route takes; a missing `level` / `clock` means any."""

    event: Annotated[list[AlertEvent], BeforeValidator(_as_list), Field(min_length=1)]
    level: Annotated[list[Identifier], BeforeValidator(_as_list)] | None = None
    clock: Annotated[list[ClockName], BeforeValidator(_as_list)] | None = None


class AlertRoute(Strict):
    when: AlertWhen
    to: Annotated[list[Identifier], BeforeValidator(_as_list), Field(min_length=1)]  # keys into notify.channels
    template: Identifier | None = None  # message text; default: the built-in summary (integration.alerts)


class Notify(Strict):
    channels: dict[Identifier, AlertChannel] = Field(default_factory=dict)
    routes: list[AlertRoute] = Field(default_factory=list)


# ------------------------------------------------------------------------------------ incidents
class CorrectiveActions(Strict):
    """Where corrective actions are tracked: Jira issues in `project`, linked to the ticket (a JSM request by
    an issue link of `link_type`; a Zendesk ticket by a remote link to its agent URL)."""

    project: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{0,19}$")]  # Jira project key, e.g. OPS
    issue_type: Annotated[str, Field(min_length=1)] = "Task"
    link_type: Annotated[str, Field(min_length=1)] = "Relates"


class IncidentSettings(Strict):
    """The incident lifecycle at the levels with roles (integration.incident): what status digests report."""

    eta: Identifier | None = None  # attribute holding the current (revised) ETA agents keep up to date
    blockers: list[Identifier] = Field(default_factory=list)  # attributes describing what blocks progress
    # The roles (attributes under a level's `roles:`) that command the incident and speak to the customer: at
    # a level naming the contact role, a public reply by anyone else gets an internal note to the commander.
    commander_role: Identifier = "incident_commander"
    contact_role: Identifier = "customer_contact"
    actions: CorrectiveActions | None = None  # corrective actions as Jira issues (`escalation incident actions`)
    # A public reply template sent to the customer with the incident report, when an incident ticket is solved.
    summary_reply: Identifier | None = None


# ------------------------------------------------------------------------------------ the matrix
# Names a template may use. Each maps to the keys it offers (None = any key, e.g. ticket.fields.*).
TEMPLATE_CONTEXT: dict[str, dict[str, Any] | None] = {
    "ticket": {
        "id": None, "subject": None, "status": None, "priority": None, "organization": None,
        "requester": {"name": None, "email": None}, "fields": None, "tags": None, "url": None,
    },
    "level": {"id": None, "name": None, "priority": None, "owner": None, "sla": None, "update_every": None,
              "required_data": None, "roles": None},  # the last two: lists of {"name", "label", "value"} dicts
    "previous_level": {"id": None, "name": None},
    "missing": None,  # list of {"name", "label"} dicts
    "rule": {"id": None, "description": None},
    "clock": {"name": None, "target": None, "elapsed": None, "overdue_by": None, "fraction": None},
    "matrix": {"name": None, "version": None},
    # Where the incident stands (integration.incident), for status digests; empty lists / None when unknown:
    # milestones: list of {name, label, met, at}; clocks: list of {name, target, remaining, overdue_by, state}
    # (state: met, running, paused, breached); eta: the `incident.eta` attribute's value; blockers: list of
    # {name, label, value} for the `incident.blockers` attributes that are filled; last_public_update: a time.
    "milestones": None, "clocks": None, "eta": None, "blockers": None, "last_public_update": None,
    # The incident summary template only (`incident.summary_reply`): the report's started_at, resolved_at,
    # top_level, time_to.<clock> and corrective_actions (list of {key, summary, owner, due}).
    "report": None,
    # Alert templates only (notify.routes[].template): the event and where the ticket stands.
    "alert": {"event": None, "channel": None, "level": None, "clock": None, "time_left": None, "overdue_by": None,
              "missing_roles": None, "summary": None},
}


class Matrix(Strict):
    name: str
    description: str | None = None
    issue_types: list[Identifier] = Field(min_length=1)
    levels: list[Level] = Field(min_length=1)  # ordered: first is the entry level, last the top
    rules: list[Rule] = Field(default_factory=list)
    fields: dict[Identifier, FieldMapping] = Field(default_factory=dict)
    groups: dict[Identifier, GroupMapping] = Field(min_length=1)
    templates: dict[Identifier, str] = Field(default_factory=dict)
    milestones: Milestones = Milestones()
    clocks: ClockSettings = ClockSettings()
    gate: GateSettings = GateSettings()
    calendars: dict[Identifier, Calendar] = Field(default_factory=dict)
    vendors: Vendors = Vendors()
    notify: Notify | None = None  # alerts outside the ticket (integration.alerts)
    incident: IncidentSettings | None = None  # incident lifecycle (integration.incident)

    # Cross-reference checks live in matrix_config.loader/lint so each error can point at its own line.

    # ---- lookups used by the engine (cheap, computed on demand)
    def level(self, level_id: str) -> Level:
        for level in self.levels:
            if level.id == level_id:
                return level
        raise KeyError(level_id)

    def level_index(self, level_id: str) -> int:
        for i, level in enumerate(self.levels):
            if level.id == level_id:
                return i
        raise KeyError(level_id)

    def version(self) -> str:
        """Content hash: the same matrix gives the same version whatever its comments or key order."""
        # A matrix without `notify:` (`incident:`) keeps the version it had before alerts (incidents) existed.
        unset = {name for name in ("notify", "incident") if getattr(self, name) is None}
        data = self.model_dump(mode="json", exclude=unset or None)
        for level in data["levels"]:  # likewise a level without `exit:`
            if level.get("exit") is None:
                level.pop("exit", None)
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]
