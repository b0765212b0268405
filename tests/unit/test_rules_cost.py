"""The static cost bound of expressions: what it refuses, however spelled, and that
what it accepts really is cheap on the `cel` package.

Issue 12: eight nested `exists` over a ten-element literal (269 characters) took 52 s
on the event loop; seven were accepted at publish (the probe alone ran 2.9 s).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.tools.expression_worst_case import FAMILIES, largest, time_family
from service.errors import ValidationFailed
from service.rules import bound, cost
from service.rules.engine import compile_rule_set
from service.rules.expressions import (
    MEMBER_FIELDS,
    ExpressionInvalid,
    compile_expression,
)
from service.rules.model import parse_rule_set, rule_set_from_builtins

DIGITS = "[0,1,2,3,4,5,6,7,8,9]"
SCHEME = Path(__file__).resolve().parents[2] / "docs" / "examples" / "scheme.yaml"


def nested(levels: int, over: str = DIGITS, macro: str = "exists") -> str:
    """`levels` comprehensions, each inside the previous one's body."""
    source = "a < 0"
    for level in range(levels):
        source = f"{over}.{macro}({chr(ord('a') + level)}, {source})"
    return source


def refusal(source: str, role: str = "when") -> str:
    with pytest.raises(ExpressionInvalid) as info:
        compile_expression(source, role)  # type: ignore[arg-type]
    return str(info.value)


def test_the_eight_level_bomb_is_refused_before_anything_runs() -> None:
    bomb = nested(8)
    assert 260 <= len(bomb) <= 280
    assert "nest at most 2 deep" in refusal(bomb)
    assert "nest at most 2 deep" in refusal(nested(7))


@pytest.mark.parametrize(
    "source",
    [
        nested(3),
        nested(3, macro="all"),
        "[1].exists(a, ([1]).all(b, ((([1])).map(c, c)).size() > 0))",
        "[1]\n  .exists( a ,\n [1] . filter ( b , [1].exists_one(c, c == b) ) == [] )",
        "[1].exists(a, // a comment with .exists(\n [1].exists(b, [1].exists(c, true)))",
        "[1].map(a, [1].map(b, [1].map(c, c)))[0][0][0] > 0",
        "[1].exists(a, [1].exists(b, true) && [1].exists(c, [1].exists(d, true)))",
    ],
)
def test_three_nested_comprehensions_are_refused_however_spelled(source: str) -> None:
    assert "nest at most 2 deep" in refusal(source)


def test_comprehensions_in_strings_or_chained_do_not_count_as_nesting() -> None:
    text = "'[1].exists(a, [1].exists(b, [1].exists(c, true)))' != ''"
    assert compile_expression(text, "when").units < 100
    chained = "[1,2].map(a, a * 2).filter(b, b > 2).exists(c, c == 4)"
    assert compile_expression(chained, "when").units < 1_000


def test_two_small_nested_comprehensions_pass_and_evaluate() -> None:
    expression = compile_expression(nested(2), "when")
    assert expression.units < 5_000
    assert expression.program.execute({}) is False


def test_concatenation_counts_every_element_it_ranges_over() -> None:
    once = compile_expression("event.xs.exists(x, x < 0)", "when").units
    four = "(event.xs + event.xs + (event.xs) + event.xs).exists(x, x < 0)"
    assert compile_expression(four, "when").units > 3.5 * once
    forty = "(" + " + ".join(["event.xs"] * 40) + ").exists(x, x < 0)"
    assert "at most 100,000 are allowed" in refusal(forty)
    square = "(event.xs + event.xs).exists(a, (event.xs + event.xs).exists(b, a < b))"
    assert "its cost is bounded by" in refusal(square)


def test_a_literal_has_at_most_64_entries() -> None:
    big_list = "[" + ",".join(["1"] * 65) + "].size() > 0"
    assert "at most 64 entries" in refusal(big_list)
    big_map = "{" + ",".join(f"{i}: 1" for i in range(65)) + "}.size() > 0"
    assert "at most 64 entries" in refusal(big_map)
    assert compile_expression("[" + ",".join(["1"] * 64) + "].size() > 0", "when")


def test_map_of_map_is_bounded_by_what_it_builds() -> None:
    grid = "event.xs.map(x, event.xs.map(y, x + y)).size() > 0"
    assert "its cost is bounded by" in refusal(grid)
    assert compile_expression("{'a': {'b': {'c': 1}}}.a.b.c == 1", "when").units < 200


def test_matches_is_refused_because_it_compiles_a_regex_per_call() -> None:
    assert "contains(), startsWith() or endsWith()" in refusal("event.plate.matches('^A')")


def test_what_the_parser_does_not_know_is_refused_not_guessed() -> None:
    roots = cost.roots(MEMBER_FIELDS)
    with pytest.raises(cost.CostInvalid, match="cannot be bounded"):
        bound.bound("Point{x: 1}.x == 1", roots)
    with pytest.raises(cost.CostInvalid, match="nests at most 32 deep"):
        bound.bound("(" * 40 + "1" + ")" * 40 + " == 1", roots)


def test_the_examples_of_the_scheme_are_accepted_and_cheap() -> None:
    rule_set = parse_rule_set(SCHEME.read_bytes(), "application/yaml")
    sources = [r.when for r in rule_set.rules if r.when]
    sources += [r.amount for r in rule_set.rules if isinstance(r.amount, str)]
    assert len(sources) >= 6
    for source in sources:
        role = "when" if any(source == r.when for r in rule_set.rules) else "amount"
        assert compile_expression(source, role).units < 2_000, source  # type: ignore[arg-type]


def test_a_rule_set_is_refused_once_its_expressions_pass_the_total() -> None:
    costly = largest(FAMILIES[0])  # about 100,000 units
    assert costly is not None
    first = cost.MAX_RULE_SET_UNITS // compile_expression(costly, "when").units
    rule = {"on": "x", "when": costly, "award": 1, "reason": "r"}
    document = {"rules": [rule | {"id": f"r{i}"} for i in range(30)]}
    with pytest.raises(ValidationFailed) as info:
        rule_set_from_builtins(document)
    assert str(info.value).startswith(f"rules[{first}] (r{first}): the expressions up to")
    assert rule_set_from_builtins(document, stored=True).rules[29].id == "r29"


@pytest.mark.parametrize("family", [f for f in FAMILIES if f.name.startswith("nest")][:4])
def test_the_costliest_accepted_expressions_come_close_to_the_bound(family: object) -> None:
    """Their speed is measured, not asserted here: `python -m
    bench.tools.expression_worst_case` times them (docs/rules.md, "Expression budget")."""
    timed = time_family(family)  # type: ignore[arg-type]
    assert timed is not None
    source, units, _ = timed
    assert units > cost.MAX_EXPRESSION_UNITS * 0.9, source


def test_a_stored_version_is_loaded_without_evaluating_anything() -> None:
    """A version stored before the bound existed may hold a bomb: loading it (every
    process does, to know the rules in force) must evaluate nothing. The probe would
    refuse this `when`, which is a string, so its passing shows the probe did not run."""
    document = {
        "rules": [{"id": "old", "on": "x", "when": "'not a bool'", "award": 1, "reason": "r"}]
    }
    with pytest.raises(ValidationFailed):
        rule_set_from_builtins(document)
    stored = rule_set_from_builtins(document, stored=True)
    assert compile_rule_set(stored, 1).by_event["x"][0].rule.id == "old"
