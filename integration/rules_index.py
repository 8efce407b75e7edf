"""Matrix rules compiled to predicates and indexed, so placing a ticket does not scan every rule.

Matching semantics (the `Matcher` contract in `matrix_config.schema`):

- Values are compared after normalisation: strings case-insensitively (and trimmed), numbers by value
  (`100`, `100.0` and the string `"100"` are equal), booleans as booleans.
- A ticket attribute that holds several values (`tags`, a multi-select field) is treated as a set:
  `attr: x` means "contains x", `attr: [x, y]` / `{any: [...]}` means "contains one of",
  `{all: [...]}` "contains all of", `{none: [...]}` "contains none of".
- A single-valued attribute: `attr: x` is equality, `[x, y]` / `{any: ...}` is "one of", `{none: ...}`
  "none of" (an unset attribute is none of anything), `{all: [x]}` equality with each listed value.
- `gte`/`gt`/`lte`/`lt` compare numbers; an unset or non-numeric value fails them.
- `present: true` holds when the value is set and not empty (None, "", whitespace and [] are empty).
- All conditions of a rule must hold; an empty `when` matches every ticket.

Indexing: every rule with at least one equality-like condition (scalar, list, `any`, `all`) is filed
under a combination of up to three such attributes (those whose values are most spread out over all
rules, so buckets stay small), once per combination of its values — `{organization: acme, issue_type:
outage}` lands in the bucket (acme, outage) of the table (issue_type, organization). A ticket looks up
the combinations of its own values in each table; the candidates are those buckets plus the rules that
have no indexable condition, tried in file order. First match wins, exactly as a full scan would decide
(`scan_first_match` is that full scan, kept for the benchmark and for tests that check both agree).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from integration.model import Ticket
from matrix_config.matching import normalize
from matrix_config.schema import Matcher, Rule

_COLLECTIONS = (list, tuple, set, frozenset)


class AttributeValue:
    """One ticket attribute, normalised once per decision. (A slotted class: a frozen dataclass costs a
    microsecond per instance, and there are several per decision.)"""

    __slots__ = ("raw", "keys", "number")

    def __init__(self, raw: Any, keys: frozenset, number: float | None):
        self.raw = raw
        self.keys = keys  # normalised values; empty = unset
        self.number = number  # for gte/gt/lte/lt; None for collections and non-numbers

    def __repr__(self) -> str:
        return f"AttributeValue({self.raw!r})"


_UNSET = AttributeValue(None, frozenset(), None)


def attribute_value(raw: Any) -> AttributeValue:
    if raw is None:
        return _UNSET
    if isinstance(raw, _COLLECTIONS):
        keys = frozenset(k for k in (normalize(v) for v in raw) if k is not None)
        return AttributeValue(raw, keys, None)
    key = normalize(raw)
    if key is None:
        return AttributeValue(raw, frozenset(), None)
    return AttributeValue(raw, frozenset((key,)), key[1] if key[0] == "n" else None)


class TicketValues(dict):
    """Attribute name -> AttributeValue, computed on first use (most rules never look at most attributes)."""

    __slots__ = ("ticket",)

    def __init__(self, ticket: Ticket):  # noqa: D107 - dict.__init__ is not needed for an empty dict
        self.ticket = ticket

    def __missing__(self, name: str) -> AttributeValue:
        value = self[name] = attribute_value(self.ticket.attribute(name))
        return value


# ------------------------------------------------------------------------------ compiled conditions
@dataclass(frozen=True)
class Check:
    """One operator of one condition: `test` takes the attribute's value."""

    attribute: str
    wants: str  # human text: "= outage", "one of [enterprise, premium]", ">= 100"
    test: Callable[[AttributeValue], bool]


def _shown(values: Sequence[Any]) -> str:
    return "[" + ", ".join(str(v) for v in values) + "]"


def _keys(values: Iterable[Any]) -> frozenset:
    return frozenset(k for k in (normalize(v) for v in values) if k is not None)


def compile_condition(attribute: str, condition: Any) -> tuple[list[Check], frozenset | None]:
    """Checks for one `when` entry and the index keys it allows (None: not indexable)."""
    if isinstance(condition, Matcher):
        checks: list[Check] = []
        index_keys: frozenset | None = None
        if condition.any is not None:
            keys = _keys(condition.any)
            checks.append(Check(attribute, f"one of {_shown(condition.any)}", lambda v, k=keys: not v.keys.isdisjoint(k)))
            index_keys = keys
        if condition.all is not None:
            keys = _keys(condition.all)
            checks.append(Check(attribute, f"all of {_shown(condition.all)}", lambda v, k=keys: k <= v.keys))
            if index_keys is None and keys:
                index_keys = keys
        if condition.none is not None:
            keys = _keys(condition.none)
            checks.append(Check(attribute, f"none of {_shown(condition.none)}", lambda v, k=keys: v.keys.isdisjoint(k)))
        for op, symbol, compare in (
            ("gte", ">=", lambda a, b: a >= b),
            ("gt", ">", lambda a, b: a > b),
            ("lte", "<=", lambda a, b: a <= b),
            ("lt", "<", lambda a, b: a < b),
        ):
            bound = getattr(condition, op)
            if bound is not None:
                checks.append(
                    Check(
                        attribute,
                        f"{symbol} {bound:g}",
                        lambda v, b=bound, c=compare: v.number is not None and c(v.number, b),
                    )
                )
        if condition.present is not None:
            if condition.present:
                checks.append(Check(attribute, "is set", lambda v: bool(v.keys)))
            else:
                checks.append(Check(attribute, "is not set", lambda v: not v.keys))
        return checks, index_keys
    if isinstance(condition, list):
        keys = _keys(condition)
        return [Check(attribute, f"one of {_shown(condition)}", lambda v, k=keys: not v.keys.isdisjoint(k))], keys
    key = normalize(condition)
    if key is None:  # `attr: ""` can only mean "unset"
        return [Check(attribute, "is not set", lambda v: not v.keys)], None
    return [Check(attribute, f"= {condition}", lambda v, k=key: k in v.keys)], frozenset((key,))


@dataclass(frozen=True)
class CompiledRule:
    position: int  # index in matrix.rules (file order)
    rule: Rule
    checks: tuple[Check, ...]
    index_options: dict[str, frozenset]  # attribute -> keys, for each indexable condition

    def matches(self, values: dict[str, AttributeValue]) -> bool:
        for check in self.checks:
            if not check.test(values[check.attribute]):
                return False
        return True


def compile_rule(position: int, rule: Rule) -> CompiledRule:
    checks: list[Check] = []
    options: dict[str, frozenset] = {}
    for attribute, condition in rule.when.items():
        attribute_checks, keys = compile_condition(attribute, condition)
        checks.extend(attribute_checks)
        if keys:
            options[attribute] = keys
    return CompiledRule(position, rule, tuple(checks), options)


# ------------------------------------------------------------------------------------ the index
@dataclass(frozen=True)
class CheckTrace:
    attribute: str
    wants: str
    actual: Any
    holds: bool


@dataclass(frozen=True)
class RuleTrace:
    rule_id: str
    position: int
    matched: bool
    checks: tuple[CheckTrace, ...]
    level: str | None
    bypass: bool


MAX_INDEX_ATTRIBUTES = 3  # a rule is filed under up to this many of its equality attributes at once
MAX_INDEX_ENTRIES = 64  # per rule: beyond this many value combinations, fewer attributes are used


@dataclass
class RuleIndex:
    rules: tuple[CompiledRule, ...]
    # attribute names (sorted) -> value combination -> rule positions in file order
    buckets: dict[tuple[str, ...], dict[tuple, tuple[int, ...]]] = field(default_factory=dict)
    unindexed: tuple[int, ...] = ()

    @classmethod
    def build(cls, rules: Sequence[Rule]) -> "RuleIndex":
        compiled = tuple(compile_rule(i, rule) for i, rule in enumerate(rules))
        spread: dict[str, set] = {}
        for rule in compiled:
            for attribute, keys in rule.index_options.items():
                spread.setdefault(attribute, set()).update(keys)
        buckets: dict[tuple[str, ...], dict[tuple, list[int]]] = {}
        unindexed: list[int] = []
        for rule in compiled:
            if not rule.index_options:
                unindexed.append(rule.position)
                continue
            # Most distinct values over all rules first (small buckets); ties by name, so deterministic.
            chosen = sorted(rule.index_options, key=lambda a: (-len(spread[a]), a))[:MAX_INDEX_ATTRIBUTES]
            while len(chosen) > 1 and math.prod(len(rule.index_options[a]) for a in chosen) > MAX_INDEX_ENTRIES:
                chosen.remove(max(chosen, key=lambda a: (len(rule.index_options[a]), a)))
            signature = tuple(sorted(chosen))
            table = buckets.setdefault(signature, {})
            for combination in itertools.product(*(rule.index_options[a] for a in signature)):
                table.setdefault(combination, []).append(rule.position)
        frozen = {sig: {k: tuple(v) for k, v in table.items()} for sig, table in buckets.items()}
        return cls(compiled, frozen, tuple(unindexed))

    def values(self, ticket: Ticket) -> TicketValues:
        return TicketValues(ticket)

    def candidates(self, values: dict[str, AttributeValue]) -> Sequence[int]:
        """Positions of the rules that can match, in file order: a superset of the matching rules."""
        lists = self._buckets(values)
        if self.unindexed:
            lists.append(self.unindexed)
        return sorted(set().union(*lists)) if lists else ()

    def _buckets(self, values: dict[str, AttributeValue]) -> list[tuple[int, ...]]:
        found: list[tuple[int, ...]] = []
        for signature, table in self.buckets.items():
            if len(signature) == 1:
                for key in values[signature[0]].keys:
                    bucket = table.get((key,))
                    if bucket:
                        found.append(bucket)
                continue
            key_sets = [values[a].keys for a in signature]
            if not all(key_sets):
                continue
            for combination in itertools.product(*key_sets):
                bucket = table.get(combination)
                if bucket:
                    found.append(bucket)
        return found

    def first_match(self, ticket: Ticket, values: dict[str, AttributeValue] | None = None) -> CompiledRule | None:
        """The first rule in file order that matches. Each bucket (and the unindexed rules) is sorted, so
        each is searched only up to the earliest match found so far; nothing is merged or sorted."""
        if values is None:
            values = self.values(ticket)
        rules = self.rules
        best = len(rules)
        for bucket in self._buckets(values):
            for position in bucket:
                if position >= best:
                    break
                if rules[position].matches(values):
                    best = position
                    break
        for position in self.unindexed:
            if position >= best:
                break
            if rules[position].matches(values):
                best = position
                break
        return rules[best] if best < len(rules) else None

    def scan_first_match(self, ticket: Ticket) -> CompiledRule | None:
        """The same answer by trying every rule in order (benchmark baseline and test oracle)."""
        values = self.values(ticket)
        for rule in self.rules:
            if rule.matches(values):
                return rule
        return None

    def explain(self, ticket: Ticket, *, all_rules: bool = False) -> list[RuleTrace]:
        """Every rule tried in file order up to the first match (or all with `all_rules`), each condition
        with what it wants, what the ticket has and whether it holds."""
        values = self.values(ticket)
        traces: list[RuleTrace] = []
        found = False
        for rule in self.rules:
            checks = tuple(
                CheckTrace(c.attribute, c.wants, _display(values[c.attribute].raw), c.test(values[c.attribute]))
                for c in rule.checks
            )
            matched = all(c.holds for c in checks)
            traces.append(RuleTrace(rule.rule.id, rule.position, matched, checks, rule.rule.level, rule.rule.bypass))
            if matched and not found:
                found = True
                if not all_rules:
                    break
        return traces


def _display(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, tuple):
        return list(value)
    return value
