"""The limits on event attributes that the cost bound relies on, and the deadline."""

from __future__ import annotations

from typing import Any

import pytest

from service.errors import ValidationFailed
from service.rules import limits
from service.rules.deadline import Deadline
from tests.helpers import FakeClock


def totals(value: Any) -> tuple[int, int]:
    """(values, characters) in `value`, keys included, as the limits count them."""
    if isinstance(value, str):
        return 1, len(value)
    if isinstance(value, list):
        inner = [totals(v) for v in value]
    elif isinstance(value, dict):
        inner = [(totals(v)[0], totals(v)[1] + len(k)) for k, v in value.items()]
    else:
        return 1, 0
    return 1 + sum(v for v, _ in inner), sum(c for _, c in inner)


def at_the_limits() -> dict[str, Any]:
    """Attributes at every limit at once: 256 values, 4,096 characters, 4 deep."""
    deep: Any = 1
    for _ in range(limits.MAX_DEPTH):
        deep = [deep]
    attributes: dict[str, Any] = {
        "xs": list(range(limits.MAX_LIST_ITEMS)),
        "m": {f"k{i:02}": i for i in range(limits.MAX_MAP_ENTRIES)},
        "deep": deep,
        "s": "a" * limits.MAX_STRING_CHARS,
        "t": "b" * limits.MAX_STRING_CHARS,
        "u": "c" * limits.MAX_STRING_CHARS,
    }
    values, chars = totals(attributes)
    attributes["v"] = "d" * (limits.MAX_TOTAL_CHARS - chars - 1 - 4)
    attributes["fill"] = [None] * (limits.MAX_VALUES + 1 - values - 2)
    return attributes


def test_attributes_at_every_limit_pass() -> None:
    attributes = at_the_limits()
    assert totals(attributes) == (1 + limits.MAX_VALUES, limits.MAX_TOTAL_CHARS)
    assert limits.problem(attributes) is None
    attributes["fill"].append(None)
    assert "hold at most 256 values" in (limits.problem(attributes) or "")


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"xs": list(range(10_000))}, "attribute 'xs': a list has at most 100 elements"),
        ({"d": [[[[[1]]]]]}, "attribute 'd': lists and maps nest at most 4 deep"),
        ({"s": "a" * 1001}, "attribute 's': a string or key has at most 1000 characters"),
        ({"m": {"k" * 1001: 1}}, "attribute 'm': a string or key has at most 1000"),
        ({"m": {f"k{i}": 1 for i in range(65)}}, "attribute 'm': a map has at most 64 entries"),
        ({f"a{i}": 1 for i in range(65)}, "an event has at most 64 attributes"),
        ({"a": [[1] * 100] * 3}, "attribute 'a': all attributes together hold at most 256"),
        ({"a": ["x" * 1000] * 5}, "attribute 'a': all attributes together have at most 4096"),
    ],
)
def test_each_limit_names_the_attribute(attributes: dict[str, Any], expected: str) -> None:
    problem = limits.problem(attributes)
    assert problem is not None and problem.startswith(expected), problem


def test_the_deadline_counts_only_evaluation_time() -> None:
    clock = FakeClock()
    deadline = Deadline(limit_s=2.0, clock=clock)
    with deadline.running():
        clock.now += 1.5
        deadline.check()
    clock.now += 60  # waiting on the database does not count
    deadline.check()
    with deadline.running():
        clock.now += 0.4
        deadline.check()
        clock.now += 0.2
        with pytest.raises(ValidationFailed, match="took longer than 2 s to evaluate"):
            deadline.check()
    with pytest.raises(ValidationFailed):
        deadline.check()
