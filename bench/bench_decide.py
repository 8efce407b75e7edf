"""Decisions per second of `integration.engine.decide` on one core.

Measures the example matrix and a generated 1,000-rule matrix, each with
- new tickets (rule placement, entry effects, two template renders), and
- placed tickets that already reflect the matrix (the most common pass: a webhook echo or a catch-up
  scan; the decision is empty),
and, in the same run, the same engine with the rule index replaced by a full scan of all rules, so the
ratio shows what the index buys. Run: `.venv/bin/python bench/bench_decide.py [--seconds 1.0]`.
Goal (issue 2): >= 10,000 decisions/s for 1,000 rules.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
import types
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from integration.engine import apply_to_ticket, compile_matrix, decide, next_state  # noqa: E402
from integration.model import Person, Ticket  # noqa: E402
from matrix_config.loader import load_matrix  # noqa: E402
from matrix_config.schema import Matrix, OnEnter, Rule  # noqa: E402

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)
ORGANIZATIONS = [f"org-{i:04d}" for i in range(800)]
TIERS = ["standard", "premium", "enterprise"]
IMPACTS = ["low", "medium", "high", "critical"]
FEATURES = [f"feature-{i}" for i in range(120)]


def generate_matrix(base: Matrix, n_rules: int = 1000, seed: int = 7) -> Matrix:
    """`base` with its rules replaced by `n_rules` generated ones, shaped like a big real matrix: mostly
    per-customer rules, some tier/impact combinations, feature tags, a few numeric-only rules that no
    index can serve, and a bypass rule now and then."""
    rng = random.Random(seed)
    issue_types = list(base.issue_types)
    levels = [level.id for level in base.levels]
    rules: list[Rule] = []
    for i in range(n_rules):
        kind = i % 50
        when: dict
        if kind == 49:
            when = {"affected_users": {"gte": rng.randint(1000, 100000)}, "environment": {"none": ["staging"]}}
        elif kind < 30:
            when = {"organization": rng.choice(ORGANIZATIONS), "issue_type": rng.choice(issue_types)}
        elif kind < 40:
            when = {"issue_type": rng.choice(issue_types), "customer_tier": rng.sample(TIERS, 2),
                    "impact": rng.choice(IMPACTS), "affected_users": {"gte": rng.randint(1, 500)}}
        else:
            when = {"tags": {"any": rng.sample(FEATURES, 2)}, "issue_type": rng.choice(issue_types)}
        if i % 100 == 99:
            rules.append(Rule(id=f"gen-{i:04d}", when=when, bypass=True))
        else:
            rules.append(Rule(id=f"gen-{i:04d}", when=when, level=rng.choice(levels[1:])))
    return base.model_copy(update={"name": f"{base.name} (generated, {n_rules} rules)", "rules": rules})


def generate_tickets(base: Matrix, n: int = 2000, seed: int = 11) -> list[Ticket]:
    rng = random.Random(seed)
    tickets = []
    for i in range(n):
        fields = {
            "issue_type": rng.choice(base.issue_types),
            "customer_tier": rng.choice(TIERS),
            "impact": rng.choice(IMPACTS),
            "affected_users": rng.choice([None, 1, 20, 150, 800, 5000]),
            "environment": rng.choice([None, "production", "staging"]),
        }
        if rng.random() < 0.7:
            fields.update(account_id=f"A-{i}", recent_changes="none")
        tags = set(rng.sample(FEATURES, rng.randint(0, 3)))
        if rng.random() < 0.1:
            tags.add(rng.choice(["password_reset", "security_incident"]))
        tickets.append(Ticket(
            vendor="neutral", id=str(100000 + i), subject=f"Ticket {i}", status="open",
            priority=rng.choice([None, "low", "normal"]), tags=frozenset(tags),
            organization=rng.choice(ORGANIZATIONS + [None] * 200),
            requester=Person(name=f"Customer {i}", email=f"c{i}@example.com"),
            fields={k: v for k, v in fields.items() if v is not None},
        ))
    return tickets


def without_templates(matrix: Matrix) -> Matrix:
    """`matrix` with no entry reply/note and no data request: shows what rendering costs."""
    levels = [level.model_copy(update={"on_enter": OnEnter(), "data_request": None}) for level in matrix.levels]
    return matrix.model_copy(update={"levels": levels})


def naive_copy(matrix: Matrix, version: str) -> Matrix:
    """A copy of `matrix` whose cached engine data tries every rule in order instead of using the index."""
    copy = matrix.model_copy()
    index = compile_matrix(copy, version).index
    index.first_match = types.MethodType(lambda self, ticket, values=None: self.scan_first_match(ticket), index)
    return copy


def rate(work, items, seconds: float) -> float:
    """Best-of-three items/s of calling `work(item)` over `items`, each round lasting >= `seconds`/3.
    Counts this process's CPU time, so other processes on a busy machine distort the numbers less."""
    best = 0.0
    for _ in range(3):
        done = 0
        start = time.process_time()
        while True:
            for item in items:
                work(item)
            done += len(items)
            elapsed = time.process_time() - start
            if elapsed >= seconds / 3:
                break
        best = max(best, done / elapsed)
    return best


def measure(matrix: Matrix, version: str, tickets: list[Ticket], seconds: float) -> tuple[float, float]:
    new = rate(lambda t: decide(t, None, matrix, NOW, version=version), tickets, seconds)
    placed = []
    for ticket in tickets:
        decision = decide(ticket, None, matrix, NOW, version=version)
        placed.append((apply_to_ticket(ticket, decision), next_state(None, ticket, decision)))
    steady = rate(lambda pair: decide(pair[0], pair[1], matrix, NOW, version=version), placed, seconds)
    empty = sum(decide(t, s, matrix, NOW, version=version).is_empty for t, s in placed)
    assert empty == len(placed), f"only {empty}/{len(placed)} placed tickets gave an empty decision"
    return new, steady


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="measuring time per row (default 1.5)")
    args = parser.parse_args()

    example = load_matrix(REPO / "matrix_config" / "examples" / "enterprise.yaml")
    generated = generate_matrix(example.matrix, 1000)
    generated_version = generated.version()
    tickets = generate_tickets(example.matrix, 2000)

    indexed = compile_matrix(generated, generated_version).index
    mismatches = sum(indexed.first_match(t) is not indexed.scan_first_match(t) for t in tickets)
    assert mismatches == 0, f"index and full scan disagree on {mismatches} tickets"
    matched = sum(indexed.first_match(t) is not None for t in tickets)

    rows = [
        ("example matrix (%d rules)" % len(example.matrix.rules),) + measure(example.matrix, example.version, tickets, args.seconds),
        ("1,000 rules, indexed",) + measure(generated, generated_version, tickets, args.seconds),
        ("1,000 rules, full scan",) + measure(naive_copy(generated, generated_version), generated_version, tickets,
                                              args.seconds),
    ]
    bare = without_templates(generated)
    bare_row = ("1,000 rules, no templates",) + measure(bare, bare.version(), tickets, args.seconds)
    place_indexed = rate(lambda t: indexed.first_match(t), tickets, args.seconds)
    place_scan = rate(lambda t: indexed.scan_first_match(t), tickets, args.seconds)

    print(f"decide() on one core (CPU time), {len(tickets)} generated tickets ({matched} match a generated rule)")
    print(f"{'matrix':<28} {'new tickets/s':>14} {'placed tickets/s':>17}")
    for name, new, steady in rows + [bare_row]:
        print(f"{name:<28} {new:>14,.0f} {steady:>17,.0f}")
    print(f"index speed-up, whole decision: new x{rows[1][1] / rows[2][1]:.1f}, placed x{rows[1][2] / rows[2][2]:.1f}")
    print(f"rule placement alone: indexed {place_indexed:,.0f}/s, full scan {place_scan:,.0f}/s, "
          f"x{place_indexed / place_scan:.1f}")
    render_us = 1e6 / rows[1][1] - 1e6 / bare_row[1]
    print(f"entry reply + note rendering (matrix_config.templates) costs {render_us:.0f} us per new ticket")
    worst = min(rows[1][1], rows[1][2])
    print(f"goal >= 10,000 decisions/s for 1,000 rules: {'met' if worst >= 10_000 else 'NOT met'} "
          f"(slowest indexed row {worst:,.0f}/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
