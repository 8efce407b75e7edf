"""Zendesk SLA policies implied by the matrix: plan (pure), apply (create/update/delete/reorder, then
re-read to confirm), and what `escalation sla plan|apply` and the SLA_SYNC job call (report objects; the
cli prints them).

Per level one policy titled `{title_prefix}{level.id} {level.name}` whose filter matches the level marker
(`current_tags includes esc_l2` for a tag-prefix marker, `custom_fields_<id> is <option>` for a field
marker) and whose `policy_metrics` carry the level's targets in minutes for every priority:
acknowledge -> first_reply_time (only where it can measure agents, see below), update cadence ->
periodic_update_time | next_reply_time, resolve -> requester_wait_time | total_resolution_time.
`diagnose` and `interim_fix` have no Zendesk metric: the service's own clocks enforce them.

first_reply_time is once per ticket, from creation to the first public comment by any agent, and the
service's API user is an agent. Whenever the service itself may post the ticket's first public comment
its own reply fulfils the metric, which then measures nothing. So a level gets first_reply_time only when
  * no level the ticket may have passed on the way up (this one and every level before it) posts a
    public comment on its own: no `on_enter.reply`, no update cadence in `send` mode; and
  * no level anywhere sends a data request (`data_request` with `required_data`): a request is posted
    while the ticket waits at a lower level, before it enters the gated one.
Everywhere else the acknowledge target is enforced by the service's own clocks only, and the plan's
notes say so.

Managed policies are the ones whose title starts with the prefix; any other policy is never changed,
deleted or moved relative to its unmanaged peers. Zendesk applies a policy only on the ticket's next
event, which is why the connector writes the level tag in the same PUT as the rest of an escalation.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from connectors.base import ConfigurationError
from connectors.zendesk.connector import build_from_env
from matrix_config.schema import LEVEL_ATTRIBUTE, PRIORITIES, Level, Matrix

POLICIES_PATH = "/api/v2/slas/policies"
DESCRIPTION = "Managed by escalation-matrix from the matrix file; edit the matrix, not this policy."
UNENFORCED_NOTE = ("diagnose and interim_fix have no Zendesk SLA metric; the service's own clocks enforce them "
                   "(warnings, breach escalation).")
FIRST_REPLY_NOTE = ("first_reply_time is once per ticket: met by the first public agent comment on the ticket, "
                    "whenever it was made; the matrix's acknowledge clock restarts at each level, so the service's "
                    "clock is the authority for acknowledge breaches.")
FIRST_REPLY_OMITTED_NOTE = (
    "first_reply_time is left out of {levels}: acknowledgement is enforced by the service's own clocks, because "
    "the service's own public {sources} would satisfy Zendesk's first reply (its API user is an agent).")
BUSINESS_HOURS_NOTE = (
    "business_hours: true makes Zendesk count the Zendesk account's business-hours schedule (Admin Center > "
    "Objects and rules > Schedules), not the matrix calendars: the admin must mirror the matrix calendar there, "
    "or Zendesk's SLA badges and the service's clocks will disagree.")


class SlaConfigError(ValueError):
    """The matrix cannot be expressed as Zendesk SLA policies (e.g. no level marker mapping)."""


@dataclass(frozen=True)
class PlanItem:
    action: str  # create | update | delete | reorder
    title: str
    policy_id: int | None = None
    policy: dict[str, Any] | None = None  # the desired policy (create/update)
    diff: dict[str, dict[str, Any]] = field(default_factory=dict)  # update: field -> {"from", "to"}
    order: tuple[str, ...] = ()  # reorder: every policy title in the desired order

    def describe(self) -> str:
        if self.action == "create":
            metrics = ", ".join(sorted({f"{m['metric']}={m['target']}m" for m in self.policy["policy_metrics"]}))
            return f"+ create  {self.title!r}  ({metrics or 'no targets'})"
        if self.action == "update":
            lines = [f"~ update  {self.title!r} (id {self.policy_id})"]
            for name, change in self.diff.items():
                lines.append(f"    {name}: {json.dumps(change['from'], sort_keys=True)} -> "
                             f"{json.dumps(change['to'], sort_keys=True)}")
            return "\n".join(lines)
        if self.action == "delete":
            return f"- delete  {self.title!r} (id {self.policy_id}): its level is no longer in the matrix"
        return "> reorder " + " | ".join(self.order)


@dataclass(frozen=True)
class SlaPlan:
    items: tuple[PlanItem, ...]
    desired: tuple[dict[str, Any], ...]  # every managed policy the matrix implies, in level order
    title_prefix: str = "[matrix] "
    position: str = "first"
    notes: tuple[str, ...] = (UNENFORCED_NOTE, FIRST_REPLY_NOTE)

    @property
    def empty(self) -> bool:
        return not self.items

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": [{k: v for k, v in asdict(item).items() if v not in (None, {}, ())} for item in self.items],
            "desired": list(self.desired),
            "notes": list(self.notes),
        }

    def render(self) -> str:
        lines = [item.describe() for item in self.items] or ["No changes: Zendesk SLA policies match the matrix."]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------- plan
def _filter_for(matrix: Matrix, level: Level) -> dict[str, Any]:
    mapping = matrix.fields.get(LEVEL_ATTRIBUTE)
    zd = mapping.zendesk if mapping is not None else None
    if zd is None:
        raise SlaConfigError("fields.level.zendesk is not set: SLA policies need a level tag or field to filter on")
    value = zd.values.get(level.id, level.id)
    if zd.tag_prefix is not None:
        tag = f"{zd.tag_prefix}{value}".strip().lower().replace(" ", "_")
        condition = {"field": "current_tags", "operator": "includes", "value": tag}
    else:
        condition = {"field": f"custom_fields_{zd.custom_field}", "operator": "is", "value": str(value)}
    return {"all": [condition], "any": []}


def _minutes(delta) -> int:
    return max(1, int(delta.total_seconds() // 60))


def _speaks_on_its_own(level: Level) -> list[str]:
    """The public comments the service may post at this level before any agent has replied."""
    sources = []
    if level.on_enter.reply:
        sources.append("entry reply (on_enter.reply)")
    if level.update_cadence is not None and level.update_cadence.mode == "send":
        sources.append("status update (update_cadence mode send)")
    return sources


def _sends_data_request(level: Level) -> bool:
    return bool(level.data_request and level.required_data)


def first_reply_blockers(matrix: Matrix) -> dict[str, list[str]]:
    """Per level id: why first_reply_time would not measure agents there ([] = it does). See the module doc."""
    data_requests = ["data request (data_request)"] if any(_sends_data_request(lv) for lv in matrix.levels) else []
    blockers: dict[str, list[str]] = {}
    seen: list[str] = []
    for level in matrix.levels:
        for source in _speaks_on_its_own(level):
            if source not in seen:
                seen.append(source)
        blockers[level.id] = seen + data_requests
    return blockers


def desired_policy(matrix: Matrix, level: Level, *, first_reply: bool | None = None) -> dict[str, Any]:
    """`first_reply`: whether to include first_reply_time; None = decide by `first_reply_blockers`."""
    settings = matrix.vendors.zendesk.sla
    if first_reply is None:
        first_reply = not first_reply_blockers(matrix)[level.id]
    targets: list[tuple[str, int]] = []
    if level.sla.acknowledge is not None and first_reply:
        targets.append(("first_reply_time", _minutes(level.sla.acknowledge)))
    if level.update_cadence is not None:
        targets.append((settings.update_metric, _minutes(level.update_cadence.every)))
    if level.sla.resolve is not None:
        targets.append((settings.resolve_metric, _minutes(level.sla.resolve)))
    metrics = [
        {"priority": priority, "metric": metric, "target": target, "business_hours": settings.business_hours}
        for priority in PRIORITIES
        for metric, target in targets
    ]
    return {
        "title": f"{settings.title_prefix}{level.id} {level.name}",
        "description": DESCRIPTION,
        "filter": _filter_for(matrix, level),
        "policy_metrics": metrics,
    }


def _normalized(policy: dict[str, Any]) -> dict[str, Any]:
    """The fields we manage, in a comparable form (Zendesk adds target_in_seconds, ids, urls...)."""
    def conditions(items):
        return sorted((json.dumps({"field": c.get("field"), "operator": c.get("operator"), "value": c.get("value")},
                                  sort_keys=True) for c in items or []))

    flt = policy.get("filter") or {}
    return {
        "description": policy.get("description") or "",
        "filter": {"all": conditions(flt.get("all")), "any": conditions(flt.get("any"))},
        "policy_metrics": sorted(
            (m.get("priority"), m.get("metric"), int(m.get("target") or 0), bool(m.get("business_hours")))
            for m in policy.get("policy_metrics") or []
        ),
    }


def _display(policy: dict[str, Any], name: str) -> Any:
    if name == "policy_metrics":
        return sorted((f"{m['priority']}:{m['metric']}={m['target']}m{' bh' if m.get('business_hours') else ''}"
                       for m in policy.get("policy_metrics") or []))
    return policy.get(name)


def plan_notes(matrix: Matrix) -> tuple[str, ...]:
    notes = [UNENFORCED_NOTE]
    blockers = first_reply_blockers(matrix)
    with_ack = [level for level in matrix.levels if level.sla.acknowledge is not None]
    omitted = [level for level in with_ack if blockers[level.id]]
    if len(omitted) < len(with_ack):
        notes.append(FIRST_REPLY_NOTE)
    if omitted:
        sources = list(dict.fromkeys(source for level in omitted for source in blockers[level.id]))
        levels = ", ".join(level.id for level in omitted)
        notes.append(FIRST_REPLY_OMITTED_NOTE.format(
            levels=f"level {levels}" if len(omitted) == 1 else f"levels {levels}",
            sources=" / ".join(sources)))
    if matrix.vendors.zendesk.sla.business_hours:
        notes.append(BUSINESS_HOURS_NOTE)
    return tuple(notes)


def plan(matrix: Matrix, existing_policies: list[dict[str, Any]]) -> SlaPlan:
    """What to change so the account's managed SLA policies match the matrix. Pure: no I/O."""
    settings = matrix.vendors.zendesk.sla
    blockers = first_reply_blockers(matrix)
    desired = [desired_policy(matrix, level, first_reply=not blockers[level.id]) for level in matrix.levels]
    return plan_policies(desired, existing_policies, title_prefix=settings.title_prefix, position=settings.position,
                         notes=plan_notes(matrix))


def plan_policies(desired: list[dict[str, Any]], existing_policies: list[dict[str, Any]], *,
                  title_prefix: str, position: str, notes: tuple[str, ...] | None = None) -> SlaPlan:
    prefix = title_prefix
    existing = sorted(existing_policies, key=lambda p: (p.get("position") or 0, p.get("id") or 0))
    managed = {p["title"]: p for p in existing if str(p.get("title", "")).startswith(prefix)}
    items: list[PlanItem] = []
    for policy in desired:
        current = managed.get(policy["title"])
        if current is None:
            items.append(PlanItem("create", policy["title"], policy=policy))
            continue
        want, have = _normalized(policy), _normalized(current)
        diff = {name: {"from": _display(current, name), "to": _display(policy, name)}
                for name in want if want[name] != have[name]}
        if diff:
            items.append(PlanItem("update", policy["title"], policy_id=current.get("id"), policy=policy, diff=diff))
    wanted_titles = [p["title"] for p in desired]
    for title, current in managed.items():
        if title not in wanted_titles:
            items.append(PlanItem("delete", title, policy_id=current.get("id")))
    unmanaged = [p["title"] for p in existing if not str(p.get("title", "")).startswith(prefix)]
    order = wanted_titles + unmanaged if position == "first" else unmanaged + wanted_titles
    # Zendesk appends a created policy at the end: compare the order the account will have after the
    # creates and deletes with the wanted one.
    created = [item.title for item in items if item.action == "create"]
    expected = [p["title"] for p in existing if p["title"] in order] + created
    if expected != order:
        items.append(PlanItem("reorder", "", order=tuple(order)))
    extra = {} if notes is None else {"notes": notes}
    return SlaPlan(items=tuple(items), desired=tuple(desired), title_prefix=prefix, position=position, **extra)


# --------------------------------------------------------------------------------------- apply
@dataclass
class SlaApplyResult:
    writes: int
    remaining: SlaPlan  # the plan computed from a re-read after applying; empty when confirmed

    @property
    def confirmed(self) -> bool:
        return self.remaining.empty


def list_policies(client) -> list[dict[str, Any]]:
    return client.get_all(POLICIES_PATH, "sla_policies")


def apply_plan(client, plan_: SlaPlan) -> SlaApplyResult:
    """Execute `plan_` through `client` (a `connectors.zendesk.ZendeskClient`), then re-read the
    policies and re-plan to confirm (Zendesk's create/update answers are not trusted as the state;
    zenpy's SLA create/update even return None). Reorder runs last, with the ids as re-read."""
    writes = 0
    for item in plan_.items:
        if item.action == "create":
            client.request("POST", POLICIES_PATH, body={"sla_policy": item.policy})
            writes += 1
        elif item.action == "update":
            client.request("PUT", f"{POLICIES_PATH}/{item.policy_id}", body={"sla_policy": item.policy})
            writes += 1
        elif item.action == "delete":
            client.request("DELETE", f"{POLICIES_PATH}/{item.policy_id}")
            writes += 1
    def replan(current: list[dict[str, Any]]) -> SlaPlan:
        return plan_policies(list(plan_.desired), current, title_prefix=plan_.title_prefix, position=plan_.position,
                             notes=plan_.notes)

    if any(item.action == "reorder" for item in plan_.items):
        current = list_policies(client)
        after = replan(current)
        reorder = next((i for i in after.items if i.action == "reorder"), None)
        if reorder is not None:
            by_title = {p["title"]: p["id"] for p in current}
            ids = [by_title[title] for title in reorder.order if title in by_title]
            # The API reference documents a JSON body `{"sla_policy_ids": [...]}` (the OAS lists it as a
            # query array, which Zendesk's Rails stack would read as a single value).
            client.request("PUT", f"{POLICIES_PATH}/reorder", body={"sla_policy_ids": ids})
            writes += 1
    remaining = replan(list_policies(client))
    return SlaApplyResult(writes=writes, remaining=remaining)


# ------------------------------------------------------------------------------------ entry points
# What `escalation sla plan|apply` and the periodic SLA_SYNC job call (through the vendor plugin). They
# return report objects; the cli renders them and chooses the exit status.
NO_CREDENTIALS_NOTE = ("no Zendesk credentials: compared with an empty account (set ZENDESK_SUBDOMAIN, ZENDESK_EMAIL, "
                       "ZENDESK_API_TOKEN to diff against the real one)")
CREDENTIALS_MISSING = ("Zendesk credentials missing: set ZENDESK_SUBDOMAIN (or ZENDESK_BASE_URL), ZENDESK_EMAIL and "
                       "ZENDESK_API_TOKEN (or ZENDESK_OAUTH_TOKEN)")


@dataclass(frozen=True)
class SlaApplyReport:
    """`sla apply`: the plan found and, when it was not empty, what applying it did."""

    plan: SlaPlan
    result: SlaApplyResult | None = None

    @property
    def ok(self) -> bool:
        return self.result is None or self.result.confirmed

    def render(self) -> str:
        return self.plan.render()

    def outcome(self) -> str:
        """The closing line: what was written, or what a re-read still found different."""
        if self.result is None:
            return ""
        if not self.result.confirmed:
            return "applied, but a re-read still differs:\n" + self.result.remaining.render()
        return f"Applied {self.result.writes} change(s); re-read confirms the policies match the matrix."


def _client_from_env(matrix: Matrix, *, database_url: str | None, redis_url: str | None):
    """The client of the connector ZENDESK_* configures; None without credentials. Raises
    ConfigurationError when the credentials are set only in part."""
    connector = build_from_env(matrix, database_url=database_url, redis_url=redis_url)
    return connector.client if connector is not None else None


def plan_from_env(loaded: Any, *, database_url: str | None = None, redis_url: str | None = None) -> SlaPlan:
    """`sla plan`: the account's managed policies against the matrix (an empty account without credentials)."""
    client = _client_from_env(loaded.matrix, database_url=database_url, redis_url=redis_url)
    found = plan(loaded.matrix, list_policies(client) if client is not None else [])
    if client is None:
        found = SlaPlan(found.items, found.desired, found.title_prefix, found.position, found.notes + (NO_CREDENTIALS_NOTE,))
    return found


def apply_from_env(loaded: Any, *, database_url: str | None = None, redis_url: str | None = None) -> SlaApplyReport:
    """`sla apply`: create, update, delete and reorder the managed policies, then confirm by re-reading."""
    client = _client_from_env(loaded.matrix, database_url=database_url, redis_url=redis_url)
    if client is None:
        raise ConfigurationError(CREDENTIALS_MISSING)
    found = plan(loaded.matrix, list_policies(client))
    if found.empty:
        return SlaApplyReport(found)
    return SlaApplyReport(found, apply_plan(client, found))


def sync(matrix: Matrix, client) -> SlaPlan:
    """Apply the plan when it is not empty; the plan that was found (possibly empty). Raises SlaConfigError
    when a re-read after applying still differs."""
    found = plan(matrix, list_policies(client))
    if not found.empty:
        result = apply_plan(client, found)
        if not result.confirmed:
            raise SlaConfigError("SLA sync applied but Zendesk still differs:\n" + result.remaining.render())
    return found


def sync_from_env(matrix: Matrix, *, enabled: bool, database_url: str | None = None,
                  redis_url: str | None = None) -> SlaPlan | None:
    """The periodic job of SLA_SYNC=auto (`enabled`): `sync` with the configured account. None when sync is
    off or no Zendesk credentials are set."""
    if not enabled:
        return None
    client = _client_from_env(matrix, database_url=database_url, redis_url=redis_url)
    return sync(matrix, client) if client is not None else None
