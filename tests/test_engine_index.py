"""Rule matching semantics and the rule index: the index must pick exactly the rule a full scan picks."""
from __future__ import annotations

import random

import pytest

from integration.model import Ticket
from integration.rules_index import RuleIndex
from matrix_config.schema import Rule


def ticket(tags=(), organization=None, priority=None, **fields) -> Ticket:
    return Ticket(vendor="neutral", id="1", tags=frozenset(tags), organization=organization,
                  priority=priority, fields=fields)


def matches(when: dict, t: Ticket) -> bool:
    rule = Rule.model_validate({"id": "r", "when": when, "level": "L2"})
    return RuleIndex.build([rule]).first_match(t) is not None


MATCHING = [
    # when, ticket, expected
    ({"issue_type": "outage"}, ticket(issue_type="Outage"), True),  # case-insensitive
    ({"issue_type": "outage"}, ticket(issue_type="outages"), False),
    ({"issue_type": "outage"}, ticket(), False),
    ({"customer_tier": ["enterprise", "premium"]}, ticket(customer_tier="premium"), True),
    ({"customer_tier": ["enterprise", "premium"]}, ticket(customer_tier="standard"), False),
    ({"affected_users": 100}, ticket(affected_users="100"), True),  # numbers compare by value
    ({"affected_users": {"gte": 100}}, ticket(affected_users=100), True),
    ({"affected_users": {"gt": 100}}, ticket(affected_users=100), False),
    ({"affected_users": {"gte": 10, "lt": 50}}, ticket(affected_users="49"), True),
    ({"affected_users": {"gte": 10}}, ticket(affected_users="many"), False),
    ({"affected_users": {"gte": 10}}, ticket(), False),
    ({"tags": "vip"}, ticket(tags={"VIP", "x"}), True),  # a scalar on a list attribute: contains
    ({"tags": {"any": ["a", "b"]}}, ticket(tags={"b"}), True),
    ({"tags": {"all": ["a", "b"]}}, ticket(tags={"b"}), False),
    ({"tags": {"all": ["a", "b"]}}, ticket(tags={"a", "b", "c"}), True),
    ({"tags": {"none": ["spam"]}}, ticket(tags={"ok"}), True),
    ({"tags": {"none": ["spam"]}}, ticket(tags={"spam"}), False),
    ({"environment": {"none": ["staging"]}}, ticket(), True),  # unset is none of anything
    ({"account_id": {"present": True}}, ticket(account_id="  "), False),
    ({"account_id": {"present": True}}, ticket(account_id="A-1"), True),
    ({"account_id": {"present": False}}, ticket(), True),
    ({"vip": True}, ticket(vip=True), True),
    ({"vip": True}, ticket(vip="true"), False),  # booleans are not strings
    ({"components": "api"}, ticket(components=("web", "API")), True),  # multi-select field
    ({"organization": "Globex", "priority": ["high", "urgent"]}, ticket(organization="globex", priority="urgent"), True),
    ({"organization": "Globex", "priority": ["high", "urgent"]}, ticket(organization="globex", priority="low"), False),
    ({}, ticket(), True),  # no conditions: every ticket
]


@pytest.mark.parametrize("when,t,expected", MATCHING)
def test_matching_semantics(when, t, expected):
    assert matches(when, t) is expected


def test_first_match_in_file_order_across_buckets():
    rules = [
        Rule(id="numeric", when={"affected_users": {"gte": 1000}}, level="L3"),
        Rule(id="org", when={"organization": "acme", "issue_type": "bug"}, level="L2"),
        Rule(id="type", when={"issue_type": "bug"}, level="L2"),
        Rule(id="everything", when={}, level="L1"),
    ]
    index = RuleIndex.build(rules)
    assert index.first_match(ticket(organization="acme", issue_type="bug")).rule.id == "org"
    assert index.first_match(ticket(organization="acme", issue_type="bug", affected_users=5000)).rule.id == "numeric"
    assert index.first_match(ticket(organization="other", issue_type="bug")).rule.id == "type"
    assert index.first_match(ticket(issue_type="question")).rule.id == "everything"


def test_explain_reports_each_condition():
    rules = [
        Rule(id="big", when={"issue_type": "outage", "affected_users": {"gte": 100}}, level="L2"),
        Rule(id="any", when={"tags": {"any": ["vip"]}}, level="L3"),
    ]
    traces = RuleIndex.build(rules).explain(ticket(tags={"vip"}, issue_type="outage", affected_users=5))
    assert [(t.rule_id, t.matched) for t in traces] == [("big", False), ("any", True)]
    assert [(c.wants, c.actual, c.holds) for c in traces[0].checks] == [
        ("= outage", "outage", True), (">= 100", 5, False)]


ATTRIBUTES = {
    "issue_type": ["outage", "bug", "question", "security"],
    "customer_tier": ["standard", "premium", "enterprise"],
    "impact": ["low", "high", "critical"],
    "organization": [f"org{i}" for i in range(30)],
}
TAGS = [f"t{i}" for i in range(12)]


def random_condition(rng: random.Random, attribute: str):
    values = ATTRIBUTES[attribute]
    shape = rng.random()
    if shape < 0.45:
        return rng.choice(values)
    if shape < 0.7:
        return rng.sample(values, 2)
    if shape < 0.85:
        return {"any": rng.sample(values, 2)}
    if shape < 0.93:
        return {"none": [rng.choice(values)]}
    return {"present": rng.random() < 0.5}


def random_rules(rng: random.Random, n: int) -> list[Rule]:
    rules = []
    for i in range(n):
        when: dict = {}
        for attribute in rng.sample(sorted(ATTRIBUTES), rng.choice([0, 1, 2, 2, 3, 3])):
            when[attribute] = random_condition(rng, attribute)
        if rng.random() < 0.3:
            when["tags"] = rng.choice([{"any": rng.sample(TAGS, 2)}, {"all": rng.sample(TAGS, 2)},
                                       {"none": rng.sample(TAGS, 1)}, rng.choice(TAGS)])
        if rng.random() < 0.2:
            when["affected_users"] = {rng.choice(["gte", "lt"]): rng.choice([10, 100, 1000])}
        if not when:  # catch-all rules would end every search early (covered by the test above)
            when["issue_type"] = rng.choice(ATTRIBUTES["issue_type"])
        rules.append(Rule(id=f"r{i}", when=when, level="L2") if rng.random() < 0.9
                     else Rule(id=f"r{i}", when=when, bypass=True))
    return rules


def random_ticket(rng: random.Random) -> Ticket:
    fields = {a: rng.choice(v + [None]) for a, v in ATTRIBUTES.items() if a != "organization"}
    fields["affected_users"] = rng.choice([None, 5, 50, 500, 5000, "300"])
    return ticket(tags=set(rng.sample(TAGS, rng.randint(0, 4))), organization=rng.choice(ATTRIBUTES["organization"]),
                  **{k: v for k, v in fields.items() if v is not None})


@pytest.mark.parametrize("seed", range(5))
def test_index_agrees_with_full_scan(seed):
    rng = random.Random(seed)
    index = RuleIndex.build(random_rules(rng, 300))
    tickets = [random_ticket(rng) for _ in range(400)]
    picked = [index.first_match(t) for t in tickets]
    assert picked == [index.scan_first_match(t) for t in tickets]
    # The comparison is about real, varied matches, not misses or one catch-all rule.
    assert sum(p is not None for p in picked) > 100
    assert len({p.position for p in picked if p is not None}) > 10
    average = sum(len(index.candidates(index.values(t))) for t in tickets) / len(tickets)
    assert average < 150  # the index narrows the 300 rules down
