"""A static upper bound on what one evaluation of a CEL expression can cost.

CEL has no loops, but its comprehension macros (`all`, `exists`, `exists_one`, `map`,
`filter`) run their body once per element, so nesting them multiplies: eight levels
over a ten-element literal are 10^8 steps, 52 seconds, and the `cel` package holds the
GIL while it evaluates and cannot be interrupted. So before an expression is evaluated
at all (the compile-time probe included), `bound` parses it and computes, for every
node, an upper bound on the work it can do and on the value it yields (`Shape`: how
many elements, how heavy), and refuses it if the bound passes `MAX_EXPRESSION_UNITS`,
if comprehensions nest more than `MAX_NESTING` deep, or if a literal list or map has
more than `MAX_LITERAL_ITEMS` entries.

A parser rather than patterns, because a bound must not be dodged by spelling:
whitespace, parentheses, comments, concatenations (`l + l + l`), ranges computed by
`map`/`filter` or read from an attribute are all just nodes here. Values read from
`event` are bounded by the attribute limits in `limits.py`. Whatever this parser does
not understand is refused, never guessed.

A unit is roughly the time to copy one value here (30–50 ns, see docs/rules.md); the
costs below are calibrated on the `cel` package by bench/tools/expression_worst_case.py.
`matches` is refused outright: it compiles its regular expression at every call, which
for a 100-character pattern took 13 ms, whatever the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from service.rules import limits

MAX_EXPRESSION_UNITS: Final = 100_000
MAX_RULE_SET_UNITS: Final = 1_000_000
MAX_NESTING: Final = 2
MAX_LITERAL_ITEMS: Final = 64
MAX_PARSE_DEPTH: Final = 32

ITERATION: Final = 20  # one pass of a comprehension (250–600 ns measured)
ACCESS: Final = 6  # a field or index lookup, before copying what it finds
CALL: Final = 4
ENTRY: Final = 4  # one entry of a list or map literal
EVALUATION: Final = 20  # calling into the program at all
CHOICE: Final = 8  # a ternary, more than its parts (measured)


class CostInvalid(ValueError):
    """An expression whose cost is beyond the bounds, or cannot be bounded."""


@dataclass(frozen=True, slots=True)
class Shape:
    """An upper bound on a value: `items` elements (entries of a map; 0 for a scalar),
    `weight` units to copy or compare it whole, `element` what iterating it yields
    (a map's keys), `member` what a field or an index yields, and `fields` the exact
    bounds of fields known by name (`member.score`, `event.occurred_at`)."""

    items: int
    weight: int
    element: Shape | None = None
    member: Shape | None = None
    fields: dict[str, Shape] | None = None


@dataclass(frozen=True, slots=True)
class Cost:
    units: int
    shape: Shape


SCALAR: Final = Shape(items=0, weight=1)
# Reading a timestamp converts a Python datetime with its offset: ~1.5 µs (measured).
TIMESTAMP: Final = Shape(items=0, weight=30)
_ID = Shape(items=0, weight=limits.string_weight(64))


def _dynamic(depth: int) -> Shape:
    """Any value an attribute can hold `depth` containers deep, by `limits`."""
    if depth == 0:
        return Shape(items=0, weight=limits.string_weight(limits.MAX_STRING_CHARS))
    inner = _dynamic(depth - 1)
    items = max(limits.MAX_LIST_ITEMS, limits.MAX_MAP_ENTRIES)
    return Shape(items=items, weight=limits.VALUE_WEIGHT, element=inner, member=inner)


def _record(fields: dict[str, Shape], rest: Shape | None = None) -> Shape:
    known = list(fields.values()) + ([rest] if rest else [])
    member = known[0]
    for shape in known[1:]:
        member = join(member, shape)
    weight = sum(2 + s.weight for s in fields.values()) + (rest.weight if rest else 0)
    key = Shape(items=0, weight=limits.string_weight(limits.MAX_STRING_CHARS))
    count = len(fields) + (limits.MAX_ATTRIBUTES if rest else 0)
    return Shape(items=count, weight=weight, element=key, member=member, fields=fields)


def roots(member_fields: tuple[str, ...]) -> dict[str, Shape]:
    """The shapes of `event`, `member` and `period`."""
    member = {name: (_ID if name == "id" else SCALAR) for name in member_fields}
    period = {"kind": SCALAR, "key": SCALAR, "start": TIMESTAMP, "end": TIMESTAMP}
    event = {"id": _ID, "type": _ID, "occurred_at": TIMESTAMP}
    return {
        "event": _record(event, _dynamic(limits.MAX_DEPTH)),
        "member": _record(member),
        "period": _record(period),
    }


def join(a: Shape | None, b: Shape | None) -> Shape:
    """A bound on values bounded by `a` or by `b`."""
    if a is None or b is None:
        return a or b or SCALAR
    if a is b:
        return a
    element = join(a.element, b.element) if a.element or b.element else None
    member = join(a.member, b.member) if a.member or b.member else None
    return Shape(max(a.items, b.items), max(a.weight, b.weight), element, member)


# --- what each operation costs, given what its operands cost ------------------------


def binary(op: str, a: Cost, b: Cost) -> Cost:
    """`a op b`. Comparisons stop at the smaller side; arithmetic on a wrong type
    formats both operands into its error message, so it is charged their weight."""
    units = a.units + b.units + 2
    if op in ("&&", "||"):
        return Cost(units, SCALAR)
    if op == "in":
        return Cost(units + b.shape.items + b.shape.weight + a.shape.weight, SCALAR)
    if op in ("==", "!=", "<", "<=", ">", ">="):
        return Cost(units + min(a.shape.weight, b.shape.weight), SCALAR)
    units += a.shape.weight + b.shape.weight
    if op != "+":
        return Cost(units, SCALAR)
    x, y = a.shape, b.shape
    element = join(x.element, y.element) if x.element or y.element else None
    return Cost(units, Shape(x.items + y.items, x.weight + y.weight, element, element))


def unary(a: Cost) -> Cost:
    return Cost(a.units + 1 + a.shape.weight, SCALAR)


def ternary(condition: Cost, yes: Cost, no: Cost) -> Cost:
    units = condition.units + CHOICE + max(yes.units, no.units)
    return Cost(units, join(yes.shape, no.shape))


def access(receiver: Cost, name: str | None, key: Cost | None = None) -> Cost:
    """`receiver.name` or `receiver[key]`: the lookup copies what it finds."""
    shape = receiver.shape
    found = (shape.fields or {}).get(name) if name else None
    found = found or shape.member or SCALAR
    units = receiver.units + (key.units if key else 0) + ACCESS + found.weight
    return Cost(units, found)


def literal_list(items: list[Cost]) -> Cost:
    _check_literal(len(items))
    element: Shape | None = None
    for item in items:
        element = join(element, item.shape)
    units = 2 + sum(i.units + ENTRY for i in items)
    weight = 1 + sum(i.shape.weight for i in items)
    return Cost(units, Shape(len(items), weight, element, element))


def literal_map(entries: list[tuple[Cost, Cost]]) -> Cost:
    _check_literal(len(entries))
    keys: Shape | None = None
    values: Shape | None = None
    for key, value in entries:
        keys, values = join(keys, key.shape), join(values, value.shape)
    units = 2 + sum(k.units + v.units + 2 * ENTRY for k, v in entries)
    weight = 1 + sum(k.shape.weight + v.shape.weight for k, v in entries)
    return Cost(units, Shape(len(entries), weight, keys, values))


def _check_literal(count: int) -> None:
    if count > MAX_LITERAL_ITEMS:
        raise CostInvalid(f"a list or map literal has at most {MAX_LITERAL_ITEMS} entries")


def comprehension(macro: str, source: Cost, bodies: list[Cost]) -> Cost:
    """`source.macro(x, body…)`: the body runs once per element; `map` and `filter`
    also copy the list they have built so far at every step (measured: quadratic)."""
    n = source.shape.items
    units = source.units + n * (ITERATION + sum(b.units for b in bodies))
    if macro not in ("map", "filter"):
        return Cost(units, SCALAR)
    element = source.shape.element or SCALAR
    if macro == "map":
        element = bodies[-1].shape
        built = n * (1 + element.weight)
    else:
        built = min(n * (1 + element.weight), n + source.shape.weight)
    return Cost(units + n * built, Shape(n, 1 + built, element, element))


def call(name: str, receiver: Cost | None, args: list[Cost]) -> Cost:
    """One of `expressions.FUNCTIONS` (the only ones that get this far): each is
    linear in the weight of what it reads."""
    operands = ([receiver] if receiver else []) + args
    units = CALL + sum(o.units + o.shape.weight for o in operands)
    if name == "matches":
        raise CostInvalid(
            "matches() compiles its regular expression at every evaluation, which can"
            " take tens of milliseconds: use contains(), startsWith() or endsWith()"
        )
    if name == "dyn" and len(operands) == 1:
        return Cost(units, operands[0].shape)
    if name == "string" and len(operands) == 1:
        weight = max(operands[0].shape.weight, limits.string_weight(32))
        return Cost(units, Shape(items=0, weight=weight))
    return Cost(units, SCALAR)  # the others return numbers, bools, timestamps, types
