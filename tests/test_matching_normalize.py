"""One normalisation for matching: the engine's rule index and the linter compare values the same way,
so "rule X never matches / is shadowed" from `escalation lint` agrees with what `decide()` does."""
import pytest

from integration import rules_index
from matrix_config import lint
from matrix_config.matching import normalize


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("Acme", " acme "),
        ("100", 100),
        ("100.0", 100),
        (100, 100.0),
        ("+5", 5),
        ("-2.50", -2.5),
        (True, True),
        ("ÉCOLE", "école"),
    ],
)
def test_values_that_compare_equal(left, right):
    assert normalize(left) == normalize(right)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (True, 1),  # a boolean is not the number 1
        (False, 0),
        ("true", True),  # text "true" is text
        ("1e3", 1000),  # only plain decimals are numbers
        ("007a", "7a"),
        ("1.", 1),
    ],
)
def test_values_that_differ(left, right):
    assert normalize(left) != normalize(right)


@pytest.mark.parametrize("empty", [None, "", "   ", "\t\n"])
def test_empty_values_have_no_key(empty):
    assert normalize(empty) is None


def test_linter_and_rule_index_use_the_same_normalisation():
    assert rules_index.normalize is normalize
    assert lint.normalize is normalize
