"""Reply and note templates: Jinja2 in an immutable sandbox, compiled once per matrix.

Decisions (see the matrix language reference in the README):
- `ImmutableSandboxedEnvironment`: templates cannot call methods that mutate lists/dicts, reach `__class__`,
  `__globals__`, `mro()` and friends, and `range()` is capped by the sandbox.
- `StrictUndefined`: a misspelled placeholder fails the render instead of sending the customer an empty gap.
  `render_template` fills every top-level name of `TEMPLATE_CONTEXT` the caller did not give with None, so
  `{% if previous_level %}` works for a first placement, while `{{ previous_level.id }}` still fails there.
- A value that is None prints as nothing (`finalize`): the helpdesk leaves optional values empty (a requester
  without a name), and "Hello None," must never reach a customer. Templates should still guard such values
  (`{{ ticket.requester.name or "there" }}`); `escalation validate` warns about a template that prints one of
  `OPTIONAL_VALUES` unguarded (`prints_empty_optional_value`).
- Autoescape is off: replies and notes are plain text, and HTML entities in a ticket comment would be visible.
- `*` and `**` are refused (string repetition and huge powers are the cheap ways to blow up output or CPU),
  both when a matrix is loaded (`check_template_source`) and at render time (`intercepted_binops`).
- Template sources are limited to `MAX_TEMPLATE_CHARS`, rendered output to `MAX_OUTPUT_CHARS`.
- Templates receive plain data only: mappings become dicts, sequences lists, sets sorted lists, timedeltas
  `1h30m` strings. Any other object (a vendor client record, a dataclass) is refused, so a template can never
  reach a client object's methods or credentials.
- Speed (issue 2: a new ticket renders two templates per decision): exact builtin types are converted with one
  `type()` lookup and the error path is only built when something is refused; a `PlainContext` converts a
  context once for several templates; the sandbox's globals are merged once per matrix, not per render.
"""
from __future__ import annotations

import difflib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Mapping

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2 import meta as jinja_meta
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from matrix_config.schema import TEMPLATE_CONTEXT, Level, Matrix, format_duration

MAX_TEMPLATE_CHARS = 10_000
MAX_OUTPUT_CHARS = 20_000
FORBIDDEN_OPERATORS = {nodes.Mul: "*", nodes.Pow: "**"}
# Globals the sandbox offers besides the context; `range` is capped by the sandbox.
ALLOWED_GLOBALS = frozenset({"range", "dict", "namespace"})


class TemplateRenderError(Exception):
    """A template could not be rendered. `name` is the template's key under `templates:`."""

    def __init__(self, name: str, message: str):
        super().__init__(f"template {name!r}: {message}")
        self.name = name
        self.message = message


class _MatrixSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(FORBIDDEN_OPERATORS.values())

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator in self.intercepted_binops:
            raise SecurityError(f"the operator {operator!r} is not allowed in templates")
        return super().call_binop(context, operator, left, right)


def _none_as_empty(value: Any) -> Any:
    """`{{ x }}` of a value that is None prints nothing: an optional value the helpdesk left empty (a requester
    without a name) must not reach a customer as "Hello None,". Undefined names are not None: StrictUndefined
    still fails them."""
    return "" if value is None else value


class PrintsNone(Exception):
    """Raised by the lint sandbox when a template prints a value that is None."""


def _refuse_none(value: Any) -> Any:
    if value is None:
        raise PrintsNone()
    return value


def _new_environment(finalize: Any = _none_as_empty) -> _MatrixSandbox:
    env = _MatrixSandbox(
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        trim_blocks=False,
        finalize=finalize,
    )
    for name in list(env.globals):
        if name not in ALLOWED_GLOBALS:
            del env.globals[name]
    return env


_PARSER = _new_environment()


# ----------------------------------------------------------------------------------- static checks
@dataclass(frozen=True)
class TemplateProblem:
    """A problem inside one template's source. `lineno` is 1-based within the template; `needle` is text
    on that line the problem is about (for a column), or None."""

    lineno: int
    message: str
    needle: str | None = None


def _chain(node: nodes.Node) -> list[str] | None:
    """`ticket.requester.name` / `ticket['fields']` -> ['ticket', 'requester', 'name']; None if not a chain
    of constant lookups rooted at a name."""
    parts: list[str] = []
    while True:
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
            node = node.node
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            parts.append(node.arg.value)
            node = node.node
        elif isinstance(node, nodes.Name):
            parts.append(node.name)
            return list(reversed(parts))
        else:
            return None


def _placeholder_chains(ast: nodes.Template, roots: set[str]) -> list[tuple[list[str], int]]:
    """Longest lookup chains rooted at one of `roots`, with their template line numbers."""
    found: list[tuple[list[str], int]] = []

    def visit(node: nodes.Node) -> None:
        if isinstance(node, (nodes.Getattr, nodes.Getitem, nodes.Name)):
            chain = _chain(node)
            if chain is not None and chain[0] in roots:
                found.append((chain, node.lineno))
                return
        for child in node.iter_child_nodes():
            visit(child)

    visit(ast)
    return found


def _describe_keys(spec: Mapping[str, Any]) -> str:
    return ", ".join(sorted(spec))


def template_placeholders(source: str) -> set[str]:
    """Dotted placeholders a template reads from its context, e.g. {'ticket.id', 'level.name', 'missing'}."""
    ast = _PARSER.parse(source)
    roots = set(jinja_meta.find_undeclared_variables(ast))
    return {".".join(chain) for chain, _ in _placeholder_chains(ast, roots)}


def check_template_source(source: str) -> list[TemplateProblem]:
    """Everything that can be known about a template without rendering it: size, syntax, forbidden operators,
    placeholders unknown to `TEMPLATE_CONTEXT`."""
    if len(source) > MAX_TEMPLATE_CHARS:
        return [TemplateProblem(1, f"template is {len(source)} characters long; the limit is {MAX_TEMPLATE_CHARS}")]
    try:
        ast = _PARSER.parse(source)
    except TemplateSyntaxError as exc:
        return [TemplateProblem(exc.lineno or 1, f"template syntax error: {exc.message}")]
    problems: list[TemplateProblem] = []
    for node_type, operator in FORBIDDEN_OPERATORS.items():
        for node in ast.find_all(node_type):
            problems.append(
                TemplateProblem(node.lineno, f"the operator '{operator}' is not allowed in templates", operator)
            )
    undeclared = set(jinja_meta.find_undeclared_variables(ast))
    known_roots = set(TEMPLATE_CONTEXT)
    for name in sorted(undeclared - known_roots - ALLOWED_GLOBALS):
        lineno = next((n.lineno for n in ast.find_all(nodes.Name) if n.name == name), 1)
        close = difflib.get_close_matches(name, list(TEMPLATE_CONTEXT), n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        problems.append(
            TemplateProblem(
                lineno,
                f"unknown placeholder '{name}'{hint}: templates may use {_describe_keys(TEMPLATE_CONTEXT)}",
                name,
            )
        )
    for chain, lineno in _placeholder_chains(ast, undeclared & known_roots):
        spec: Any = TEMPLATE_CONTEXT[chain[0]]
        for depth, key in enumerate(chain[1:], start=1):
            if spec is None:
                break
            if key not in spec:
                dotted = ".".join(chain[: depth + 1])
                owner = ".".join(chain[:depth])
                problems.append(
                    TemplateProblem(
                        lineno, f"unknown placeholder '{dotted}': {owner} has {_describe_keys(spec)}", dotted
                    )
                )
                break
            spec = spec[key]
    problems.sort(key=lambda p: p.lineno)
    return problems


# ------------------------------------------------------------------------------------ rendering
class _CompiledTemplates:
    def __init__(self, matrix: Matrix):
        self.env = _new_environment()
        self.templates: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        # What `Template.new_context` would merge per render (the sandbox's globals, then every context name
        # as None), built once: a render copies this dict and hands it to the context as is (`shared`).
        self.globals: dict[str, Any] = dict(self.env.globals)
        self.base_data: dict[str, Any] = {**self.globals, **{key: None for key in TEMPLATE_CONTEXT}}
        for name, source in matrix.templates.items():
            problems = check_template_source(source)
            if problems:
                self.errors[name] = problems[0].message
                continue
            try:
                self.templates[name] = self.env.from_string(source)
            except TemplateError as exc:  # pragma: no cover - check_template_source parses first
                self.errors[name] = str(exc)


_CACHE_SIZE = 64
_by_identity: "OrderedDict[int, tuple[Matrix, _CompiledTemplates]]" = OrderedDict()
_by_version: "OrderedDict[str, _CompiledTemplates]" = OrderedDict()
_cache_lock = threading.Lock()


def _compiled(matrix: Matrix) -> _CompiledTemplates:
    """Compiled templates of a matrix. The identity lookup keeps the hot path free of hashing the matrix;
    equal matrices loaded twice share one compilation through the version."""
    key = id(matrix)
    entry = _by_identity.get(key)
    if entry is not None and entry[0] is matrix:
        return entry[1]
    version = matrix.version()
    with _cache_lock:
        compiled = _by_version.get(version)
        if compiled is None:
            compiled = _CompiledTemplates(matrix)
            _by_version[version] = compiled
            while len(_by_version) > _CACHE_SIZE:
                _by_version.popitem(last=False)
        _by_identity[key] = (matrix, compiled)
        while len(_by_identity) > _CACHE_SIZE:
            _by_identity.popitem(last=False)
    return compiled


# Exact types the fast path passes through; subclasses (a str enum, a bool-like int) take the general path.
_PLAIN_SCALARS = frozenset({str, bool, int, float, datetime, date, type(None)})


class _NotPlain(TypeError):
    """Raised by `_plain_fast` for an object templates may not see; `_plain` then finds its path."""


def _plain_fast(value: Any) -> Any:
    """`_plain` without building a path string at each level: exact dict/list/str/number types are checked
    with one `type()` lookup (no `typing.Mapping` instance check). Same result as `_plain`; refuses the
    same objects, by raising `_NotPlain` (the caller re-walks with `_plain` for the error message)."""
    kind = type(value)
    if kind in _PLAIN_SCALARS:
        return value
    if kind is dict:
        return {
            (k if type(k) is str else str(k)): (v if type(v) in _PLAIN_SCALARS else _plain_fast(v))
            for k, v in value.items()
        }
    if kind is list or kind is tuple:
        return [v if type(v) in _PLAIN_SCALARS else _plain_fast(v) for v in value]
    if isinstance(value, (str, bool, int, float, datetime, date)):
        return value
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, Mapping):
        return {str(k): _plain_fast(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_fast(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_plain_fast(v) for v in value), key=str)
    raise _NotPlain(type(value).__name__)


def _plain(value: Any, where: str) -> Any:
    """The reference conversion, naming the path of a refused object (`ticket.fields.x[2]`) in its error."""
    if value is None or isinstance(value, (str, bool, int, float, datetime, date)):
        return value
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        return sorted((_plain(v, where) for v in value), key=str)
    raise TypeError(f"{where} is a {type(value).__name__}; templates get plain data only (dicts, lists, text, numbers)")


def _plain_values(context: Mapping[str, Any]) -> dict[str, Any]:
    """`context` with text keys and plain values. Raises TypeError naming the path of the first non-plain
    value."""
    try:
        return {
            (key if type(key) is str else str(key)): (value if type(value) in _PLAIN_SCALARS else _plain_fast(value))
            for key, value in context.items()
        }
    except TypeError:
        for key, value in context.items():
            _plain(value, str(key))  # raises the error that names the path
        raise


class PlainContext:
    """A template context made plain once, for rendering several templates with it (a decision's entry reply
    and note share one context). Holds the plain data, or why the context was refused; `render_template`
    raises that reason for every template rendered with it. The data is this object's own copy, and the
    sandbox keeps templates from mutating it."""

    __slots__ = ("data", "error")

    def __init__(self, context: Mapping[str, Any]):
        self.data: dict[str, Any] = {}
        self.error: str | None = None
        try:
            self.data = _plain_values(context)
        except TypeError as exc:
            self.error = str(exc)


def render_template(matrix: Matrix, name: str, context: Mapping[str, Any] | PlainContext) -> str:
    """Render the matrix template `name`. Raises TemplateRenderError for an unknown template, a template the
    sandbox refuses, a missing placeholder (StrictUndefined), non-plain context data or oversized output.
    `context` is plain data shaped like `TEMPLATE_CONTEXT` (names left out are None), or a `PlainContext`
    made from it once for several renders."""
    compiled = _compiled(matrix)
    if name in compiled.errors:
        raise TemplateRenderError(name, compiled.errors[name])
    template = compiled.templates.get(name)
    if template is None:
        raise TemplateRenderError(name, "no such template in the matrix")
    if isinstance(context, PlainContext):
        if context.error is not None:
            raise TemplateRenderError(name, context.error)
        values = context.data
    else:
        try:
            values = _plain_values(context)
        except TypeError as exc:
            raise TemplateRenderError(name, str(exc)) from None
    data = dict(compiled.base_data)
    data.update(values)
    pieces: list[str] = []
    size = 0
    try:
        # `Template.generate` without its two dict copies and the merge of a ChainMap of globals per render;
        # `data` is this render's own dict, so sharing it with the context leaks nothing between renders.
        context_obj = template.environment.context_class(
            template.environment, data, template.name, template.blocks, globals=compiled.globals
        )
        for piece in template.root_render_func(context_obj):
            size += len(piece)
            if size > MAX_OUTPUT_CHARS:
                raise TemplateRenderError(name, f"rendered text exceeds {MAX_OUTPUT_CHARS} characters")
            pieces.append(piece)
    except UndefinedError as exc:
        raise TemplateRenderError(name, f"undefined placeholder: {exc.message}") from None
    except SecurityError as exc:
        raise TemplateRenderError(name, f"refused by the sandbox: {exc}") from None
    except TemplateRenderError:
        raise
    except Exception as exc:  # a template error at render time, e.g. a filter given the wrong type
        raise TemplateRenderError(name, f"{type(exc).__name__}: {exc}") from None
    return "".join(pieces).strip("\n")


# ------------------------------------------------------------------------------ empty optional values
# Values a helpdesk may leave empty on any ticket; the sample render of `escalation validate` also tries each of
# them as None, to catch a template that would print nothing there ("Hello ,").
OPTIONAL_VALUES: tuple[tuple[str, ...], ...] = (
    ("ticket", "requester", "name"),
    ("ticket", "organization"),
)
_NONE_CHECKER: _MatrixSandbox | None = None
_none_checker_lock = threading.Lock()


def _none_checker() -> _MatrixSandbox:
    global _NONE_CHECKER
    with _none_checker_lock:
        if _NONE_CHECKER is None:
            _NONE_CHECKER = _new_environment(finalize=_refuse_none)
        return _NONE_CHECKER


def prints_empty_optional_value(matrix: Matrix, name: str, context: Mapping[str, Any]) -> str | None:
    """The dotted optional value (see OPTIONAL_VALUES) that template `name` prints as nothing when that value is
    None in `context`, or None when the template guards every one of them (`{{ x or "there" }}`,
    `{% if x %}`). For the linter: rendering is cheap, each optional value is tried on its own."""
    source = matrix.templates.get(name)
    if source is None or check_template_source(source):
        return None
    template = _none_checker().from_string(source)
    try:
        base = _plain_values(context)
    except TypeError:
        return None
    for path in OPTIONAL_VALUES:
        data = {key: None for key in TEMPLATE_CONTEXT}
        data.update(base)
        holder: Any = data
        for key in path[:-1]:
            if not isinstance(holder.get(key), dict):
                holder = None
                break
            holder[key] = dict(holder[key])
            holder = holder[key]
        if holder is None:
            continue
        holder[path[-1]] = None
        try:
            template.render(data)
        except PrintsNone:
            return ".".join(path)
        except Exception:  # any other failure is the ordinary render check's business
            continue
    return None


# ------------------------------------------------------------------------------------ sample data
def _sample_value(name: str) -> Any:
    if name == "affected_users":
        return 250
    return f"sample {name.replace('_', ' ')}"


def _level_context(matrix: Matrix, level: Level) -> dict[str, Any]:
    group = matrix.groups.get(level.owner.default)
    return {
        "id": level.id,
        "name": level.name,
        "priority": level.priority,
        "owner": (group.label if group and group.label else level.owner.default),
        "sla": {clock: format_duration(target) for clock, target in level.sla.items()},
        "update_every": format_duration(level.update_cadence.every) if level.update_cadence else None,
        "required_data": [{"name": name, "label": _label(matrix, name), "value": _sample_value(name)}
                          for name in level.required_data],
        "roles": [{"name": name, "label": _label(matrix, name), "value": _sample_value(name)} for name in level.roles],
    }


def _label(matrix: Matrix, name: str) -> str:
    mapping = matrix.fields.get(name)
    return mapping.label if mapping is not None and mapping.label else name.replace("_", " ")


def _incident_sample(matrix: Matrix, level: Level) -> dict[str, Any]:
    clocks = list(level.sla.items()) or [("acknowledge", timedelta(hours=1))]
    incident = matrix.incident
    return {
        "milestones": [{"name": name, "label": MILESTONE_LABELS[name], "met": i == 0,
                        "at": "2026-01-05 09:30 UTC" if i == 0 else None} for i, (name, _) in enumerate(clocks)],
        "clocks": [{"name": name, "target": format_duration(target), "remaining": None if i == 0 else "30m",
                    "overdue_by": None, "state": "met" if i == 0 else "running"} for i, (name, target) in enumerate(clocks)],
        "eta": _sample_value(incident.eta) if incident and incident.eta else None,
        "blockers": [{"name": name, "label": _label(matrix, name), "value": _sample_value(name)}
                     for name in (incident.blockers if incident else [])],
        "last_public_update": "2026-01-05 09:30 UTC",
        "report": {"started_at": "2026-01-05 09:00 UTC", "resolved_at": "2026-01-05 13:00 UTC", "top_level": level.id,
                   "time_to": {name: "1h" for name in MILESTONE_LABELS},
                   "corrective_actions": [{"key": "OPS-1", "summary": "sample action", "owner": "Sample Owner",
                                           "due": "2026-01-31", "url": None}]},
    }


# How digests and reports name a met milestone (integration.incident uses the same words).
MILESTONE_LABELS: dict[str, str] = {"acknowledge": "Acknowledged", "diagnose": "Diagnosed",
                                    "interim_fix": "Interim fix in place", "resolve": "Resolved"}


def sample_context(matrix: Matrix, level: Level, *, previous: Level | None = None, rule_id: str | None = None,
                   with_clock: bool = True, version: str | None = None, with_alert: bool = False) -> dict[str, Any]:
    """Sample data shaped like `TEMPLATE_CONTEXT`, for test-rendering `level`'s templates.

    `previous` defaults to the level before `level` (None for the first level); the rule is the first rule
    placing tickets at `level` unless `rule_id` is given; pass `with_clock=False` for a context without a
    clock (a placement by rule rather than by a breach); `version` saves hashing the matrix again."""
    index = matrix.level_index(level.id)
    if previous is None and index > 0:
        previous = matrix.levels[index - 1]
    rule = None
    if rule_id is not None:
        rule = next((r for r in matrix.rules if r.id == rule_id), None)
    else:
        rule = next((r for r in matrix.rules if r.level == level.id), None)
    first_clock = next(iter(level.sla.items()), ("acknowledge", timedelta(hours=1)))
    return {
        "ticket": {
            "id": "12345",
            "subject": "Checkout fails for all users",
            "status": "open",
            "priority": level.priority,
            "organization": "Example Corp",
            "requester": {"name": "Ada Example", "email": "ada@example.com"},
            "fields": {name: _sample_value(name) for name in matrix.fields},
            "tags": ["sample"],
            "url": "https://support.example.com/tickets/12345",
        },
        "level": _level_context(matrix, level),
        "previous_level": {"id": previous.id, "name": previous.name} if previous else None,
        "missing": [
            {"name": name, "label": (matrix.fields[name].label if name in matrix.fields and matrix.fields[name].label
                                     else name.replace("_", " "))}
            for name in level.required_data
        ],
        "rule": {"id": rule.id, "description": rule.description} if rule else None,
        "clock": {
            "name": first_clock[0],
            "target": format_duration(first_clock[1]),
            "elapsed": format_duration(first_clock[1]),
            "overdue_by": "5m",
            "fraction": 1.0,
        } if with_clock else None,
        "matrix": {"name": matrix.name, "version": version or matrix.version()},
        # Where the incident stands (integration.incident.digest_context fills these in for real tickets).
        **_incident_sample(matrix, level),
        # Alert templates only (with_alert): what integration.alerts fills in.
        "alert": {
            "event": "breach", "channel": "sample_channel", "level": level.id, "clock": first_clock[0],
            "time_left": None, "overdue_by": "5m", "missing_roles": [],
            "summary": f"SLA breach on ticket 12345 at {level.id}",
        } if with_alert else None,
    }
