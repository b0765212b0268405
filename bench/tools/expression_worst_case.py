"""The most expensive expressions and rule set the expression budget accepts, timed on
the real `cel` package, in this process, with nothing else running:

    uv run python -m bench.tools.expression_worst_case

For each family of costly expressions (nested comprehensions over literals, long
ranges built by concatenation, `map`/`filter` copies, heavy attributes read in a
loop, timestamps, ternaries …) it finds the largest instance the budget accepts,
and prints its bound in units, the best time of one evaluation, and nanoseconds per
unit: the calibration of `service/rules/cost.py`. Then it builds the worst accepted
rule set (`worst_rule_set`: as many rules on one event type as the budget allows, the
costliest family in each `when` and amount, events with attributes at their limits)
and times what the engine spends on one event, and what validating the document
(every probe included) takes. `tests/faults/test_expression_budget.py` publishes the
same rule set.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from service.rules import cost, limits
from service.rules.engine import EventInput, MemberStats, compile_rule_set, evaluate
from service.rules.expressions import (
    Bindings,
    ExpressionInvalid,
    compile_expression,
    evaluate_condition,
)
from service.rules.model import MAX_DOCUMENT_BYTES, MAX_RULES, RuleSet, rule_set_from_builtins

EVENT_TYPE = "budget.worst"
AT = datetime(2026, 11, 20, 2, tzinfo=UTC)


def literal(k: int) -> str:
    return "[" + ",".join(str(i) for i in range(k)) + "]"


def ints(n: int = limits.MAX_LIST_ITEMS) -> list[int]:
    return list(range(n))


@dataclass(frozen=True)
class Family:
    """Costly expressions `source(k)`, worse as `k` grows, and the attributes they cost
    most on (within the limits)."""

    name: str
    source: Callable[[int], str]
    attributes: dict[str, Any]


def nest(body: str, macro: str = "exists") -> Callable[[int], str]:
    """Two comprehensions over `k`-element literals around `body` (in `a` and `b`)."""
    return lambda k: f"{literal(k)}.{macro}(a, {literal(k)}.{macro}(b, {body}))"


def loop(body: str, over: str = "event.xs") -> Callable[[int], str]:
    """One comprehension over `over` around `body` (in `x`, with `k` in it)."""
    return lambda k: f"{over}.exists(x, {body.format(k=k)})"


XS = {"xs": ints()}
SS = {"ss": ["a" * 40] * 100}
FAMILIES = (
    Family("nest, ternary", nest("b < a ? a < 0 : b < 0"), {}),
    Family("nest, compare", nest("a + b < 0"), {}),
    Family("nest, negations", nest("!!!!(a > -1)", "all"), {}),
    Family("nest, member", nest("member.score < -a"), {}),
    Family("nest, timestamps", nest("period.start > period.end"), {}),
    Family("nest, literals", nest("[a, b, a].size() < 0"), {}),
    Family("nest, map literal", nest("{'a': b}.size() < 0"), {}),
    Family("nest, exists_one", nest("b == a", "exists_one"), {}),
    Family("nest, attribute", lambda k: f"{literal(k)}.exists(a, event.xs.exists(b, b < -a))", XS),
    Family(
        "concatenation", lambda k: "(" + " + ".join(["event.xs"] * k) + ").exists(x, x < 0)", XS
    ),
    Family("map copies", lambda k: f"event.xs.map(x, x * {k}).filter(y, y < 0).size() > 0", XS),
    Family("filter copies", lambda k: f"event.ss.filter(s, s.size() > {k}).size() > 0", SS),
    Family("timestamps", loop("event.occurred_at.getDayOfYear() < {k} - 100"), XS),
    Family("heavy reads", loop("event.ys.size() < {k} - 100"), XS | {"ys": ints()}),
    Family("strings", loop("event.s.contains('b{k}')"), XS | {"s": "a" * 1000}),
    Family(
        "keys", lambda k: f"event.exists(key, event[key] == {k})", {f"k{i}": i for i in range(64)}
    ),
)


def largest(family: Family, cap: int = cost.MAX_EXPRESSION_UNITS) -> str | None:
    """The family's costliest accepted instance within `cap` units, `k` up to the
    literal limit."""
    low, high, best = 1, cost.MAX_LITERAL_ITEMS, None
    while low <= high:
        k = (low + high) // 2
        try:
            units = compile_expression(family.source(k), "when").units
        except ExpressionInvalid:
            units = cap + 1
        if units > cap:
            high = k - 1
        else:
            best, low = family.source(k), k + 1
    return best


def event_map(attributes: dict[str, Any]) -> dict[str, Any]:
    return attributes | {"id": "e1", "type": EVENT_TYPE, "occurred_at": AT}


def best_time(run: Callable[[], object], budget_s: float = 0.3) -> float:
    """The best of five timings of `run`, each averaged over enough calls."""
    started = time.perf_counter()
    run()
    calls = max(1, int(budget_s / 5 / max(time.perf_counter() - started, 1e-7)))
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            run()
        best = min(best, (time.perf_counter() - started) / calls)
    return best


def time_family(family: Family) -> tuple[str, int, float] | None:
    """The largest instance, its bound, and the seconds one evaluation takes."""
    source = largest(family)
    if source is None:
        return None
    assert limits.problem(family.attributes) is None, family.name
    expression = compile_expression(source, "when")
    variables = {"event": event_map(family.attributes), "member": {"score": 1, "id": "m"}}
    variables["period"] = {"kind": "month", "key": "2026-11", "start": AT, "end": AT}

    def run() -> object:
        try:
            return evaluate_condition(expression, Bindings(variables))
        except Exception as exc:
            return exc

    return source, expression.units, best_time(run)


def worst_rule_set(family: Family, rules: int = MAX_RULES) -> dict[str, Any] | None:
    """`rules` rules on one event type (fewer if the budget or the document size says
    so), each evaluating the family's costliest instance that lets that many fit twice:
    in its condition, which is then true, and in its amount, which is then 0 (so the
    event costs the most evaluation and posts nothing)."""
    cap = min(cost.MAX_EXPRESSION_UNITS, cost.MAX_RULE_SET_UNITS // (2 * rules)) - 60
    source = largest(family, cap)
    if source is None:
        return None  # not even its smallest instance is cheap enough for that many
    when, amount = f"({source}) || true", f"({source}) ? 0 : 0"
    per_rule = compile_expression(when, "when").units
    per_rule += compile_expression(amount, "amount").units
    count = min(rules, cost.MAX_RULE_SET_UNITS // per_rule)
    count = min(count, MAX_DOCUMENT_BYTES // (len(when) + len(amount) + 120))
    rule = {"on": EVENT_TYPE, "when": when, "award": amount, "reason": family.name}
    return {"rules": [rule | {"id": f"w{i}"} for i in range(count)]}


def worst_event(family: Family, event_id: str = "e1", member: str = "m0") -> EventInput:
    return EventInput(
        id=event_id, type=EVENT_TYPE, member_id=member, occurred_at=AT, attributes=family.attributes
    )


def time_rule_set(family: Family, rules: int) -> tuple[int, float, float] | None:
    """Rules in the worst rule set, seconds to validate it, seconds per event."""
    document = worst_rule_set(family, rules)
    if document is None:
        return None
    started = time.perf_counter()
    rule_set: RuleSet = rule_set_from_builtins(document)
    validated_s = time.perf_counter() - started
    compiled = compile_rule_set(rule_set, 1)
    stats = MemberStats(member_id="m0", score=100)
    event = worst_event(family)
    per_event = best_time(lambda: evaluate(compiled, event, stats, "Asia/Shanghai"), 1.0)
    return len(rule_set.rules), validated_s, per_event


def family(name: str) -> Family:
    return next(f for f in FAMILIES if f.name == name)


def time_families(only: str | None) -> list[tuple[float, Family, str]]:
    """Prints each family's costliest accepted instance; returns them, slowest first."""
    print(f"{'family':<18} {'units':>8} {'µs':>9} {'ns/unit':>8}  largest accepted instance")
    timed: list[tuple[float, Family, str]] = []
    for one in FAMILIES:
        if only not in (None, one.name):
            continue
        result = time_family(one)
        if result is None:
            print(f"{one.name:<18} refused at every size")
            continue
        source, units, seconds = result
        figures = f"{units:>8,} {seconds * 1e6:>9.1f} {seconds * 1e9 / units:>8.1f}"
        print(f"{one.name:<18} {figures}  {source[:60]}")
        timed.append((seconds, one, source))
    return sorted(timed, key=lambda t: -t[0])


def time_rule_sets(families: list[Family]) -> None:
    """Prints what the worst rule sets of `families` cost to validate and per event."""
    worst = (0.0, "")
    for costly in families:
        for rules in (1, 20, MAX_RULES):
            timed = time_rule_set(costly, rules)
            if timed is None:
                continue
            count, validated_s, per_event = timed
            line = f"{count:>3} rules of {costly.name!r}"
            print(
                f"{line:<34} validated (probes included) in {validated_s * 1e3:5.0f} ms,"
                f" {per_event * 1e3:5.1f} ms of evaluation per event"
            )
            worst = max(worst, (per_event, line))
    print(f"\nworst rule set: {worst[1]}, {worst[0] * 1e3:.1f} ms per event")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="time this family alone (its name, e.g. 'nest, member')")
    timed = time_families(parser.parse_args().only)
    print(f"\nworst expression: {timed[0][1].name}, {timed[0][0] * 1e3:.2f} ms per evaluation")
    time_rule_sets([f for _, f, _ in timed[:6]])


if __name__ == "__main__":
    main()
