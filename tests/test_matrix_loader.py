"""Loader: YAML 1.2, positions of errors, loading from text, and the matrix version (content hash)."""
from __future__ import annotations

from pathlib import Path

import pytest

from matrix_config.loader import RESERVED_RULE_IDS, LoadedMatrix, MatrixInvalid, load_matrix, load_matrix_text
from matrix_config.schema import Matcher
from tests.conftest import EXAMPLES

MINIMAL = (EXAMPLES / "minimal.yaml").read_text()


def errors_of(text: str) -> list[str]:
    with pytest.raises(MatrixInvalid) as err:
        load_matrix_text(text, "m.yaml")
    return err.value.errors


def test_load_matrix_and_load_matrix_text_agree() -> None:
    from_file = load_matrix(EXAMPLES / "enterprise.yaml")
    text = (EXAMPLES / "enterprise.yaml").read_text()
    from_text = load_matrix_text(text)
    assert isinstance(from_file, LoadedMatrix)
    assert from_file.version == from_text.version == from_file.matrix.version()
    assert from_file.source == text
    assert from_text.path == "<string>"
    assert from_file.matrix == from_text.matrix


def test_yaml_1_2_keeps_sexagesimal_looking_values_as_text() -> None:
    text = MINIMAL.replace("name: Support\n", "name: 1:30\n")
    assert load_matrix_text(text).matrix.level("L1").name == "1:30"


def test_yes_is_text_in_yaml_1_2() -> None:
    text = MINIMAL.replace("when: {issue_type: incident}", "when: {issue_type: incident, channel: yes}")
    assert load_matrix_text(text).matrix.rules[0].when["channel"] == "yes"


def test_conditions_keep_their_yaml_shape() -> None:
    text = MINIMAL.replace("when: {issue_type: incident}",
                           "when: {issue_type: [incident], tags: {any: [vip]}, channel: email}")
    when = load_matrix_text(text).matrix.rules[0].when
    assert when["issue_type"] == ["incident"]
    assert when["tags"] == Matcher(any=["vip"])
    assert when["channel"] == "email"


def test_every_duplicate_key_is_reported() -> None:
    text = MINIMAL.replace("sla: {acknowledge: 4h, resolve: 3d}", "sla: {acknowledge: 4h, acknowledge: 3d}").replace(
        "  escalated: |", "  received: again\n  escalated: |")
    assert errors_of(text) == [
        "m.yaml:28:28: levels[0].sla.acknowledge: duplicate key 'acknowledge' (first defined on line 28)",
        "m.yaml:49:3: templates.received: duplicate key 'received' (first defined on line 47)",
    ]


def test_schema_errors_are_sorted_and_each_on_its_line() -> None:
    text = MINIMAL.replace("priority: normal", "priority: medium").replace("resolve: 1d}", "resolve: 1x}")
    assert errors_of(text) == [
        "m.yaml:26:15: levels[0].priority: invalid value 'medium': expected one of 'low', 'normal', 'high' or "
        "'urgent'",
        "m.yaml:37:37: levels[1].sla.resolve: invalid duration '1x': use d/h/m units, e.g. '30m', '4h', '2d', "
        "'1h30m'",
    ]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("when: {issue_type: incident}", "when: {issue_type: incident, tags: {anyy: [x]}}",
         "m.yaml:43:41: rules[0].when.tags.anyy: unknown key 'anyy' (did you mean 'any'?)"),
        ("when: {issue_type: incident}", "when: {issue_type: }",
         "m.yaml:43:12: rules[0].when.issue_type: expected text, a number or true/false, got nothing (null)"),
        ("on_breach: {acknowledge: L2}", "on_breach: {acknowlege: L2}",
         "m.yaml:31:17: levels[0].on_breach.acknowlege: unknown key 'acknowlege': expected one of 'acknowledge', "
         "'diagnose', 'interim_fix' or 'resolve' (did you mean 'acknowledge'?)"),
        ("id: incidents", "id: all incidents",
         "m.yaml:41:9: rules[0].id: invalid id 'all incidents': an id starts with a letter and uses letters, "
         "digits, '_', '.' and '-'"),
        ("zendesk: 360000900101", "zendesk: abc",
         "m.yaml:20:38: groups.support.zendesk: expected a whole number, got the text 'abc'"),
        ("zendesk: {custom_field: 360000900001}", "zendesk: {custom_field: 360000900001, tag_prefix: x}",
         "m.yaml:11:15: fields.issue_type.zendesk.custom_field: give exactly one of `custom_field`, `tag_prefix`, `organization_field` "
         "or `user_field`"),
        ("when: {issue_type: incident}", "when: {issue_type: incident, status: {any: [opened]}}",
         "m.yaml:43:49: rules[0].when.status.any[0]: unknown status 'opened' (did you mean 'open'?)"),
        ("templates:", "calendars:\n  office:\n    timezone: UTC\n    hours: {mon: ['09:00-17:00']}\n"
         "    holidays: [2026-13-01]\ntemplates:",
         "m.yaml:50:16: calendars.office.holidays[0]: invalid date '2026-13-01': month must be in 1..12"),
        ("{{ ticket.id }} and", "{{ tickt.id }} and",
         "m.yaml:48:79: templates.received: unknown placeholder 'tickt' (did you mean 'ticket'?): templates may use "
         "alert, blockers, clock, clocks, eta, last_public_update, level, matrix, milestones, missing, previous_level, "
         "report, rule, ticket"),
        ("  - id: L2\n", "  - id: L2\n   bad: indent\n",
         "m.yaml:34:4: (yaml): while parsing a block collection: expected <block end>, but found "
         "'<block mapping start>'"),
    ],
)
def test_error_lines(old: str, new: str, expected: str) -> None:
    assert old in MINIMAL
    assert errors_of(MINIMAL.replace(old, new, 1)) == [expected]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "<string>:1:1: (root): the matrix file is empty"),
        ("- a\n- b\n", "<string>:1:1: (root): the matrix must be a mapping of keys such as name, levels, rules"),
        ("a: 1\n---\nb: 2\n", "<string>:2:1: (yaml): expected a single document in the stream: but found another "
         "document"),
    ],
)
def test_documents_that_are_not_a_matrix(text: str, expected: str) -> None:
    with pytest.raises(MatrixInvalid) as err:
        load_matrix_text(text)
    assert err.value.errors == [expected]


def test_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]"
              for i in range(1, 9)]
    with pytest.raises(MatrixInvalid) as err:
        load_matrix_text("\n".join(lines))
    assert err.value.errors == ["<string>:1:1: (root): the matrix expands to more than 200000 values (too many aliases?)"]


# ----------------------------------------------------------------------------------- versions
def test_comments_and_key_order_do_not_change_the_version() -> None:
    base = load_matrix_text(MINIMAL).version
    commented = MINIMAL.replace("groups:\n", "# who owns tickets\ngroups:  # by key\n")
    reordered = MINIMAL.replace("    name: Support\n    priority: normal\n", "    priority: normal\n    name: Support\n")
    flow = MINIMAL.replace("sla: {acknowledge: 4h, resolve: 3d}", "sla:\n      resolve: 3d\n      acknowledge: 4h")
    assert reordered != MINIMAL and flow != MINIMAL
    assert load_matrix_text(commented).version == base
    assert load_matrix_text(reordered).version == base
    assert load_matrix_text(flow).version == base


def test_equivalent_durations_give_the_same_version() -> None:
    base = load_matrix_text(MINIMAL).version
    assert load_matrix_text(MINIMAL.replace("acknowledge: 4h", "acknowledge: 240m")).version == base


def test_a_changed_target_changes_the_version() -> None:
    base = load_matrix_text(MINIMAL).version
    assert load_matrix_text(MINIMAL.replace("acknowledge: 4h", "acknowledge: 5h")).version != base
    assert load_matrix_text(MINIMAL.replace("incidents go", "Incidents go")).version == base  # a comment
    assert load_matrix_text(MINIMAL.replace("Incidents go to", "Incidents reach")).version != base


def test_locate_maps_paths_back_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(MINIMAL)
    loaded = load_matrix(path)
    assert loaded.locate(("rules", 0, "level")) == (f"{path}:44:12", "rules[0].level")
    assert loaded.locate(("levels", 1, "sla", "acknowledge"), at_key=True) == (f"{path}:37:11", "levels[1].sla.acknowledge")


CALENDAR = "clocks:\n  calendar: office\n\ncalendars:\n  office:\n    timezone: UTC\n    hours:\n{hours}\ntemplates:"


@pytest.mark.parametrize(
    ("hours", "expected"),
    [
        ("      mon: ['08:00-12:00', '11:30-17:00']",
         "m.yaml:53:28: calendars.office.hours.mon[1]: span '11:30-17:00' overlaps '08:00-12:00' on mon"),
        ("      mon: []", "m.yaml:52:5: calendars.office.hours: calendar 'office' has no opening hours: its SLA clocks "
         "would never run"),
        ("      sat: ['00:00-24:00']", None),
        ("      mon: ['12:00-17:00', '08:00-12:00']", None),  # touching spans in any order are fine
    ],
)
def test_calendar_hours(hours: str, expected: str | None) -> None:
    text = MINIMAL.replace("templates:", CALENDAR.format(hours=hours), 1)
    if expected is None:
        load_matrix_text(text, "m.yaml")
    else:
        assert errors_of(text) == [expected]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("priority: critical", "m.yaml:43:44: rules[0].when.priority: unknown priority 'critical': priorities are "
         "low, normal, high, urgent"),
        ("level: [L1, L3]", "m.yaml:43:46: rules[0].when.level[1]: unknown level 'L3': levels are L1, L2"),
        ("group: {none: [suport]}", "m.yaml:43:49: rules[0].when.group.none[0]: unknown group 'suport' "
         "(did you mean 'support'?)"),
        ("issue_type: {any: [Incident]}", None),  # values compare case-insensitively, as the engine matches them
    ],
)
def test_rule_values_of_known_attributes_are_checked(condition: str, expected: str | None) -> None:
    text = MINIMAL.replace("when: {issue_type: incident}", f"when: {{issue_type: incident, {condition}}}")
    if condition.startswith("issue_type"):
        text = MINIMAL.replace("when: {issue_type: incident}", f"when: {{{condition}}}")
    if expected is None:
        load_matrix_text(text, "m.yaml")
    else:
        assert errors_of(text) == [expected]


def test_rule_ids_the_engine_uses_for_other_causes_are_refused() -> None:
    from integration.engine import DEFAULT_PLACEMENT, MANUAL

    assert set(RESERVED_RULE_IDS) == {MANUAL, DEFAULT_PLACEMENT}
    assert errors_of(MINIMAL.replace("  - id: incidents\n", "  - id: default\n", 1)) == [
        "m.yaml:41:9: rules[0].id: rule id 'default' is reserved: escalation notes and history use 'default' for "
        "a ticket no rule matched; choose another id"
    ]
    assert load_matrix_text(MINIMAL.replace("  - id: incidents\n", "  - id: default-incidents\n", 1))
