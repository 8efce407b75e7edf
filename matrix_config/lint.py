"""Semantic checks on a matrix that loaded: mistakes the schema cannot see.

Errors (the matrix must not be used): a rule no ticket can ever reach because an earlier rule already
matches everything it matches; a template that fails to render with sample data.
Warnings (worth a look, the matrix still works): owner groups missing on a vendor the matrix uses, SLA
targets that loosen as the level rises, a template that prints an optional value (requester name,
organization) without a fallback, levels nothing reaches, groups without vendor ids, unused templates
and groups, breach escalations that cannot happen, a `gate.manual` setting that has no effect.

Rule shadowing follows the matching semantics of `integration.rules_index` (duplicated here on purpose:
`matrix_config` does not import the core): every attribute value is a set of normalised keys (a single-valued
attribute is a set of at most one), `x` means "contains x", a list / `any` "contains one of", `all`
"contains all of", `none` "contains none of", numeric bounds need a single number. The check is conservative:
it reports only when every ticket the later rule matches provably also matches the earlier one, whatever
the attribute's cardinality.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Literal

from matrix_config.loader import LoadedMatrix
from matrix_config.matching import normalize
from datetime import timedelta

from matrix_config.schema import CLOCKS, Level, Matcher, Matrix, Rule, format_duration
from matrix_config.templates import (
    TemplateRenderError,
    prints_empty_optional_value,
    render_template,
    sample_context,
)

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    severity: Severity
    location: str  # FILE:LINE:COL
    path: str  # path.to.key
    message: str

    def line(self) -> str:
        """`FILE:LINE:COL: path: message`; warnings say so after the path."""
        label = "warning: " if self.severity == "warning" else ""
        return f"{self.location}: {self.path}: {label}{self.message}"

    def to_dict(self) -> dict[str, str]:
        return {"severity": self.severity, "location": self.location, "path": self.path, "message": self.message}


class _Collector:
    def __init__(self, loaded: LoadedMatrix):
        self.loaded = loaded
        self.findings: list[Finding] = []

    def add(self, severity: Severity, loc: tuple[Any, ...], message: str, *, at_key: bool = False) -> None:
        location, path = self.loaded.locate(loc, at_key=at_key)
        self.findings.append(Finding(severity, location, path, message))


def lint(loaded: LoadedMatrix) -> list[Finding]:
    """All findings for a loaded matrix, errors first, each group in file order."""
    out = _Collector(loaded)
    matrix = loaded.matrix
    _shadowed_rules(matrix, out)
    _template_renders(matrix, loaded.version, out)
    _owners(matrix, out)
    _field_mappings(matrix, out)
    _sla_loosening(matrix, out)
    _reachability(matrix, out)
    _breaches(matrix, out)
    _unused(matrix, out)
    _gate(matrix, out)
    _alerts(matrix, out)
    _roles(matrix, out)

    def order(f: Finding) -> tuple[int, int, int]:
        _, line, col = f.location.rsplit(":", 2)
        return (0 if f.severity == "error" else 1, int(line), int(col))

    return sorted(dict.fromkeys(out.findings), key=order)


# ------------------------------------------------------------------------------------ shadowing
def _keys(values: Iterable[Any]) -> frozenset:
    return frozenset(k for k in (normalize(v) for v in values) if k is not None)


@dataclass
class _Constraint:
    """What one rule demands of one attribute's value set V."""

    contains: set = field(default_factory=set)  # each key in V
    one_of: list[frozenset] = field(default_factory=list)  # V meets each group
    excluded: set = field(default_factory=set)  # V meets none of these
    lower: tuple[float, bool] | None = None  # (bound, inclusive); implies a single number
    upper: tuple[float, bool] | None = None
    numeric: bool = False
    present: bool | None = None
    vague: bool = False  # an operator this analysis does not reason about (as the earlier rule: never implied)

    def set_present(self, value: bool) -> None:
        if self.present is not None and self.present != value:
            self.vague = True
        self.present = value


def _tighter_lower(a: tuple[float, bool] | None, b: tuple[float, bool]) -> tuple[float, bool]:
    if a is None or b[0] > a[0] or (b[0] == a[0] and not b[1]):
        return b
    return a


def _tighter_upper(a: tuple[float, bool] | None, b: tuple[float, bool]) -> tuple[float, bool]:
    if a is None or b[0] < a[0] or (b[0] == a[0] and not b[1]):
        return b
    return a


def _constraint(condition: Any) -> _Constraint:
    c = _Constraint()
    if isinstance(condition, Matcher):
        if condition.any is not None:
            c.one_of.append(_keys(condition.any))
        if condition.all is not None:
            c.contains |= _keys(condition.all)
        if condition.none is not None:
            c.excluded |= _keys(condition.none)
        if condition.gte is not None:
            c.lower = _tighter_lower(c.lower, (condition.gte, True))
        if condition.gt is not None:
            c.lower = _tighter_lower(c.lower, (condition.gt, False))
        if condition.lte is not None:
            c.upper = _tighter_upper(c.upper, (condition.lte, True))
        if condition.lt is not None:
            c.upper = _tighter_upper(c.upper, (condition.lt, False))
        c.numeric = c.lower is not None or c.upper is not None
        if condition.present is not None:
            c.set_present(condition.present)
    elif isinstance(condition, list):
        c.one_of.append(_keys(condition))
    else:
        key = normalize(condition)
        if key is None:
            c.set_present(False)
        else:
            c.contains.add(key)
    return c


def _guarantees_nonempty(c: _Constraint) -> bool:
    return bool(c.contains) or any(c.one_of) or c.numeric or c.present is True


def _lower_implied(need: tuple[float, bool], have: tuple[float, bool] | None) -> bool:
    if have is None:
        return False
    if need[1]:  # need >= x
        return have[0] >= need[0]
    return have[0] > need[0] or (have[0] == need[0] and not have[1])


def _upper_implied(need: tuple[float, bool], have: tuple[float, bool] | None) -> bool:
    if have is None:
        return False
    if need[1]:
        return have[0] <= need[0]
    return have[0] < need[0] or (have[0] == need[0] and not have[1])


def _implies(later: _Constraint, earlier: _Constraint) -> bool:
    """Does every value set satisfying `later` satisfy `earlier`?"""
    if earlier.vague or later.vague:
        return False
    for key in earlier.contains:
        if key not in later.contains and not any(group and group <= {key} for group in later.one_of):
            return False
    for group in earlier.one_of:
        if not (later.contains & group) and not any(g and g <= group for g in later.one_of):
            return False
    if earlier.excluded and not (earlier.excluded <= later.excluded or later.present is False):
        return False
    if earlier.lower is not None and not _lower_implied(earlier.lower, later.lower):
        return False
    if earlier.upper is not None and not _upper_implied(earlier.upper, later.upper):
        return False
    if earlier.present is True and not _guarantees_nonempty(later):
        return False
    if earlier.present is False and later.present is not False:
        return False
    return True


def _satisfiable(c: _Constraint) -> bool:
    if c.contains & c.excluded:
        return False
    if any(not group or group <= c.excluded for group in c.one_of):
        return False
    if c.present is False and _guarantees_nonempty(c):
        return False
    if c.lower and c.upper:
        if c.lower[0] > c.upper[0] or (c.lower[0] == c.upper[0] and not (c.lower[1] and c.upper[1])):
            return False
    return True


def shadowing_rule(earlier: Rule, later: Rule) -> bool:
    """True when every ticket `later` matches is matched by `earlier` first."""
    for attribute, condition in earlier.when.items():
        if attribute not in later.when:
            return False
        if not _implies(_constraint(later.when[attribute]), _constraint(condition)):
            return False
    return True


def _shadowed_rules(matrix: Matrix, out: _Collector) -> None:
    rules = matrix.rules
    constraints = [{a: _constraint(c) for a, c in r.when.items()} for r in rules]
    attribute_sets = [frozenset(c) for c in constraints]
    for j, later in enumerate(rules):
        if not all(_satisfiable(c) for c in constraints[j].values()):
            out.add("error", ("rules", j, "when"), f"rule '{later.id}' can never match: its conditions contradict "
                    "each other", at_key=True)
            continue
        for i in range(j):
            earlier = rules[i]
            # An earlier rule testing an attribute the later one leaves open cannot cover it.
            if not attribute_sets[i] <= attribute_sets[j]:
                continue
            if all(_implies(constraints[j][a], c) for a, c in constraints[i].items()):
                what = "matches every ticket" if not earlier.when else "matches every ticket this rule matches"
                out.add("error", ("rules", j),
                        f"rule '{later.id}' can never match: the earlier rule '{earlier.id}' (rules[{i}]) {what}; "
                        "move the narrower rule first or remove it")
                break


# ------------------------------------------------------------------------------------ templates
@dataclass(frozen=True)
class _Use:
    level: Level
    description: str
    context: dict[str, Any]


def _template_uses(matrix: Matrix, version: str) -> dict[str, list[_Use]]:
    uses: dict[str, list[_Use]] = {}
    breach_sources: dict[str, list[tuple[Level, str]]] = {}
    for level in matrix.levels:
        for clock, target in level.on_breach.items():
            breach_sources.setdefault(target, []).append((level, clock))

    def entry_contexts(level: Level) -> list[tuple[str, dict[str, Any]]]:
        index = matrix.level_index(level.id)
        rule = next((r for r in matrix.rules if r.level == level.id), None)
        variants: list[tuple[str, dict[str, Any]]] = []
        if index == 0:
            ctx = sample_context(matrix, level, with_clock=False, version=version)
            ctx["rule"] = None
            variants.append(("a new ticket no rule matched (previous_level, rule, clock empty)", ctx))
        if rule is not None:
            ctx = sample_context(matrix, level, rule_id=rule.id, with_clock=False, version=version)
            ctx["previous_level"] = None
            variants.append((f"a new ticket placed by rule {rule.id} (previous_level, clock empty)", ctx))
        for source, clock in breach_sources.get(level.id, []):
            ctx = sample_context(matrix, level, previous=source, version=version)
            ctx["rule"] = None
            ctx["clock"]["name"] = clock
            variants.append((f"escalated by the {clock} breach at {source.id} (rule empty)", ctx))
        if index > 0:
            ctx = sample_context(matrix, level, with_clock=False, version=version)
            ctx["rule"] = None
            variants.append(("escalated by hand (rule, clock empty)", ctx))
        return variants

    def use(name: str | None, level: Level, variants: list[tuple[str, dict[str, Any]]]) -> None:
        if name is None:
            return
        for description, context in variants:
            uses.setdefault(name, []).append(_Use(level, description, context))

    for level in matrix.levels:
        entries = entry_contexts(level)
        use(level.on_enter.reply, level, entries)
        use(level.on_enter.note, level, entries)
        if level.data_request:
            use(level.data_request, level, [(d, c) for d, c in entries])
        if level.update_cadence and level.update_cadence.template:
            ctx = sample_context(matrix, level, version=version)
            ctx["clock"]["name"] = "update_cadence"
            use(level.update_cadence.template, level, [("an update-cadence reminder", ctx)])
    for i, route in enumerate(matrix.notify.routes if matrix.notify is not None else ()):
        levels = [lv for lv in matrix.levels if route.when.level is None or lv.id in route.when.level]
        for level in levels[:1] or matrix.levels[:1]:
            ctx = sample_context(matrix, level, version=version, with_alert=True)
            use(route.template, level, [(f"an alert of notify.routes[{i}]", ctx)])
    if matrix.incident is not None and matrix.incident.summary_reply:
        for level in [lv for lv in matrix.levels if lv.roles][-1:]:
            use(matrix.incident.summary_reply, level,
                [("the incident summary on solving", sample_context(matrix, level, with_clock=False, version=version))])
    for rule in matrix.rules:
        level = matrix.level(rule.level) if rule.level else matrix.levels[0]
        ctx = sample_context(matrix, level, rule_id=rule.id, with_clock=False, version=version)
        ctx["previous_level"] = None
        use(rule.note, level, [(f"rule {rule.id} fired", ctx)])
        use(rule.reply, level, [(f"bypass rule {rule.id} answered the customer (previous_level, clock empty)",
                                 ctx)])
    return uses


def _template_renders(matrix: Matrix, version: str, out: _Collector) -> None:
    uses = _template_uses(matrix, version)
    for name in matrix.templates:
        tried = uses.get(name) or [
            _Use(matrix.levels[0], "sample data", sample_context(matrix, matrix.levels[0], version=version))
        ]
        failed = False
        for use in tried:
            try:
                render_template(matrix, name, use.context)
            except TemplateRenderError as exc:
                out.add("error", ("templates", name),
                        f"template '{name}' fails to render at {use.level.id} for {use.description}: {exc.message}",
                        at_key=True)
                failed = True
                break
        if failed:
            continue
        empty = prints_empty_optional_value(matrix, name, tried[0].context)
        if empty is not None:
            out.add("warning", ("templates", name),
                    f"template '{name}' prints nothing where {empty} is empty (the helpdesk may leave it unset): "
                    f"give a fallback, e.g. {{{{ {empty} or \"there\" }}}}, or guard it with {{% if {empty} %}}",
                    at_key=True)


# ------------------------------------------------------------------------------------ owners
def _vendors_in_use(matrix: Matrix) -> list[str]:
    used = []
    for vendor in ("zendesk", "jira"):
        if any(getattr(g, vendor) is not None for g in matrix.groups.values()) or any(
            getattr(f, vendor) is not None for f in matrix.fields.values()
        ):
            used.append(vendor)
    return used


_VENDOR_NAMES = {"zendesk": "Zendesk", "jira": "Jira"}


def _owners(matrix: Matrix, out: _Collector) -> None:
    vendors = _vendors_in_use(matrix)
    for key, group in matrix.groups.items():
        if group.zendesk is None and group.jira is None:
            out.add("warning", ("groups", key), f"group '{key}' has no vendor ids (zendesk, jira): "
                    "tickets routed to it keep their current group", at_key=True)
    for i, level in enumerate(matrix.levels):
        routed: dict[str, list[str]] = {}
        for issue_type in matrix.issue_types:
            routed.setdefault(level.owner.by_issue_type.get(issue_type, level.owner.default), []).append(issue_type)
        for group_key, issue_types in routed.items():
            group = matrix.groups.get(group_key)
            if group is None or (group.zendesk is None and group.jira is None):
                continue
            for vendor in vendors:
                if getattr(group, vendor) is None:
                    if group_key == level.owner.default:
                        loc: tuple[Any, ...] = ("levels", i, "owner", "default")
                    else:
                        loc = ("levels", i, "owner", "by_issue_type", issue_types[0])
                    out.add("warning", loc,
                            f"issue types {', '.join(issue_types)} at {level.id} go to group '{group_key}', which has "
                            f"no {vendor} id: on {_VENDOR_NAMES[vendor]} these tickets get no owner group")


def _field_mappings(matrix: Matrix, out: _Collector) -> None:
    vendors = _vendors_in_use(matrix)
    for name, mapping in matrix.fields.items():
        missing = [v for v in vendors if getattr(mapping, v) is None]
        if not missing:
            continue
        if len(missing) == len(vendors):
            message = (f"attribute '{name}' is not mapped to any helpdesk field: it is always empty, so rules on it "
                       "never match and required data naming it is always missing")
        else:
            vendor = _VENDOR_NAMES[missing[0]]
            message = f"attribute '{name}' has no {missing[0]} mapping: on {vendor} it is always empty"
        out.add("warning", ("fields", name), message, at_key=True)


# ------------------------------------------------------------------------------------ SLA targets
def _sla_loosening(matrix: Matrix, out: _Collector) -> None:
    for clock in CLOCKS:
        tightest: tuple[Level, Any] | None = None
        for i, level in enumerate(matrix.levels):
            target = getattr(level.sla, clock)
            if target is None:
                continue
            if tightest is not None and target > tightest[1]:
                out.add("warning", ("levels", i, "sla", clock),
                        f"{clock} target {format_duration(target)} at {level.id} is looser than "
                        f"{format_duration(tightest[1])} at {tightest[0].id}: a higher level should not be slower")
            if tightest is None or target <= tightest[1]:
                tightest = (level, target)


# ------------------------------------------------------------------------------------ reachability
def _reachability(matrix: Matrix, out: _Collector) -> None:
    reached = {matrix.levels[0].id} | {r.level for r in matrix.rules if r.level}
    frontier = list(reached)
    while frontier:
        current = frontier.pop()
        try:
            level = matrix.level(current)
        except KeyError:
            continue
        for target in level.on_breach.values():
            if target not in reached:
                reached.add(target)
                frontier.append(target)
    manual = "level" in matrix.fields
    for i, level in enumerate(matrix.levels):
        if level.id in reached:
            continue
        if manual:
            message = (f"no rule or on_breach leads to level {level.id}: only manual escalation "
                       "(an agent setting the `level` field) reaches it")
        else:
            message = (f"nothing can reach level {level.id}: no rule or on_breach leads to it and there is no "
                       "`level` field for manual escalation")
        out.add("warning", ("levels", i, "id"), message)


def _breaches(matrix: Matrix, out: _Collector) -> None:
    for i, level in enumerate(matrix.levels):
        for clock, target in level.on_breach.items():
            if getattr(level.sla, clock) is None:
                out.add("warning", ("levels", i, "on_breach", clock),
                        f"{level.id} has no {clock} target, so this breach never happens", at_key=True)
            try:
                target_index = matrix.level_index(target)
            except KeyError:
                continue
            if target_index <= i:
                out.add("warning", ("levels", i, "on_breach", clock),
                        f"on_breach to {target} does nothing: tickets never move down or sideways")


def _gate(matrix: Matrix, out: _Collector) -> None:
    if "gate" not in matrix.model_fields_set or "manual" not in matrix.gate.model_fields_set:
        return
    if "level" not in matrix.fields:
        out.add("warning", ("gate", "manual"), "gate.manual has no effect: without a `level` field agents cannot "
                "set a level by hand", at_key=True)
    elif not any(level.required_data for level in matrix.levels[1:]):
        out.add("warning", ("gate", "manual"), "gate.manual has no effect: no level above the first has "
                "required_data", at_key=True)


def _unused(matrix: Matrix, out: _Collector) -> None:
    used_templates: set[str] = set()
    used_groups: set[str] = set()
    for level in matrix.levels:
        used_templates |= {t for t in (level.on_enter.reply, level.on_enter.note, level.data_request) if t}
        if level.update_cadence and level.update_cadence.template:
            used_templates.add(level.update_cadence.template)
        used_groups.add(level.owner.default)
        used_groups |= set(level.owner.by_issue_type.values())
    used_templates |= {r.note for r in matrix.rules if r.note}
    used_templates |= {r.reply for r in matrix.rules if r.reply}
    if matrix.notify is not None:
        used_templates |= {r.template for r in matrix.notify.routes if r.template}
    if matrix.incident is not None and matrix.incident.summary_reply:
        used_templates.add(matrix.incident.summary_reply)
    for name in matrix.templates:
        if name not in used_templates:
            out.add("warning", ("templates", name), f"template '{name}' is not used by any level or rule",
                    at_key=True)
    for key in matrix.groups:
        if key not in used_groups:
            out.add("warning", ("groups", key), f"group '{key}' is not the owner at any level", at_key=True)


# A clock this short is over before anyone opens the ticket to read an internal note about it.
SHORT_CLOCK = timedelta(minutes=15)


def _alerts(matrix: Matrix, out: _Collector) -> None:
    """notify: channels no route uses; a level with a clock of SHORT_CLOCK or less whose warnings and
    breaches reach nobody outside the ticket."""
    notify = matrix.notify
    routes = notify.routes if notify is not None else []
    if notify is not None:
        used = {name for route in routes for name in route.to}
        for name in notify.channels:
            if name not in used:
                out.add("warning", ("notify", "channels", name), f"channel '{name}' is not used by any route",
                        at_key=True)

    def routed(level_id: str, event: str, clock: str) -> bool:
        return any(event in r.when.event and (r.when.level is None or level_id in r.when.level)
                   and (r.when.clock is None or clock in r.when.clock) for r in routes)

    for i, level in enumerate(matrix.levels):
        for clock, target in level.sla.items():
            if target > SHORT_CLOCK:
                continue
            missing = [event for event in ("warning", "breach") if not routed(level.id, event, clock)]
            if missing:
                out.add("warning", ("levels", i, "sla", clock),
                        f"{level.id}'s {clock} clock is {format_duration(target)}: its "
                        f"{' and '.join({'warning': 'warnings', 'breach': 'breaches'}[e] for e in missing)} only reach an internal note; route them to "
                        f"a channel under notify.routes (event: [{', '.join(missing)}], level: [{level.id}])")


__all__ = ["Finding", "lint", "shadowing_rule"]


def _roles(matrix: Matrix, out: _Collector) -> None:
    """A role without a deadline at a level with an acknowledge target: nothing checks it is filled in time."""
    for i, level in enumerate(matrix.levels):
        acknowledge = level.sla.acknowledge
        if acknowledge is None:
            continue
        as_list = out.loaded.source_map is not None and isinstance(
            out.loaded.source_map.value_at(("levels", i, "roles")), list)
        for j, (name, role) in enumerate(level.roles.items()):
            if role.within is None:
                out.add("warning", ("levels", i, "roles", j if as_list else name),
                        f"role '{name}' has no deadline although {level.id} must be acknowledged within "
                        f"{format_duration(acknowledge)}: give it `within:` (e.g. {{within: "
                        f"{format_duration(acknowledge)}}}) so an unfilled role is reminded and alerted")
