"""Linter: rule shadowing (table-driven), owner/vendor gaps, loosening SLAs, reachability, unused items."""
from __future__ import annotations

import pytest

from matrix_config.lint import lint, shadowing_rule
from matrix_config.loader import load_matrix_text
from matrix_config.schema import Rule
from tests.conftest import EXAMPLES

MINIMAL = (EXAMPLES / "minimal.yaml").read_text()


def rule(rule_id: str, when: dict) -> Rule:
    return Rule.model_validate({"id": rule_id, "when": when, "level": "L2"})


SHADOW_CASES = [
    # (earlier.when, later.when, later can never match)
    ({}, {"issue_type": "outage"}, True),
    ({"issue_type": "outage"}, {"issue_type": "outage"}, True),
    ({"issue_type": "Outage"}, {"issue_type": "outage "}, True),  # case and spaces do not matter
    ({"issue_type": "outage"}, {"issue_type": "bug"}, False),
    ({"issue_type": "outage"}, {}, False),
    ({"issue_type": "outage"}, {"issue_type": "outage", "customer_tier": "enterprise"}, True),
    ({"issue_type": "outage", "customer_tier": "enterprise"}, {"issue_type": "outage"}, False),
    # one-of lists
    ({"tier": ["enterprise", "premium"]}, {"tier": "enterprise"}, True),
    ({"tier": ["enterprise", "premium"]}, {"tier": ["premium", "enterprise"]}, True),
    ({"tier": ["enterprise", "premium"]}, {"tier": ["enterprise", "basic"]}, False),
    ({"tier": "enterprise"}, {"tier": ["enterprise", "premium"]}, False),
    ({"tier": "enterprise"}, {"tier": ["enterprise"]}, True),
    # tags: any / all / none
    ({"tags": {"any": ["a", "b"]}}, {"tags": {"all": ["b", "c"]}}, True),
    ({"tags": {"any": ["a", "b"]}}, {"tags": {"any": ["a"]}}, True),
    ({"tags": {"any": ["a"]}}, {"tags": {"any": ["a", "b"]}}, False),
    ({"tags": {"all": ["a", "b"]}}, {"tags": {"all": ["a", "b", "c"]}}, True),
    ({"tags": {"all": ["a", "b"]}}, {"tags": {"any": ["a", "b"]}}, False),
    ({"tags": {"all": ["a"]}}, {"tags": "a"}, True),
    ({"tags": {"none": ["x"]}}, {"tags": {"none": ["x", "y"]}}, True),
    ({"tags": {"none": ["x", "y"]}}, {"tags": {"none": ["x"]}}, False),
    # with several values per attribute, "contains a" does not rule out x as well
    ({"tags": {"none": ["x"]}}, {"tags": "a"}, False),
    ({"tags": {"none": ["x"]}}, {"tags": {"present": False}}, True),
    # numeric ranges
    ({"users": {"gte": 100}}, {"users": {"gte": 500}}, True),
    ({"users": {"gte": 100}}, {"users": {"gte": 100}}, True),
    ({"users": {"gte": 500}}, {"users": {"gte": 100}}, False),
    ({"users": {"gt": 100}}, {"users": {"gte": 100}}, False),
    ({"users": {"gte": 100}}, {"users": {"gt": 100}}, True),
    ({"users": {"gte": 10, "lte": 1000}}, {"users": {"gte": 100, "lt": 500}}, True),
    ({"users": {"gte": 10, "lte": 100}}, {"users": {"gte": 50, "lte": 200}}, False),
    ({"users": {"gte": 100}}, {"users": 500}, False),  # equality does not prove a single number
    # present
    ({"account_id": {"present": True}}, {"account_id": "A-1"}, True),
    ({"account_id": {"present": True}}, {"account_id": {"gte": 1}}, True),
    ({"account_id": {"present": True}}, {"account_id": {"none": ["x"]}}, False),
    ({"account_id": ""}, {"account_id": {"present": False}}, True),
]


@pytest.mark.parametrize(("earlier", "later", "shadowed"), SHADOW_CASES)
def test_shadowing(earlier: dict, later: dict, shadowed: bool) -> None:
    assert shadowing_rule(rule("earlier", earlier), rule("later", later)) is shadowed


def findings(text: str) -> list[str]:
    return [f.line() for f in lint(load_matrix_text(text, "m.yaml"))]


def test_contradictory_rule_is_an_error() -> None:
    text = MINIMAL.replace("when: {issue_type: incident}", "when: {issue_type: incident, tags: {all: [a], none: [a]}}")
    assert findings(text) == [
        "m.yaml:43:5: rules[0].when: rule 'incidents' can never match: its conditions contradict each other"
    ]


def test_group_missing_on_a_used_vendor_leaves_issue_types_without_owner() -> None:
    text = MINIMAL.replace("engineering: {label: Engineering, zendesk: 360000900102, jira: engineering}",
                           "engineering: {label: Engineering, zendesk: 360000900102}")
    assert findings(text) == [
        "m.yaml:36:22: levels[1].owner.default: warning: issue types incident, question at L2 go to group "
        "'engineering', which has no jira id: on Jira these tickets get no owner group"
    ]


def test_by_issue_type_group_missing_on_a_vendor() -> None:
    text = MINIMAL.replace("owner: {default: engineering}",
                           "owner: {default: engineering, by_issue_type: {question: helpdesk}}").replace(
        "groups:\n", "groups:\n  helpdesk: {label: Helpdesk, jira: helpdesk}\n")
    assert findings(text) == [
        "m.yaml:37:61: levels[1].owner.by_issue_type.question: warning: issue types question at L2 go to group "
        "'helpdesk', which has no zendesk id: on Zendesk these tickets get no owner group"
    ]


def test_group_without_vendor_ids() -> None:
    text = MINIMAL.replace("groups:\n", "groups:\n  nobody: {label: Nobody}\n").replace(
        "owner: {default: engineering}", "owner: {default: engineering, by_issue_type: {question: nobody}}")
    assert findings(text) == [
        "m.yaml:20:3: groups.nobody: warning: group 'nobody' has no vendor ids (zendesk, jira): tickets routed to it "
        "keep their current group"
    ]


def test_loosening_sla_compares_with_the_tightest_lower_level() -> None:
    text = MINIMAL.replace("sla: {acknowledge: 1h, resolve: 1d}", "sla: {acknowledge: 1h, resolve: 5d}")
    assert findings(text) == [
        "m.yaml:37:37: levels[1].sla.resolve: warning: resolve target 5d at L2 is looser than 3d at L1: a higher "
        "level should not be slower"
    ]


LEVEL_3 = """
  - id: L3
    name: Leadership
    priority: urgent
    owner: {default: engineering}

rules:"""


def test_level_reached_only_by_hand() -> None:
    text = MINIMAL.replace("\nrules:", LEVEL_3, 1)
    assert findings(text) == [
        "m.yaml:40:9: levels[2].id: warning: no rule or on_breach leads to level L3: only manual escalation "
        "(an agent setting the `level` field) reaches it"
    ]


def test_level_nothing_reaches() -> None:
    text = MINIMAL.replace("\nrules:", LEVEL_3, 1)
    without_level_field = text.replace(
        "  level:\n    label: Escalation level\n    zendesk: {tag_prefix: \"esc_\"}\n    jira: {label_prefix: \"esc-\"}\n",
        "")
    assert findings(without_level_field) == [
        "m.yaml:36:9: levels[2].id: warning: nothing can reach level L3: no rule or on_breach leads to it and there "
        "is no `level` field for manual escalation"
    ]


def test_breach_chain_makes_a_level_reachable() -> None:
    text = MINIMAL.replace("\nrules:", LEVEL_3, 1).replace(
        "    on_enter: {note: escalated}\n", "    on_enter: {note: escalated}\n    on_breach: {resolve: L3}\n")
    assert findings(text) == []


def test_breaches_that_cannot_happen() -> None:
    text = MINIMAL.replace("on_breach: {acknowledge: L2}", "on_breach: {acknowledge: L1, diagnose: L2}")
    assert findings(text) == [
        "m.yaml:31:30: levels[0].on_breach.acknowledge: warning: on_breach to L1 does nothing: tickets never move "
        "down or sideways",
        "m.yaml:31:34: levels[0].on_breach.diagnose: warning: L1 has no diagnose target, so this breach never happens",
    ]


def test_unused_template_and_group() -> None:
    text = MINIMAL.replace("templates:\n", "templates:\n  spare: unused text\n").replace(
        "groups:\n", "groups:\n  spare: {zendesk: 1, jira: spare}\n")
    assert findings(text) == [
        "m.yaml:20:3: groups.spare: warning: group 'spare' is not the owner at any level",
        "m.yaml:48:3: templates.spare: warning: template 'spare' is not used by any level or rule",
    ]


def test_breach_context_is_test_rendered() -> None:
    """A reply that reads `rule.id` unguarded fails when the ticket arrives by a breach (no rule)."""
    text = MINIMAL.replace("on_enter: {note: escalated}", "on_enter: {note: escalated, reply: by_rule}").replace(
        "templates:\n", "templates:\n  by_rule: \"Placed by {{ rule.id }}\"\n")
    assert findings(text) == [
        "m.yaml:47:3: templates.by_rule: template 'by_rule' fails to render at L2 for escalated by the acknowledge "
        "breach at L1 (rule empty): undefined placeholder: 'None' has no attribute 'id'"
    ]


def test_errors_come_before_warnings() -> None:
    text = MINIMAL.replace("sla: {acknowledge: 1h, resolve: 1d}", "sla: {acknowledge: 8h, resolve: 1d}").replace(
        "    level: L2\n\ntemplates:", "    level: L2\n\n  - id: again\n    when: {issue_type: incident}\n"
        "    level: L2\n\ntemplates:")
    severities = [f.severity for f in lint(load_matrix_text(text, "m.yaml"))]
    assert severities == ["error", "warning"]


def test_attribute_without_helpdesk_mapping() -> None:
    text = MINIMAL.replace("fields:\n", "fields:\n  account_id: {label: Account ID}\n  region:\n"
                           "    zendesk: {custom_field: 1}\n")
    assert findings(text) == [
        "m.yaml:9:3: fields.account_id: warning: attribute 'account_id' is not mapped to any helpdesk field: it is "
        "always empty, so rules on it never match and required data naming it is always missing",
        "m.yaml:10:3: fields.region: warning: attribute 'region' has no jira mapping: on Jira it is always empty",
    ]


def test_template_printing_an_empty_requester_name_is_a_warning() -> None:
    text = MINIMAL.replace('{{ ticket.requester.name or "there" }}', "{{ ticket.requester.name }}")
    assert findings(text) == [
        "m.yaml:47:3: templates.received: warning: template 'received' prints nothing where ticket.requester.name "
        "is empty (the helpdesk may leave it unset): give a fallback, e.g. {{ ticket.requester.name or \"there\" }}, "
        "or guard it with {% if ticket.requester.name %}"
    ]


def test_example_matrices_greet_a_nameless_requester_safely() -> None:
    for name in ("enterprise.yaml", "minimal.yaml"):
        text = (EXAMPLES / name).read_text()
        assert [f for f in findings(text) if "prints nothing" in f] == [], name
