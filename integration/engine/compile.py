"""Per-matrix engine data, computed once and cached by matrix identity and version: the rule index, level
lookups, milestone signal checks, and the template context every template of a decision renders with."""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Mapping, Sequence

from integration.model import ClockStart, Ticket
from integration.rules_index import CompiledRule, RuleIndex
from matrix_config.matching import normalize
from matrix_config.schema import (
    LEVEL_ATTRIBUTE,
    Level,
    Matrix,
    MilestoneSignal,
    format_duration,
)
from matrix_config.templates import PlainContext, TemplateRenderError, render_template

UPDATE_CADENCE_CLOCK = "update_cadence"

# Cause encoding shared with TicketState.rule_id / pending_cause and Decision.rule_id.
MANUAL = "manual"
DEFAULT_PLACEMENT = "default"  # no rule matched: the first level
BREACH_PREFIX = "breach:"


def is_empty_value(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        return len(value) == 0
    return False


# ------------------------------------------------------------------------------ per-matrix data
def _signal_check(signal: MilestoneSignal) -> Callable[[Ticket], bool]:
    tags = frozenset(t.casefold() for t in signal.tags)
    statuses = frozenset(signal.statuses)
    field_name = signal.field
    wanted = normalize(signal.equals) if signal.equals is not None else None

    def holds(ticket: Ticket) -> bool:
        if tags and any(t.casefold() in tags for t in ticket.tags):
            return True
        if statuses and ticket.status in statuses:
            return True
        if field_name is not None:
            value = ticket.attribute(field_name)
            if wanted is None:
                return not is_empty_value(value)
            if isinstance(value, (list, tuple, set, frozenset)):
                return any(normalize(v) == wanted for v in value)
            return normalize(value) == wanted
        return False

    return holds


@dataclass(frozen=True)
class LevelInfo:
    level: Level
    position: int
    sla_seconds: tuple[tuple[str, int], ...]
    calendar: str | None
    owners: dict[Any, str]  # normalised issue type -> group key
    context_base: dict[str, Any]  # template `level` dict without `owner`
    clock_starts: tuple[ClockStart, ...]  # SLA clocks then the update cadence, started on entry


@dataclass
class CompiledMatrix:
    """What `decide` needs from a matrix, computed once."""

    matrix: Matrix
    version: str
    index: RuleIndex
    levels: dict[str, LevelInfo]
    level_ids: tuple[str, ...]
    level_by_folded: dict[str, str]
    has_level_field: bool
    field_labels: dict[str, str]
    group_labels: dict[str, str]
    resolve: Callable[[Ticket], bool]
    progress_signals: tuple[tuple[str, Callable[[Ticket], bool]], ...]  # diagnose, interim_fix
    rules_by_id: dict[str, CompiledRule]
    matrix_context: dict[str, Any]

    def label(self, attribute: str) -> str:
        return self.field_labels.get(attribute) or attribute.replace("_", " ")

    def group_label(self, group: str) -> str:
        return self.group_labels.get(group, group)


def _compile(matrix: Matrix, version: str) -> CompiledMatrix:
    levels: dict[str, LevelInfo] = {}
    for position, level in enumerate(matrix.levels):
        calendar = level.calendar or matrix.clocks.calendar
        clock_starts = [ClockStart(clock, int(target.total_seconds()), calendar) for clock, target in level.sla.items()]
        if level.update_cadence is not None:
            clock_starts.append(
                ClockStart(UPDATE_CADENCE_CLOCK, int(level.update_cadence.every.total_seconds()), calendar))
        levels[level.id] = LevelInfo(
            level=level,
            position=position,
            sla_seconds=tuple((clock, int(target.total_seconds())) for clock, target in level.sla.items()),
            calendar=calendar,
            owners={normalize(k): v for k, v in level.owner.by_issue_type.items()},
            context_base={
                "id": level.id,
                "name": level.name,
                "priority": level.priority,
                "sla": {clock: format_duration(target) for clock, target in level.sla.items()},
                "update_every": format_duration(level.update_cadence.every) if level.update_cadence else None,
            },
            clock_starts=tuple(clock_starts),
        )
    index = RuleIndex.build(matrix.rules)
    return CompiledMatrix(
        matrix=matrix,
        version=version,
        index=index,
        levels=levels,
        level_ids=tuple(level.id for level in matrix.levels),
        level_by_folded={level.id.casefold(): level.id for level in matrix.levels},
        has_level_field=LEVEL_ATTRIBUTE in matrix.fields,
        field_labels={name: m.label for name, m in matrix.fields.items() if m.label},
        group_labels={name: g.label for name, g in matrix.groups.items() if g.label},
        resolve=_signal_check(matrix.milestones.resolve),
        progress_signals=(
            ("diagnose", _signal_check(matrix.milestones.diagnose)),
            ("interim_fix", _signal_check(matrix.milestones.interim_fix)),
        ),
        rules_by_id={r.rule.id: r for r in index.rules},
        matrix_context={"name": matrix.name, "version": version},
    )


_CACHE_SIZE = 32
_cache: "OrderedDict[tuple[int, str | None], CompiledMatrix]" = OrderedDict()
_cache_lock = threading.Lock()


def compile_matrix(matrix: Matrix, version: str | None = None) -> CompiledMatrix:
    """Per-matrix engine data, cached by (identity, version); the matrix object is kept alive by the
    cache entry, so an identity is never reused while cached. `version=None` hashes the matrix once."""
    key = (id(matrix), version)
    compiled = _cache.get(key)
    if compiled is not None and compiled.matrix is matrix:
        return compiled
    with _cache_lock:
        compiled = _cache.get(key)
        if compiled is None or compiled.matrix is not matrix:
            compiled = _compile(matrix, version if version is not None else matrix.version())
            _cache[key] = compiled
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    return compiled


# ---------------------------------------------------------------------------------- templates
def template_context(
    compiled: CompiledMatrix,
    ticket: Ticket,
    level_id: str,
    *,
    previous_level: str | None = None,
    missing: Sequence[str] = (),
    rule_id: str | None = None,
    clock: Mapping[str, Any] | None = None,
    incident: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Plain dicts in the shape of `matrix_config.schema.TEMPLATE_CONTEXT` (also for the timer code's
    cadence and warning templates). `incident`: milestones, clocks, eta, blockers, last_public_update
    (integration.incident.digest_context); without it they are empty."""
    info = compiled.levels[level_id]
    level_dict = dict(info.context_base)
    level_dict["owner"] = compiled.group_label(owner_group(info, ticket))
    level_dict["required_data"] = [
        {"name": name, "label": compiled.label(name), "value": ticket.attribute(name)}
        for name in info.level.required_data
    ]
    level_dict["roles"] = [
        {"name": name, "label": compiled.label(name), "value": ticket.attribute(name)} for name in info.level.roles
    ]
    previous = compiled.levels.get(previous_level) if previous_level else None
    rule = compiled.rules_by_id.get(rule_id) if rule_id else None
    return {
        "ticket": {
            "id": ticket.id,
            "subject": ticket.subject,
            "status": ticket.status,
            "priority": ticket.priority,
            "organization": ticket.organization,
            "requester": {"name": ticket.requester.name, "email": ticket.requester.email},
            "fields": dict(ticket.fields),
            "tags": sorted(ticket.tags),
            "url": ticket.url,
        },
        "level": level_dict,
        "previous_level": {"id": previous.level.id, "name": previous.level.name} if previous else None,
        "missing": [{"name": name, "label": compiled.label(name)} for name in missing],
        "rule": {"id": rule.rule.id, "description": rule.rule.description} if rule else None,
        "clock": dict(clock) if clock is not None else None,
        "matrix": compiled.matrix_context,
        "milestones": [], "clocks": [], "eta": None, "blockers": [], "last_public_update": None, "report": None,
        **(incident or {}),
    }


class Texts:
    """Collects rendered texts and render failures for one decision."""

    def __init__(self, compiled: CompiledMatrix):
        self.compiled = compiled
        self.failures: list[str] = []

    def render(self, name: str | None, context: Mapping[str, Any] | PlainContext) -> str | None:
        if not name:
            return None
        try:
            return render_template(self.compiled.matrix, name, context)
        except TemplateRenderError as exc:
            self.failures.append(f"Template {name!r} could not be rendered: {exc.message}")
            return None


def owner_group(info: LevelInfo, ticket: Ticket) -> str:
    """The level's owner: `owner.by_issue_type[issue_type]`, else `owner.default`."""
    if info.owners:
        issue_type = normalize(ticket.attribute("issue_type"))
        if issue_type is not None and issue_type in info.owners:
            return info.owners[issue_type]
    return info.level.owner.default


def format_duration_seconds(seconds: int) -> str:
    return format_duration(timedelta(seconds=seconds))
