"""The condition grammar of playbook checks (`< 0.01`, `>= 3`, `!= 0`): one parser, one evaluator.

The playbook schema validates and normalises conditions with it, and the Prometheus connector
evaluates query results with it, so both always agree on what a condition means. A condition is
parsed, never evaluated as code: an operator followed by a number, nothing else.

One NaN rule: NaN satisfies no condition, not even `!= 0`. Prometheus answers NaN for a 0/0
ratio when there is no traffic, and "no traffic" must never pass a check that a fix worked.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

#: An operator, then a decimal number (or Prometheus' `Inf`, `+Inf`, `-Inf`), spaces allowed around.
_CONDITION = re.compile(
    r"^\s*(?P<op><=|>=|==|!=|<|>)\s*"
    r"(?P<num>[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?Inf)\s*$"
)
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


class ConditionError(ValueError):
    """Not a condition: the text is not an operator followed by a number."""


@dataclass(frozen=True)
class Condition:
    """`value <op> threshold`, e.g. `< 0.01`; `number` is the threshold as written."""

    op: str
    threshold: float
    number: str

    def holds(self, value: float) -> bool:
        """Whether `value` satisfies the condition; NaN never does (see the module docstring)."""
        return not math.isnan(value) and _OPERATORS[self.op](value, self.threshold)

    def normalized(self) -> str:
        """The one spelling kept in plans: the operator, one space, the number as written."""
        return f"{self.op} {self.number}"

    def __str__(self) -> str:
        return f"{self.op} {self.threshold:g}"


def parse_condition(text: str) -> Condition:
    """Parse `<op> <number>`; raises ConditionError for anything else."""
    m = _CONDITION.fullmatch(text)
    if m is None:
        raise ConditionError(
            f"invalid condition {text!r}: expected an operator (< <= > >= == !=) and a number"
        )
    number = m.group("num")
    return Condition(m.group("op"), float(number), number)


def condition_holds(condition: str, value: float) -> bool:
    """Evaluate `condition` against one value; NaN satisfies nothing."""
    return parse_condition(condition).holds(value)
