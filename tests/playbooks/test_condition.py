"""The one condition grammar: what parses, what holds, and that NaN satisfies nothing."""

from __future__ import annotations

import math

import pytest

from playbooks.condition import Condition, ConditionError, condition_holds, parse_condition

NAN = float("nan")


@pytest.mark.parametrize(
    ("text", "op", "threshold", "normalized"),
    [
        ("> 0", ">", 0.0, "> 0"),
        (">0.05", ">", 0.05, "> 0.05"),
        ("  <=  1e-3 ", "<=", 0.001, "<= 1e-3"),
        ("== 1", "==", 1.0, "== 1"),
        ("!= -2.5", "!=", -2.5, "!= -2.5"),
        (">= .5", ">=", 0.5, ">= .5"),
        ("< 1.", "<", 1.0, "< 1."),
        ("< +Inf", "<", math.inf, "< +Inf"),
    ],
)
def test_parse(text: str, op: str, threshold: float, normalized: str) -> None:
    cond = parse_condition(text)
    assert (cond.op, cond.threshold) == (op, threshold)
    assert cond.normalized() == normalized


@pytest.mark.parametrize(
    "bad", ["", "0.01", "< ", "=< 1", "<< 1", "= 1", "< 1; import os", "< __import__('os')", "< 1 2", "< ٣"]
)
def test_anything_else_is_refused(bad: str) -> None:
    with pytest.raises(ConditionError, match="invalid condition"):
        parse_condition(bad)


@pytest.mark.parametrize(
    ("condition", "value", "expected"),
    [
        ("> 0", 0.1, True),
        ("> 0", 0.0, False),
        (">= 3", 3.0, True),
        ("< 0.01", 0.001, True),
        ("<= 1e-3", 0.01, False),
        ("== 1", 1.0, True),
        ("!= 0", 1.0, True),
        ("!= 0", 0.0, False),
        ("< Inf", 1e300, True),
    ],
)
def test_holds(condition: str, value: float, expected: bool) -> None:
    assert condition_holds(condition, value) is expected


@pytest.mark.parametrize("condition", ["> 0", "< 0", ">= 0", "<= 0", "== 0", "!= 0", "!= 1", "< Inf"])
def test_nan_satisfies_no_condition(condition: str) -> None:
    assert condition_holds(condition, NAN) is False


def test_str_is_for_messages() -> None:
    assert str(Condition("<", 0.01, "1e-2")) == "< 0.01"
