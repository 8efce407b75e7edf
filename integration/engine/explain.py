"""Why a ticket is placed where it is: the rules tried, each condition with what it wants and what the
ticket has, and the decision (`escalation explain`)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from integration.engine.compile import compile_matrix
from integration.engine.decide import decide_compiled
from integration.model import Decision, Ticket, TicketState
from integration.rules_index import RuleTrace
from matrix_config.schema import Matrix


@dataclass(frozen=True)
class Explanation:
    traces: tuple[RuleTrace, ...]
    matched_rule: str | None
    decision: Decision


def explain(
    ticket: Ticket,
    state: TicketState | None,
    matrix: Matrix,
    now: datetime,
    *,
    version: str | None = None,
    all_rules: bool = False,
) -> Explanation:
    """The rules tried (each condition with what it wants and what the ticket has) and the decision."""
    compiled = compile_matrix(matrix, version)
    traces = tuple(compiled.index.explain(ticket, all_rules=all_rules))
    matched = next((t.rule_id for t in traces if t.matched), None)
    return Explanation(traces, matched, decide_compiled(compiled, ticket, state, now))
