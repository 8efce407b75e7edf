"""The decision engine: `decide(ticket, state, matrix, now)` -> `Decision`, and `next_state`.

- `compile`: per-matrix data, compiled once and cached (rule index, levels, signal checks), templates' context.
- `decide`: the pure decision, as a table of steps over one per-decision context (the rules, in order, are in
  that module's docstring).
- `next_state`: the state stored after a decision, and the ticket as a connector leaves it.
- `explain`: the rules tried and the decision, for `escalation explain`.
"""
from integration.engine.compile import (
    BREACH_PREFIX,
    DEFAULT_PLACEMENT,
    MANUAL,
    UPDATE_CADENCE_CLOCK,
    CompiledMatrix,
    compile_matrix,
    format_duration_seconds,
    is_empty_value,
    template_context,
)
from integration.engine.decide import decide
from integration.engine.explain import Explanation, explain
from integration.engine.next_state import apply_to_ticket, next_state

__all__ = [
    "BREACH_PREFIX",
    "DEFAULT_PLACEMENT",
    "MANUAL",
    "UPDATE_CADENCE_CLOCK",
    "CompiledMatrix",
    "Explanation",
    "apply_to_ticket",
    "compile_matrix",
    "decide",
    "explain",
    "format_duration_seconds",
    "is_empty_value",
    "next_state",
    "template_context",
]
