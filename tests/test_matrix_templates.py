"""Templates: the sandbox, StrictUndefined, forbidden operators, size limits, plain-data contexts, sample data."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from matrix_config.loader import MatrixInvalid, load_matrix, load_matrix_text
from matrix_config.schema import TEMPLATE_CONTEXT, Matrix
from matrix_config.templates import (
    MAX_OUTPUT_CHARS,
    MAX_TEMPLATE_CHARS,
    PlainContext,
    TemplateRenderError,
    check_template_source,
    prints_empty_optional_value,
    render_template,
    sample_context,
    template_placeholders,
)
from tests.conftest import EXAMPLES


def matrix_with(**templates: str) -> Matrix:
    """A matrix built directly (not through the loader), so render-time defences are tested on their own."""
    return Matrix.model_validate(
        {
            "name": "t",
            "issue_types": ["incident"],
            "groups": {"support": {"zendesk": 1}},
            "levels": [{"id": "L1", "name": "Support", "priority": "normal", "owner": {"default": "support"}}],
            "templates": templates,
        }
    )


CONTEXT = {"ticket": {"id": "42", "requester": {"name": "Ada"}, "fields": {}}, "level": {"name": "Support"}}


def test_renders_plain_text_without_escaping() -> None:
    matrix = matrix_with(hello="Hi {{ ticket.requester.name }} <b>&</b> {{ ticket.id }}\n")
    assert render_template(matrix, "hello", CONTEXT) == "Hi Ada <b>&</b> 42"


def test_missing_top_level_names_are_none_so_guards_work() -> None:
    matrix = matrix_with(note="{% if rule %}by rule {{ rule.id }}{% else %}by hand{% endif %}")
    assert render_template(matrix, "note", CONTEXT) == "by hand"
    assert render_template(matrix, "note", {**CONTEXT, "rule": {"id": "r1"}}) == "by rule r1"


def test_strict_undefined_fails_instead_of_leaving_a_gap() -> None:
    matrix = matrix_with(t="Hello {{ ticket.requester.nickname }}")
    with pytest.raises(TemplateRenderError) as err:
        render_template(matrix, "t", CONTEXT)
    assert err.value.name == "t"
    assert "nickname" in err.value.message


def test_a_value_that_is_none_prints_nothing_but_undefined_names_still_fail() -> None:
    matrix = matrix_with(hello="Hello {{ ticket.requester.name }},", fallback='Hello {{ ticket.requester.name or "there" }},',
                         typo="Hello {{ ticket.requester.nmae }},")
    nameless = {"ticket": {"id": "42", "requester": {"name": None, "email": "x@example.com"}}}
    assert render_template(matrix, "hello", nameless) == "Hello ,"  # never "Hello None,"
    assert render_template(matrix, "fallback", nameless) == "Hello there,"
    with pytest.raises(TemplateRenderError):
        render_template(matrix, "typo", nameless)


def test_prints_empty_optional_value_names_the_unguarded_value() -> None:
    matrix = matrix_with(bare="Hello {{ ticket.requester.name }} of {{ ticket.organization }}",
                         org="Hello {{ ticket.requester.name or 'there' }} of {{ ticket.organization }}",
                         guarded="Hello{% if ticket.requester.name %} {{ ticket.requester.name }}{% endif %}, "
                                 "{{ ticket.organization or 'your team' }}")
    context = sample_context(matrix, matrix.levels[0])
    assert prints_empty_optional_value(matrix, "bare", context) == "ticket.requester.name"
    assert prints_empty_optional_value(matrix, "org", context) == "ticket.organization"
    assert prints_empty_optional_value(matrix, "guarded", context) is None
    assert context["ticket"]["requester"]["name"] == "Ada Example"  # the caller's context is left alone


def test_none_previous_level_attribute_fails() -> None:
    matrix = matrix_with(t="from {{ previous_level.id }}")
    with pytest.raises(TemplateRenderError, match="undefined placeholder"):
        render_template(matrix, "t", CONTEXT)


@pytest.mark.parametrize(
    "source",
    [
        # `fields` and `level.name` accept any key statically, so only the sandbox stands in the way here
        "{{ ticket.fields.__class__ }}",
        "{{ ticket.fields.__class__.__mro__[1].__subclasses__() }}",
        "{{ level.name.__class__.__base__ }}",
        "{{ ticket.__class__ }}",  # refused before rendering: not a documented placeholder
        "{{ ticket.fields.update({'x': 1}) }}",  # the immutable sandbox refuses mutation
        "{{ '=' * 10 }}",
        "{{ 2 ** 100 }}",
    ],
)
def test_sandbox_refuses_internals_mutation_and_operators(source: str) -> None:
    matrix = matrix_with(t=source)
    with pytest.raises(TemplateRenderError) as err:
        render_template(matrix, "t", CONTEXT)
    assert any(word in err.value.message for word in ("sandbox", "not allowed", "unsafe", "unknown placeholder"))


def test_operators_are_intercepted_at_render_time() -> None:
    from jinja2.exceptions import SecurityError

    from matrix_config.templates import _new_environment

    env = _new_environment()
    for source in ("{{ 'a' * 3 }}", "{{ 2 ** 3 }}"):
        with pytest.raises(SecurityError, match="not allowed"):
            env.from_string(source).render()


def test_operators_are_refused_at_load_time_too() -> None:
    problems = check_template_source("line one\n{{ 'x' * 3 }} and {{ 2 ** 8 }}")
    assert [(p.lineno, p.message) for p in problems] == [
        (2, "the operator '*' is not allowed in templates"),
        (2, "the operator '**' is not allowed in templates"),
    ]


def test_template_source_size_limit() -> None:
    source = "x" * (MAX_TEMPLATE_CHARS + 1)
    assert check_template_source(source)[0].message == (
        f"template is {MAX_TEMPLATE_CHARS + 1} characters long; the limit is {MAX_TEMPLATE_CHARS}"
    )
    with pytest.raises(TemplateRenderError, match="the limit is"):
        render_template(matrix_with(big=source), "big", CONTEXT)


def test_oversized_template_is_a_load_error(tmp_path: Path) -> None:
    text = (EXAMPLES / "minimal.yaml").read_text().replace(
        "  escalated: |\n", f"  huge: \"{'x' * (MAX_TEMPLATE_CHARS + 1)}\"\n  escalated: |\n"
    )
    with pytest.raises(MatrixInvalid) as err:
        load_matrix_text(text, "m.yaml")
    assert len(err.value.errors) == 1
    assert err.value.errors[0].startswith("m.yaml:49:9: templates.huge: template is 10001 characters long")


def test_rendered_output_size_limit() -> None:
    matrix = matrix_with(loop="{% for i in range(5000) %}0123456789{% endfor %}")
    with pytest.raises(TemplateRenderError, match=f"exceeds {MAX_OUTPUT_CHARS} characters"):
        render_template(matrix, "loop", CONTEXT)


@dataclass
class VendorRecord:
    id: str
    api_token: str


def test_context_must_be_plain_data() -> None:
    matrix = matrix_with(t="{{ ticket.id }}")
    with pytest.raises(TemplateRenderError, match="ticket is a VendorRecord; templates get plain data only"):
        render_template(matrix, "t", {"ticket": VendorRecord("1", "secret")})


def test_a_non_plain_value_deep_in_the_context_is_named_by_its_path() -> None:
    matrix = matrix_with(t="{{ ticket.id }}")
    context = {"ticket": {"id": "1", "fields": {"linked": ["ok", VendorRecord("2", "secret")]}}}
    with pytest.raises(TemplateRenderError) as caught:
        render_template(matrix, "t", context)
    assert caught.value.message == (
        "ticket.fields.linked[1] is a VendorRecord; templates get plain data only (dicts, lists, text, numbers)"
    )
    assert "secret" not in str(caught.value)


def test_a_plain_context_renders_several_templates_and_carries_a_refusal_to_each() -> None:
    matrix = matrix_with(reply="Hi {{ ticket.requester.name }}", note="{{ ticket.id }} at {{ level.name }}")
    shared = PlainContext(CONTEXT)
    assert render_template(matrix, "reply", shared) == "Hi Ada"
    assert render_template(matrix, "note", shared) == "42 at Support"
    refused = PlainContext({"ticket": {"id": "1", "record": VendorRecord("1", "secret")}})
    for name in ("reply", "note"):
        with pytest.raises(TemplateRenderError, match=f"'{name}': ticket.record is a VendorRecord"):
            render_template(matrix, name, refused)


def test_subclassed_and_mapping_values_are_made_plain_like_dicts() -> None:
    from collections import OrderedDict
    from datetime import timedelta
    from enum import Enum
    from types import MappingProxyType

    class Tier(str, Enum):
        GOLD = "gold"

    matrix = matrix_with(t="{{ ticket.fields.tier.value }} {{ ticket.fields.wait }} {{ ticket.fields.m.k }} "
                           "{{ ticket.fields.o | list | join(',') }}")
    fields = {"tier": Tier.GOLD, "wait": timedelta(hours=1, minutes=30), "m": MappingProxyType({"k": 1}),
              "o": OrderedDict([("b", 1), ("a", 2)])}
    assert render_template(matrix, "t", {"ticket": {"fields": fields}}) == "gold 1h30m 1 b,a"


def test_sets_and_tuples_become_lists() -> None:
    matrix = matrix_with(t="{{ ticket.tags | join(',') }}")
    assert render_template(matrix, "t", {"ticket": {"tags": frozenset({"b", "a"})}}) == "a,b"


def test_unknown_template_name() -> None:
    with pytest.raises(TemplateRenderError, match="no such template"):
        render_template(matrix_with(t="x"), "nope", CONTEXT)


def test_compiled_templates_follow_the_matrix_content() -> None:
    first, second = matrix_with(t="one {{ ticket.id }}"), matrix_with(t="two {{ ticket.id }}")
    assert render_template(first, "t", CONTEXT) == "one 42"
    assert render_template(second, "t", CONTEXT) == "two 42"
    assert render_template(first, "t", CONTEXT) == "one 42"


def test_placeholders_and_their_check() -> None:
    assert template_placeholders(
        "{{ ticket.requester.name }}{% for m in missing %}{{ m.label }}{% endfor %}{{ ticket['fields'].x }}"
    ) == {"ticket.requester.name", "missing", "ticket.fields.x"}
    problems = check_template_source("ok {{ ticket.fields.anything }}\n{{ tickt.id }} {{ level.colour }}")
    assert [p.message for p in problems] == [
        "unknown placeholder 'tickt' (did you mean 'ticket'?): templates may use alert, blockers, clock, clocks, eta, "
        "last_public_update, level, matrix, milestones, missing, previous_level, report, rule, ticket",
        "unknown placeholder 'level.colour': level has id, name, owner, priority, required_data, roles, sla, update_every",
    ]


def _shape_matches(spec, value, where: str) -> None:
    if spec is None or value is None:
        return
    assert isinstance(value, dict), where
    assert set(value) == set(spec), where
    for key, sub in spec.items():
        _shape_matches(sub, value[key], f"{where}.{key}")


def test_sample_context_has_exactly_the_documented_shape() -> None:
    loaded = load_matrix(EXAMPLES / "enterprise.yaml")
    for level in loaded.matrix.levels:
        context = sample_context(loaded.matrix, level)
        assert set(context) == set(TEMPLATE_CONTEXT)
        for name, spec in TEMPLATE_CONTEXT.items():
            _shape_matches(spec, context[name], name)
    l3 = sample_context(loaded.matrix, loaded.matrix.level("L3"))
    assert l3["previous_level"] == {"id": "L2", "name": "Product specialists"}
    assert [m["label"] for m in l3["missing"]] == [
        "Account ID", "Environment (production, staging, ...)", "Recent changes (deploys, config, upgrades)",
        "Number of affected users",
    ]
    assert l3["level"]["sla"]["acknowledge"] == "15m"


def test_example_templates_render() -> None:
    loaded = load_matrix(EXAMPLES / "enterprise.yaml")
    matrix = loaded.matrix
    text = render_template(matrix, "data_request", sample_context(matrix, matrix.level("L2")))
    assert "- Account ID\n" in text
    assert text.startswith("Hello Ada Example,")
    nameless = sample_context(matrix, matrix.level("L2"))
    nameless["ticket"]["requester"]["name"] = None
    for name in ("l1_received", "l2_engaged", "l3_incident", "l4_leadership", "data_request"):
        assert render_template(matrix, name, nameless).startswith("Hello there,"), name
    # The note says what the owner group needs at the level; why the ticket is there is the engine's line.
    note = render_template(matrix, "escalation_note", sample_context(matrix, matrix.level("L3")))
    assert note == (
        "L3 (Senior engineering): owner group Senior engineering.\n"
        "SLA: Acknowledge within 15m, diagnose within 2h, interim fix within 8h, resolve within 2d. "
        "Update the customer at least every 2h.\n"
        "Required data: Account ID: sample account id; Environment (production, staging, ...): sample environment; "
        "Recent changes (deploys, config, upgrades): sample recent changes; Number of affected users: 250.\n"
        "Roles: Incident commander (sample incident commander), Customer contact (sample customer contact)."
    )
    assert "Escalated" not in note and "matrix version" not in note
