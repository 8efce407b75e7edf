"""SLA for Jira Service Management, honestly: JSM has no public API to create or change SLA goals.

* `escalation sla plan --vendor jira` prints the goals the admin configures by hand in
  Project settings > SLAs: per SLA metric, one goal row per level and priority (JQL, target, calendar),
  with the targets taken from the matrix.
* `escalation sla check --vendor jira` reads `GET /rest/servicedeskapi/request/{key}/sla` for open
  requests and reports where the goal JSM applies to the running cycle differs from the matrix target.

`expected_goals` and `drift` are pure; `plan_from_env` and `check_from_env` read the settings (and JSM) and
return report objects the cli renders.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any, Iterable, Mapping, Sequence

from connectors.base import ConfigurationError
from connectors.jira.connector import build_from_env
from connectors.jira.mapping import ticket_from_issue
from connectors.jira.settings import JSM_API, JiraSettings, NormalizeOptions, split_list
from matrix_config.schema import CLOCKS, LEVEL_ATTRIBUTE, Matrix

# JSM's default metric names for the two clocks JSM projects come with, and suggested names for the
# two custom metrics an admin may add. Override per site with JIRA_SLA_METRICS.
DEFAULT_METRIC_NAMES: dict[str, str] = {
    "acknowledge": "Time to first response",
    "diagnose": "Time to diagnosis",
    "interim_fix": "Time to interim fix",
    "resolve": "Time to resolution",
}
# Metrics every JSM project has; the other two are optional custom metrics.
REQUIRED_CLOCKS = ("acknowledge", "resolve")
DEFAULT_JSM_CALENDAR = "24/7 Calendar (default)"

_METRIC_CONDITIONS: dict[str, dict[str, Any]] = {
    "acknowledge": {
        "start": ["Issue created"],
        "pause": [],
        "stop": ["Comment: For Customers", "Resolution: Set"],
    },
    "resolve": {
        "start": ["Issue created"],
        "pause": [],
        "stop": ["Resolution: Set"],
    },
    "diagnose": {
        "start": ["Issue created"],
        "pause": [],
        "stop": [],
    },
    "interim_fix": {
        "start": ["Issue created"],
        "pause": [],
        "stop": [],
    },
}


@dataclass(frozen=True)
class SlaGoal:
    metric: str  # JSM SLA metric name
    clock: str  # matrix clock
    level: str
    priority: str | None  # neutral priority; None = the level's catch-all row
    jql: str
    jql_by_field_id: str
    target: str  # JSM goal time, e.g. "30m", "4h", "1h 30m", "120h"
    target_seconds: int
    calendar: str


@dataclass(frozen=True)
class Drift:
    ticket_id: str
    level: str
    priority: str | None
    clock: str
    metric: str
    kind: str  # goal_differs | no_goal | metric_missing
    expected: str
    actual: str | None

    def describe(self) -> str:
        where = f"{self.ticket_id} ({self.level}, {self.priority or 'no priority'})"
        if self.kind == "metric_missing":
            return f"{where}: no SLA metric {self.metric!r} on the request; matrix {self.clock} target {self.expected}"
        if self.kind == "no_goal":
            return f"{where}: {self.metric}: no JSM goal applies; matrix target {self.expected}"
        return f"{where}: {self.metric}: JSM goal {self.actual}, matrix target {self.expected}"


def jsm_duration(value: timedelta) -> str:
    """JSM goal times are hours and minutes ("4h", "1h 30m", "120h"); days are written as hours."""
    minutes = int(value.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    parts = ([f"{hours}h"] if hours else []) + ([f"{minutes}m"] if minutes else [])
    return " ".join(parts) or "0m"


def _quote(value: Any) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def level_clause(matrix: Matrix, level_id: str) -> tuple[str, str]:
    """JQL selecting issues at `level_id`: (by field name, by field id). Raises ValueError without a mapping."""
    mapping = matrix.fields.get(LEVEL_ATTRIBUTE)
    jira = mapping.jira if mapping else None
    if jira is None:
        raise ValueError("the matrix maps no `level` field for Jira (fields.level.jira); JSM goals need one to filter on")
    value = jira.values.get(level_id, level_id)
    if jira.label_prefix is not None:
        clause = f"labels = {_quote(f'{jira.label_prefix}{value}')}"
        return clause, clause
    field_id = str(jira.field)
    by_id = f"cf[{field_id.removeprefix('customfield_')}] = {_quote(value)}" if field_id.startswith("customfield_") \
        else f"{field_id} = {_quote(value)}"
    name = mapping.label if mapping and mapping.label else None
    by_name = f"{_quote(name)} = {_quote(value)}" if name else by_id
    return by_name, by_id


def metric_names(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**DEFAULT_METRIC_NAMES, **{k: v for k, v in (overrides or {}).items() if k in CLOCKS}}


def level_priorities(matrix: Matrix, level_id: str) -> list[str]:
    """Priorities the matrix can give a ticket at this level: the level's own, then rule overrides."""
    level = matrix.level(level_id)
    found = [level.priority]
    for rule in matrix.rules:
        if rule.level == level_id and rule.priority and rule.priority not in found:
            found.append(rule.priority)
    return found


def level_calendar(matrix: Matrix, level_id: str) -> str:
    return matrix.level(level_id).calendar or matrix.clocks.calendar or DEFAULT_JSM_CALENDAR


def expected_goals(matrix: Matrix, names: Mapping[str, str] | None = None) -> list[SlaGoal]:
    """Goal rows per metric in the order JSM should evaluate them (first match wins): for each level, one
    row per priority the matrix gives at that level, then a level-only row so a priority changed by hand
    still gets the level's target."""
    names = metric_names(names)
    priorities_map = matrix.vendors.jira.priorities
    goals: list[SlaGoal] = []
    for clock in CLOCKS:
        for level in matrix.levels:
            target = getattr(level.sla, clock)
            if target is None:
                continue
            by_name, by_id = level_clause(matrix, level.id)
            calendar = level_calendar(matrix, level.id)
            rows: list[tuple[str | None, str, str]] = []
            for priority in level_priorities(matrix, level.id):
                jira_priority = _quote(priorities_map[priority])  # type: ignore[index]
                rows.append((priority, f"{by_name} AND priority = {jira_priority}",
                             f"{by_id} AND priority = {jira_priority}"))
            rows.append((None, by_name, by_id))
            for priority, jql, jql_id in rows:
                goals.append(SlaGoal(
                    metric=names[clock], clock=clock, level=level.id, priority=priority, jql=jql,
                    jql_by_field_id=jql_id, target=jsm_duration(target),
                    target_seconds=int(target.total_seconds()), calendar=calendar,
                ))
    return goals


def _millis(duration: Any) -> int | None:
    if isinstance(duration, Mapping) and duration.get("millis") is not None:
        return int(duration["millis"])
    return None


def drift(matrix: Matrix, ticket: Any, sla_response: Mapping[str, Any] | Sequence[Mapping[str, Any]],
          names: Mapping[str, str] | None = None) -> list[Drift]:
    """Where the goal JSM applies to a ticket's running SLA cycles differs from the matrix target for the
    ticket's level. `sla_response` is the `/sla` page (or its `values`). Completed cycles are not compared
    (they ran under whatever level the ticket had then); a ticket the matrix has not placed has no target."""
    names = metric_names(names)
    level_id = ticket.level
    try:
        level = matrix.level(level_id) if level_id else None
    except KeyError:
        level = None
    if level is None:
        return []
    records = sla_response.get("values", []) if isinstance(sla_response, Mapping) else list(sla_response)
    by_name = {str(r.get("name", "")).strip().lower(): r for r in records}
    found: list[Drift] = []
    for clock in CLOCKS:
        target = getattr(level.sla, clock)
        if target is None:
            continue
        metric = names[clock]
        expected = jsm_duration(target)
        common = dict(ticket_id=ticket.id, level=level.id, priority=ticket.priority, clock=clock, metric=metric,
                      expected=expected)
        record = by_name.get(metric.lower())
        if record is None:
            if clock in REQUIRED_CLOCKS:
                found.append(Drift(kind="metric_missing", actual=None, **common))
            continue
        cycle = record.get("ongoingCycle")
        if not cycle:
            continue
        goal = _millis(cycle.get("goalDuration"))
        if goal is None:
            found.append(Drift(kind="no_goal", actual=None, **common))
        elif goal != int(target.total_seconds() * 1000):
            found.append(Drift(kind="goal_differs", actual=jsm_duration(timedelta(milliseconds=goal)), **common))
    return found


# ------------------------------------------------------------------------------- reports (the cli renders them)
def _metric_notes(matrix: Matrix, clock: str, pause_statuses: Iterable[str]) -> dict[str, Any]:
    conditions = {k: list(v) for k, v in _METRIC_CONDITIONS[clock].items()}
    conditions["pause"] = [f"Status: {s}" for s in pause_statuses]
    notes = ["JSM starts this clock at creation; the matrix counts from entering a level. The goal still "
             "follows the level (JSM re-evaluates goal JQL when the issue changes); the service's own clock "
             "decides escalations."]
    if clock in ("diagnose", "interim_fix"):
        signal = getattr(matrix.milestones, clock)
        stop_on = ", ".join([f"label {t}" for t in signal.tags] + [f"status {s}" for s in signal.statuses]) or "-"
        notes.append(f"Optional custom metric. The matrix milestone is: {stop_on}. JSM SLA conditions cannot "
                     "watch labels; add a stop condition your site offers (e.g. a status) or leave this clock "
                     "to the service.")
    return {**conditions, "notes": notes, "optional": clock not in REQUIRED_CLOCKS}


def plan_document(matrix: Matrix, version: str, names: Mapping[str, str] | None = None,
                  pause_statuses: Iterable[str] = ("Waiting for customer",)) -> dict[str, Any]:
    goals = expected_goals(matrix, names)
    pause = list(pause_statuses)
    metrics = []
    for clock in CLOCKS:
        rows = [g for g in goals if g.clock == clock]
        if not rows:
            continue
        metrics.append({"metric": rows[0].metric, "clock": clock, **_metric_notes(matrix, clock, pause),
                        "goals": [asdict(g) for g in rows]})
    calendars = {key: {"timezone": cal.timezone, "hours": cal.hours,
                       "holidays": [d.isoformat() for d in cal.holidays]}
                 for key, cal in matrix.calendars.items()}
    return {"matrix": matrix.name, "version": version, "metrics": metrics, "calendars": calendars,
            "last_goal": "All remaining issues: no target (the matrix has none for unplaced tickets)"}


@dataclass(frozen=True)
class JsmSlaPlan:
    """`sla plan --vendor jira`: the goals the admin configures by hand (`document` is the JSON form)."""

    document: dict[str, Any]
    ok: bool = True

    def to_dict(self) -> dict[str, Any]:
        return self.document

    def render(self) -> str:
        doc = self.document
        lines = [f"JSM SLA goals for matrix {doc['matrix']!r} (version {doc['version']}).",
                 "JSM has no API to write SLA goals: configure these in Project settings > SLAs, in this order.", ""]
        for metric in doc["metrics"]:
            lines.append(f"== {metric['metric']}  (matrix clock: {metric['clock']}"
                         f"{', optional' if metric['optional'] else ''})")
            for key in ("start", "pause", "stop"):
                if metric[key]:
                    lines.append(f"   {key}: {', '.join(metric[key])}")
            for note in metric["notes"]:
                lines.append(f"   note: {note}")
            lines.append("   goals (first match wins):")
            for goal in metric["goals"]:
                lines.append(f"     {goal['jql']:<60}  {goal['target']:>8}  {goal['calendar']}")
            lines.append(f"     {'All remaining issues':<60}  {'no target':>8}")
            lines.append("")
        if doc["calendars"]:
            lines.append("Calendars (create them under Project settings > SLAs > Calendars):")
            for key, cal in doc["calendars"].items():
                hours = "; ".join(f"{day} {', '.join(spans)}" for day, spans in cal["hours"].items())
                lines.append(f"  {key}: {cal['timezone']}; {hours}; holidays: {', '.join(cal['holidays']) or '-'}")
        lines.append("")
        lines.append("JQL by field id (if the field name differs on your site): use `jql_by_field_id` from --format json.")
        return "\n".join(lines)


def pause_status_names(matrix: Matrix, settings: Any) -> list[str]:
    """The Jira status names behind the matrix's neutral pause statuses (JIRA_PENDING/ON_HOLD_STATUSES)."""
    by_neutral = {"pending": split_list(settings.pending_statuses_csv),
                  "on_hold": split_list(settings.on_hold_statuses_csv)}
    names: list[str] = []
    for neutral in matrix.clocks.pause_statuses:
        names.extend(n for n in by_neutral.get(neutral, []) if n not in names)
    return names


def plan_from_env(loaded: Any, **_urls: Any) -> JsmSlaPlan:
    """`sla plan --vendor jira`. Raises ValueError when the matrix maps no level field for Jira."""
    settings = JiraSettings()
    return JsmSlaPlan(plan_document(loaded.matrix, loaded.version, settings.sla_metric_names,
                                    pause_status_names(loaded.matrix, settings)))


def sla_records(connector: Any, key: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    start = 0
    while True:
        page = connector.client.get_json(f"{JSM_API}/request/{key}/sla", {"start": start, "limit": 50})
        values = page.get("values") or []
        records.extend(values)
        if page.get("isLastPage", True) or not values:
            return records
        start += len(values)


def check_open_requests(connector: Any, matrix: Matrix, max_tickets: int = 500) -> tuple[int, list[Drift]]:
    """(requests checked, drift found) for open requests in the configured projects."""
    jql = f"{connector._project_clause()}statusCategory != Done ORDER BY updated DESC"
    options = NormalizeOptions.from_settings(connector.settings)
    names = connector.settings.sla_metric_names
    checked = 0
    found: list[Drift] = []
    for issue in connector.search(jql, connector._issue_fields()):
        if checked >= max_tickets:
            break
        checked += 1
        ticket = ticket_from_issue(issue, matrix, options)
        if not ticket.level:
            continue
        found.extend(drift(matrix, ticket, sla_records(connector, ticket.id), names))
    return checked, found


@dataclass(frozen=True)
class JsmSlaCheck:
    """`sla check --vendor jira`: open requests checked and where JSM's goal differs from the matrix."""

    checked: int
    drift: tuple[Drift, ...]

    @property
    def ok(self) -> bool:
        return not self.drift

    def to_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, "drift": [asdict(d) for d in self.drift]}

    def render(self) -> str:
        return "\n".join([item.describe() for item in self.drift] + [
            f"{self.checked} open request(s) checked, {len(self.drift)} SLA goal(s) differ from the matrix."])


def check_from_env(loaded: Any, **_urls: Any) -> JsmSlaCheck:
    """`sla check --vendor jira` against the site JIRA_* configures. Raises ConfigurationError without
    (complete) credentials, ConnectorError when Jira cannot be read."""
    connector = build_from_env(loaded.matrix)
    if connector is None:
        raise ConfigurationError("set JIRA_URL, JIRA_EMAIL and JIRA_API_TOKEN to read SLAs from JSM")
    checked, found = check_open_requests(connector, loaded.matrix)
    return JsmSlaCheck(checked, tuple(found))
