"""Load a matrix file: YAML 1.2 (ruamel.yaml round-trip), schema validation, cross-reference checks.

Every problem becomes one line `FILE:LINE:COL: path.to.key: message` (1-based line and column), so an
admin's editor and CI annotations can jump to it. Checks run in phases: YAML syntax (duplicate keys are
errors; PyYAML would silently keep the last one), then the schema, then cross-references (levels, groups,
issue types, templates, attributes, calendars, template placeholders). A later phase runs only when the
earlier one passed, because a cross-reference cannot be checked on a value that has the wrong shape.
"""
from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.scalarstring import FoldedScalarString, LiteralScalarString

from matrix_config.schema import (
    BUILTIN_ATTRIBUTES,
    ISSUE_TYPE_ATTRIBUTE,
    LEVEL_ATTRIBUTE,
    PRIORITIES,
    STATUSES,
    Matcher,
    Matrix,
)
from matrix_config.templates import check_template_source

MAX_SOURCE_CHARS = 1_000_000
MAX_NODES = 200_000  # after alias expansion; a YAML "billion laughs" file stops here

Loc = tuple[Any, ...]

# Rule ids the engine uses for a cause that is not a rule (`integration.engine.MANUAL` / `DEFAULT_PLACEMENT`;
# `Decision.rule_id` and `TicketState.rule_id` hold a rule id, one of these, or `breach:<clock>`, which no
# identifier can spell). A rule with one of these ids would be reported and remembered as that cause.
RESERVED_RULE_IDS = {
    "manual": "a level an agent set by hand",
    "default": "a ticket no rule matched",
}


class MatrixInvalid(Exception):
    """The matrix cannot be used. `errors` holds one `FILE:LINE:COL: path: message` line per problem."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


# ----------------------------------------------------------------------------------- source positions
def format_path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(root)"


class SourceMap:
    """Maps a location in the matrix data (a pydantic `loc` tuple) to a line and column in the source."""

    def __init__(self, path: str, text: str, tree: Any):
        self.path = path
        self.lines = text.splitlines()
        self.tree = tree

    def resolve(self, loc: Loc, *, at_key: bool = False, missing: bool = False) -> tuple[int, int, Loc]:
        """(line, col, resolved loc), 1-based. Loc elements that do not exist in the tree are skipped (pydantic
        adds union branch names such as `matcher`), except a trailing missing key, which stays in the path
        and is reported at its parent. `at_key` reports a mapping entry at its key rather than its value."""
        node = self.tree
        line, col = 0, 0
        key_pos: tuple[int, int] | None = None
        resolved: list[Any] = []
        for i, part in enumerate(loc):
            last = i == len(loc) - 1
            if part == "[key]":
                if key_pos is not None:
                    line, col = key_pos
                continue
            if isinstance(node, CommentedMap) and _has_key(node, part):
                part = _actual_key(node, part)
                key_pos = tuple(node.lc.key(part))
                child = node[part]
                if at_key and last or isinstance(child, (CommentedMap, CommentedSeq)) or child is None:
                    line, col = key_pos
                else:
                    line, col = node.lc.value(part)
                resolved.append(part)
                node = child
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
                line, col = node.lc.item(part)
                key_pos = None
                resolved.append(part)
                node = node[part]
            elif missing and last:
                resolved.append(part)
            else:
                continue
        return line + 1, col + 1, tuple(resolved)

    def value_at(self, loc: Loc) -> Any:
        node = self.tree
        for part in loc:
            if isinstance(node, CommentedMap) and _has_key(node, part):
                node = node[_actual_key(node, part)]
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
                node = node[part]
        return node

    def line_text(self, line: int) -> str:
        return self.lines[line - 1] if 0 < line <= len(self.lines) else ""

    def error(self, loc: Loc, message: str, *, at_key: bool = False, missing: bool = False) -> str:
        line, col, resolved = self.resolve(loc, at_key=at_key, missing=missing)
        return f"{self.path}:{line}:{col}: {format_path(resolved)}: {message}"


def _has_key(mapping: CommentedMap, key: Any) -> bool:
    try:
        return key in mapping or (isinstance(key, str) and any(str(k) == key for k in mapping))
    except TypeError:
        return False


def _actual_key(mapping: CommentedMap, key: Any) -> Any:
    if key in mapping:
        return key
    return next(k for k in mapping if str(k) == key)


@dataclass(frozen=True)
class LoadedMatrix:
    matrix: Matrix
    version: str
    path: str
    source: str = ""  # the YAML text as loaded; the pipeline stores it by version to reload pinned versions
    source_map: SourceMap | None = field(default=None, compare=False, repr=False)

    def locate(self, loc: Loc, *, at_key: bool = False) -> tuple[str, str]:
        """(`FILE:LINE:COL`, `path.to.key`) of a location in the matrix data."""
        if self.source_map is None:
            return f"{self.path}:1:1", format_path(loc)
        line, col, resolved = self.source_map.resolve(loc, at_key=at_key)
        return f"{self.path}:{line}:{col}", format_path(resolved)


# ------------------------------------------------------------------------------------------ YAML
def _yaml() -> YAML:
    yaml = YAML(typ="rt", pure=True)
    yaml.version = (1, 2)
    yaml.allow_duplicate_keys = False
    return yaml


def _duplicate_key_errors(path: str, text: str) -> list[str]:
    """Every duplicate key in the document, found on the composed node graph (which keeps duplicates)."""
    errors: list[str] = []

    def walk(node: Node, loc: list[Any], seen: set[int]) -> None:
        if id(node) in seen:
            return
        seen = seen | {id(node)}
        if isinstance(node, MappingNode):
            first: dict[Any, Node] = {}
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, ScalarNode) else None
                if key is not None and key in first:
                    mark = key_node.start_mark
                    original = first[key].start_mark
                    errors.append(
                        f"{path}:{mark.line + 1}:{mark.column + 1}: {format_path(loc + [key])}: "
                        f"duplicate key '{key}' (first defined on line {original.line + 1})"
                    )
                    continue
                if key is not None:
                    first[key] = key_node
                walk(value_node, loc + [key], seen)
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, loc + [index], seen)

    try:
        root = _yaml().compose(text)
    except YAMLError:
        return []
    if root is not None:
        walk(root, [], set())
    return errors


def _yaml_error_line(path: str, exc: MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = exc.problem or exc.context or "invalid YAML"
    if exc.context and exc.problem:
        problem = f"{exc.context}: {exc.problem}"
    return f"{path}:{line}:{col}: (yaml): {problem.strip()}"


def _construct_error_line(path: str, text: str, exc: Exception) -> str:
    """Point at the first scalar ruamel cannot turn into a value (only timestamps can fail that way)."""
    yaml = _yaml()
    try:
        root = yaml.compose(text)
    except YAMLError:
        root = None
    found: list[tuple[Node, list[Any]]] = []

    def walk(node: Node, loc: list[Any]) -> None:
        if found:
            return
        if isinstance(node, MappingNode):
            for key_node, value_node in node.value:
                walk(value_node, loc + [getattr(key_node, "value", "?")])
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, loc + [index])
        elif isinstance(node, ScalarNode) and node.tag.endswith(":timestamp"):
            try:
                yaml.constructor.construct_yaml_timestamp(node)
            except (ValueError, TypeError, OverflowError):
                found.append((node, loc))

    if root is not None:
        walk(root, [])
    if found:
        node, loc = found[0]
        mark = node.start_mark
        return f"{path}:{mark.line + 1}:{mark.column + 1}: {format_path(loc)}: invalid date {node.value!r}: {exc}"
    return f"{path}:1:1: (yaml): {exc}"


def _plain(node: Any, budget: list[int]) -> Any:
    """ruamel's round-trip types (CommentedMap, LiteralScalarString, ScalarFloat, ...) -> plain Python."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooLarge()
    if isinstance(node, dict):
        return {_plain(k, budget): _plain(v, budget) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_plain(v, budget) for v in node]
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, str):
        return str(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node


class _TooLarge(Exception):
    pass


# ------------------------------------------------------------------------------- schema errors
_TYPE_NAMES = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping (key: value)",
    "model_type": "a mapping (key: value)",
    "model_attributes_type": "a mapping (key: value)",
    "date_type": "a date like 2026-12-24",
    "date_parsing": "a date like 2026-12-24",
    "date_from_datetime_parsing": "a date like 2026-12-24",
    "date_from_datetime_inexact": "a date like 2026-12-24",
}


_SCALAR_TYPE_ERRORS = {"string_type", "int_type", "int_parsing", "int_from_float", "float_type", "float_parsing",
                       "bool_type", "bool_parsing"}


def _describe_yaml_value(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _unwrap(tp: Any) -> list[Any]:
    """Possible concrete types behind Annotated / Optional / Union."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(tp):
            out.extend(_unwrap(arg))
        return out
    return [tp]


def _allowed_keys(loc: Loc) -> list[str] | None:
    """Field names of the model at `loc` in the schema, for 'did you mean' hints."""
    candidates: list[Any] = [Matrix]
    for part in loc:
        nxt: list[Any] = []
        advanced = False
        for tp in candidates:
            for concrete in _unwrap(tp):
                origin = typing.get_origin(concrete)
                if isinstance(concrete, type) and issubclass(concrete, BaseModel):
                    if isinstance(part, str) and part in concrete.model_fields:
                        nxt.append(concrete.model_fields[part].annotation)
                        advanced = True
                    else:
                        nxt.append(concrete)  # a union branch tag: stay on this model
                elif origin is list and isinstance(part, int):
                    nxt.append(typing.get_args(concrete)[0])
                    advanced = True
                elif origin is dict:
                    nxt.append(typing.get_args(concrete)[1])
                    advanced = True
        candidates = nxt if (advanced or nxt) else candidates
    for tp in candidates:
        for concrete in _unwrap(tp):
            if isinstance(concrete, type) and issubclass(concrete, BaseModel):
                return list(concrete.model_fields)
    return None


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _schema_message(err: dict[str, Any], value: Any) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    loc = err["loc"]
    if kind == "extra_forbidden":
        key = loc[-1]
        allowed = _allowed_keys(loc[:-1])
        hint = ""
        if allowed:
            hint = _did_you_mean(key, allowed) or f"; allowed keys: {', '.join(allowed)}"
        return f"unknown key '{key}'{hint}"
    if kind == "missing":
        return f"required key '{loc[-1]}' is missing"
    if kind in ("value_error", "assertion_error"):
        return str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind == "literal_error":
        expected = ctx.get("expected", "")
        if loc and loc[-1] == "[key]":
            shown = loc[-2] if len(loc) > 1 else value
            options = [o.strip(" '") for o in str(expected).replace(" or ", ", ").split(",")]
            return f"unknown key '{shown}': expected one of {expected}{_did_you_mean(shown, options)}"
        return f"invalid value {value!r}: expected one of {expected}"
    if kind == "string_pattern_mismatch":
        return f"invalid id {value!r}: an id starts with a letter and uses letters, digits, '_', '.' and '-'"
    if kind == "string_too_long":
        return f"too long: at most {ctx.get('max_length')} characters"
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length')} item(s)"
    if kind == "greater_than":
        return f"must be greater than {ctx.get('gt')}"
    if kind == "less_than":
        return f"must be less than {ctx.get('lt')}"
    if kind in _TYPE_NAMES:
        return f"expected {_TYPE_NAMES[kind]}, got {_describe_yaml_value(value)}"
    return str(err["msg"])


def _schema_errors(source_map: SourceMap, exc: ValidationError) -> list[str]:
    grouped: dict[tuple[int, int, Loc], list[tuple[dict[str, Any], Any]]] = {}
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        missing = err["type"] == "missing"
        at_key = err["type"] == "extra_forbidden" or "[key]" in loc
        line, col, resolved = source_map.resolve(loc, at_key=at_key, missing=missing)
        # A model-level check names the key it is about in backticks: point at that key when present.
        if err["type"] == "value_error":
            mapping = source_map.value_at(resolved)
            if isinstance(mapping, CommentedMap):
                for word in str(err["msg"]).split("`")[1::2]:
                    if word in mapping:
                        line, col, resolved = source_map.resolve(resolved + (word,), at_key=True)
                        break
        value = err.get("input")
        grouped.setdefault((line, col, resolved), []).append((err, value))
    lines: list[str] = []
    for (line, col, resolved), errs in grouped.items():
        kinds = [e["type"] for e, _ in errs]
        if len(errs) > 1 and set(kinds) <= _SCALAR_TYPE_ERRORS:
            message = f"expected text, a number or true/false, got {_describe_yaml_value(errs[0][1])}"
        elif len(errs) > 1 and all(k in _TYPE_NAMES for k in kinds):
            names = list(dict.fromkeys(_TYPE_NAMES[k] for k in kinds))
            expected = ", ".join(names[:-1]) + f" or {names[-1]}"
            message = f"expected {expected}, got {_describe_yaml_value(errs[0][1])}"
        else:
            message = _schema_message(*errs[0])
        lines.append(f"{source_map.path}:{line}:{col}: {format_path(resolved)}: {message}")
    return lines


# ------------------------------------------------------------------------------- cross-references
@dataclass(frozen=True)
class _Problem:
    loc: Loc
    message: str
    at_key: bool = False
    # For template problems: (line, col) already resolved inside the template's source.
    position: tuple[int, int] | None = None


def _plural(word: str) -> str:
    return word[:-1] + "ies" if word.endswith("y") else word + "s"


def _unknown(what: str, value: Any, options: Iterable[str]) -> str:
    options = list(options)
    if not options:
        return f"unknown {what} '{value}': no {_plural(what)} are declared"
    hint = _did_you_mean(value, options)
    if hint:
        return f"unknown {what} '{value}'{hint}"
    return f"unknown {what} '{value}': {_plural(what)} are {', '.join(options)}"


def _condition_values(condition: Any) -> Iterator[tuple[Loc, Any]]:
    """(relative loc, value) of every literal value a condition compares the attribute with."""
    if isinstance(condition, Matcher):
        for op in ("any", "all", "none"):
            for i, value in enumerate(getattr(condition, op) or []):
                yield (op, i), value
    elif isinstance(condition, list):
        for i, value in enumerate(condition):
            yield (i,), value
    else:
        yield (), condition


def _cross_reference_problems(matrix: Matrix, source_map: SourceMap) -> list[_Problem]:
    problems: list[_Problem] = []
    add = problems.append
    level_ids = [level.id for level in matrix.levels]
    groups = list(matrix.groups)
    templates = list(matrix.templates)
    attributes = sorted(BUILTIN_ATTRIBUTES | set(matrix.fields))
    known_attributes = set(attributes)
    issue_types = list(matrix.issue_types)

    def check_template(loc: Loc, name: str | None) -> None:
        if name is not None and name not in matrix.templates:
            add(_Problem(loc, _unknown("template", name, templates)))

    def check_attribute(loc: Loc, name: str, *, at_key: bool = False) -> None:
        if name not in known_attributes:
            add(_Problem(loc, _unknown("attribute", name, attributes)
                         + ("" if _did_you_mean(name, attributes) else "; declare it under `fields:`"), at_key=at_key))

    def check_calendar(loc: Loc, name: str | None) -> None:
        if name is not None and name not in matrix.calendars:
            add(_Problem(loc, _unknown("calendar", name, list(matrix.calendars))))

    seen_types: dict[str, int] = {}
    for i, issue_type in enumerate(matrix.issue_types):
        if issue_type in seen_types:
            add(_Problem(("issue_types", i), f"duplicate issue type '{issue_type}' (also issue_types[{seen_types[issue_type]}])"))
        seen_types.setdefault(issue_type, i)

    seen_levels: dict[str, int] = {}
    for i, level in enumerate(matrix.levels):
        base: Loc = ("levels", i)
        if level.id in seen_levels:
            add(_Problem(base + ("id",), f"duplicate level id '{level.id}' (also levels[{seen_levels[level.id]}])"))
        seen_levels.setdefault(level.id, i)
        if level.owner.default not in matrix.groups:
            add(_Problem(base + ("owner", "default"), _unknown("group", level.owner.default, groups)))
        if level.owner.by_issue_type and ISSUE_TYPE_ATTRIBUTE not in matrix.fields:
            add(_Problem(base + ("owner", "by_issue_type"),
                         "by_issue_type needs the `issue_type` attribute declared under `fields:`", at_key=True))
        for issue_type, group in level.owner.by_issue_type.items():
            if issue_type not in matrix.issue_types:
                add(_Problem(base + ("owner", "by_issue_type", issue_type),
                             _unknown("issue type", issue_type, issue_types), at_key=True))
            if group not in matrix.groups:
                add(_Problem(base + ("owner", "by_issue_type", issue_type), _unknown("group", group, groups)))
        for j, name in enumerate(level.required_data):
            check_attribute(base + ("required_data", j), name)
        if level.required_data and level.data_request is None:
            add(_Problem(base + ("required_data",),
                         "a level with required_data needs a `data_request` template to ask the customer for it",
                         at_key=True))
        check_template(base + ("data_request",), level.data_request)
        roles_as_list = isinstance(source_map.value_at(base + ("roles",)), CommentedSeq)
        for j, (name, role) in enumerate(level.roles.items()):
            check_attribute(base + ("roles", j if roles_as_list else name), name, at_key=not roles_as_list)
            if role.on_missing is not None:
                where = base + ("roles", name, "on_missing")
                if role.on_missing not in level_ids:
                    add(_Problem(where, _unknown("level", role.on_missing, level_ids)))
                elif level_ids.index(role.on_missing) <= i:
                    add(_Problem(where, f"on_missing escalates: name a level above {level.id}, "
                                        f"not '{role.on_missing}'"))
        if level.update_cadence is not None:
            check_template(base + ("update_cadence", "template"), level.update_cadence.template)
        check_template(base + ("on_enter", "reply"), level.on_enter.reply)
        check_template(base + ("on_enter", "note"), level.on_enter.note)
        for clock, target in level.on_breach.items():
            if target not in level_ids:
                add(_Problem(base + ("on_breach", clock), _unknown("level", target, level_ids)))
        check_calendar(base + ("calendar",), level.calendar)
        if level.exit is not None and level.exit.actions_owned and (matrix.incident is None
                                                                    or matrix.incident.actions is None):
            add(_Problem(base + ("exit", "actions_owned"), "`actions_owned` needs `incident.actions` (the Jira "
                                                           "project where corrective actions are created)"))

    level_mapping = matrix.fields.get(LEVEL_ATTRIBUTE)
    if level_mapping is not None:
        # The service writes the level onto the ticket; organization and user data are only read.
        for vendor, key in (("zendesk", "organization_field"), ("zendesk", "user_field"),
                            ("jira", "organization_property")):
            if getattr(getattr(level_mapping, vendor), key, None) is not None:
                add(_Problem(("fields", LEVEL_ATTRIBUTE, vendor, key),
                             f"the level is written on the ticket, and `{key}` is read only: map `level` to a "
                             + ("ticket `custom_field` or a `tag_prefix`" if vendor == "zendesk"
                                else "ticket `field` or a `label_prefix`")))

    seen_rules: dict[str, int] = {}
    for i, rule in enumerate(matrix.rules):
        base = ("rules", i)
        if rule.id in seen_rules:
            add(_Problem(base + ("id",), f"duplicate rule id '{rule.id}' (also rules[{seen_rules[rule.id]}])"))
        elif rule.id in RESERVED_RULE_IDS:
            add(_Problem(base + ("id",), f"rule id '{rule.id}' is reserved: escalation notes and history use "
                                         f"'{rule.id}' for {RESERVED_RULE_IDS[rule.id]}; choose another id"))
        seen_rules.setdefault(rule.id, i)
        if rule.level is not None and rule.level not in level_ids:
            add(_Problem(base + ("level",), _unknown("level", rule.level, level_ids)))
        check_template(base + ("note",), rule.note)
        check_template(base + ("reply",), rule.reply)
        for attribute, condition in rule.when.items():
            where = base + ("when", attribute)
            if attribute not in known_attributes:
                check_attribute(where, attribute, at_key=True)
                continue
            allowed = {
                ISSUE_TYPE_ATTRIBUTE: ("issue type", issue_types),
                "priority": ("priority", list(PRIORITIES)),
                "status": ("status", list(STATUSES)),
                "level": ("level", level_ids),
                "group": ("group", groups),
            }.get(attribute)
            if allowed is None:
                continue
            what, options = allowed
            folded = {str(o).casefold() for o in options}
            for rel, value in _condition_values(condition):
                if str(value).casefold() not in folded:
                    add(_Problem(where + rel, _unknown(what, value, options)))

    for clock in ("diagnose", "interim_fix", "resolve"):
        signal = getattr(matrix.milestones, clock)
        if signal.field is not None:
            check_attribute(("milestones", clock, "field"), signal.field)
        elif signal.equals is not None:
            add(_Problem(("milestones", clock, "equals"), "`equals` needs a `field` to compare", at_key=True))

    if matrix.incident is not None:
        if matrix.incident.eta is not None:
            check_attribute(("incident", "eta"), matrix.incident.eta)
        for j, name in enumerate(matrix.incident.blockers):
            check_attribute(("incident", "blockers", j), name)
        check_template(("incident", "summary_reply"), matrix.incident.summary_reply)
        for key in ("commander_role", "contact_role"):
            if key in matrix.incident.model_fields_set:
                check_attribute(("incident", key), getattr(matrix.incident, key))

    check_calendar(("clocks", "calendar"), matrix.clocks.calendar)
    for name, calendar in matrix.calendars.items():
        try:
            ZoneInfo(calendar.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            add(_Problem(("calendars", name, "timezone"),
                         f"unknown timezone '{calendar.timezone}': use an IANA name such as Europe/Berlin or UTC"))
        if not any(calendar.hours.values()):
            add(_Problem(("calendars", name, "hours"),
                         f"calendar '{name}' has no opening hours: its SLA clocks would never run", at_key=True))
        for day, spans in calendar.hours.items():
            ordered = sorted(enumerate(spans), key=lambda item: item[1])
            for (_, before), (index, span) in zip(ordered, ordered[1:]):
                if span.split("-")[0] < before.split("-")[1]:
                    add(_Problem(("calendars", name, "hours", day, index),
                                 f"span '{span}' overlaps '{before}' on {day}"))

    if matrix.notify is not None:
        channels = list(matrix.notify.channels)
        for i, route in enumerate(matrix.notify.routes):
            base = ("notify", "routes", i)
            for j, level_id in enumerate(route.when.level or ()):
                if level_id not in level_ids:
                    add(_Problem(base + ("when", "level", j), _unknown("level", level_id, level_ids)))
            for j, channel in enumerate(route.to):
                if channel not in matrix.notify.channels:
                    add(_Problem(base + ("to", j), _unknown("channel", channel, channels)))
            check_template(base + ("template",), route.template)

    for name, source in matrix.templates.items():
        loc = ("templates", name)
        for problem in check_template_source(source):
            add(_Problem(loc, problem.message, position=_template_position(source_map, loc, problem.lineno,
                                                                           problem.needle)))
    return problems


def _template_position(source_map: SourceMap, loc: Loc, lineno: int, needle: str | None) -> tuple[int, int]:
    """File line/column of line `lineno` of the template at `loc` (a block scalar starts on the next line)."""
    value_line, value_col, _ = source_map.resolve(loc)
    raw = source_map.value_at(loc)
    if isinstance(raw, (LiteralScalarString, FoldedScalarString)):
        line = value_line + lineno
    else:
        line = value_line + lineno - 1
    text = source_map.line_text(line)
    start = value_col - 1 if line == value_line else 0
    if needle:
        found = text.find(needle, start)
        if found >= 0:
            return line, found + 1
    stripped = len(text) - len(text.lstrip())
    return line, max(stripped, start) + 1


def _problem_line(source_map: SourceMap, problem: _Problem) -> tuple[tuple[int, int], str]:
    if problem.position is not None:
        line, col = problem.position
        _, _, resolved = source_map.resolve(problem.loc)
        return (line, col), f"{source_map.path}:{line}:{col}: {format_path(resolved)}: {problem.message}"
    line, col, resolved = source_map.resolve(problem.loc, at_key=problem.at_key)
    return (line, col), f"{source_map.path}:{line}:{col}: {format_path(resolved)}: {problem.message}"


# ----------------------------------------------------------------------------------------- API
def load_matrix_text(text: str, path: str = "<string>") -> LoadedMatrix:
    """Load a matrix from YAML text; `path` names it in error lines. Raises MatrixInvalid."""
    path = str(path)
    if len(text) > MAX_SOURCE_CHARS:
        raise MatrixInvalid([f"{path}:1:1: (root): the matrix file is larger than {MAX_SOURCE_CHARS} characters"])
    try:
        tree = _yaml().load(text)
    except DuplicateKeyError as exc:
        raise MatrixInvalid(_duplicate_key_errors(path, text) or [_yaml_error_line(path, exc)]) from None
    except MarkedYAMLError as exc:
        raise MatrixInvalid([_yaml_error_line(path, exc)]) from None
    except YAMLError as exc:
        raise MatrixInvalid([f"{path}:1:1: (yaml): {exc}"]) from None
    except (ValueError, TypeError, OverflowError) as exc:  # a scalar ruamel cannot construct, e.g. 2026-13-01
        raise MatrixInvalid([_construct_error_line(path, text, exc)]) from None
    if tree is None:
        raise MatrixInvalid([f"{path}:1:1: (root): the matrix file is empty"])
    if not isinstance(tree, CommentedMap):
        raise MatrixInvalid([f"{path}:1:1: (root): the matrix must be a mapping of keys such as name, levels, rules"])
    source_map = SourceMap(path, text, tree)
    try:
        data = _plain(tree, [MAX_NODES])
    except _TooLarge:
        raise MatrixInvalid([f"{path}:1:1: (root): the matrix expands to more than {MAX_NODES} values "
                             "(too many aliases?)"]) from None
    try:
        matrix = Matrix.model_validate(data)
    except ValidationError as exc:
        raise MatrixInvalid(_sorted(_schema_errors(source_map, exc))) from None
    problems = _cross_reference_problems(matrix, source_map)
    if problems:
        located = sorted((_problem_line(source_map, p) for p in problems), key=lambda item: item[0])
        raise MatrixInvalid(list(dict.fromkeys(line for _, line in located)))
    return LoadedMatrix(matrix=matrix, version=matrix.version(), path=path, source=text, source_map=source_map)


def load_matrix(path: str | Path) -> LoadedMatrix:
    """Load and check a matrix file. Raises MatrixInvalid with one `FILE:LINE:COL: path: message` per error."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MatrixInvalid([f"{path}:1:1: (file): no such file"]) from None
    except UnicodeDecodeError as exc:
        raise MatrixInvalid([f"{path}:1:1: (file): not UTF-8 text ({exc.reason})"]) from None
    except OSError as exc:
        raise MatrixInvalid([f"{path}:1:1: (file): cannot read: {exc.strerror}"]) from None
    return load_matrix_text(text, str(path))


def _sorted(lines: list[str]) -> list[str]:
    def key(line: str) -> tuple[int, int]:
        try:
            # FILE may itself contain ':'; LINE and COL are the two fields before the first ': '.
            head = line.split(": ", 1)[0].rsplit(":", 2)
            return int(head[1]), int(head[2])
        except (IndexError, ValueError):
            return 0, 0
    return sorted(dict.fromkeys(lines), key=key)


__all__ = ["LoadedMatrix", "MatrixInvalid", "SourceMap", "format_path", "load_matrix", "load_matrix_text"]
