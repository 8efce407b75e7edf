"""How a matrix value is compared with a ticket value: the one normalisation the engine matches with
and the linter reasons with (if they drifted, lint's "this rule never matches" would disagree with what
the engine does).

Strings compare trimmed and case-insensitively, numbers by value (`100`, `100.0` and the string "100"
are equal), booleans as booleans; None and blank text are empty.
"""
from __future__ import annotations

import re
from typing import Any, Hashable

_NUMBER_RE = re.compile(r"^[+-]?\d+(\.\d+)?$")
_NUMBER_START = frozenset("+-0123456789")


def normalize(value: Any) -> Hashable | None:
    """The comparison key of one scalar; None for an empty value."""
    if value is None:
        return None
    kind = type(value)
    if kind is not str:
        # Exact type checks first: this runs for every attribute of every decision.
        if kind is bool:
            return ("b", value)
        if kind is int or kind is float or isinstance(value, (int, float)):
            return ("n", float(value))
    text = str(value).strip()
    if not text:
        return None
    if text[0] in _NUMBER_START and _NUMBER_RE.match(text):
        return ("n", float(text))
    return ("s", text.casefold())
