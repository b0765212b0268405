"""Rule expressions: Google CEL, compiled once, evaluated many times, never Python `eval`.

A rule's `when` condition and a computed `award`/`deduct` amount are CEL expressions
(the Rust-backed `common-expression-language` package: over 100,000 evaluations a
second, no loops, no side effects, no access to Python objects). Three variables exist:

- `event`  — the event's attributes plus `id`, `type` and `occurred_at` (a CEL
  timestamp carrying the community's UTC offset, so `getHours()`, `getDayOfWeek()`
  … are local time). The three reserved names win over attributes of the same name.
- `member` — the statistics in `MEMBER_FIELDS` (all integers except `id`).
- `period` — `kind` ("day" | "week" | "month" | "year"), `key` ("2026-11",
  "2026-W47", …), `start` and `end` (timestamps; `start <= t < end`).
  Scheduled rules have no `event`.

CEL is dynamically typed here (this binding has no type checker), so compiling checks
what it can statically — length, syntax, root variables, functions (`names.py`), and
an upper bound on what one evaluation can cost (`cost.py`, `bound.py`: the `cel`
package holds the GIL and cannot be interrupted, so nothing is evaluated before the
bound is known) — and then runs a *probe*: one evaluation against typical values,
which catches results of the wrong type (`when` that is not a bool, an amount that is
a string) and ill-typed arithmetic on the fixed-type variables. What depends on an
event's attributes can only fail at evaluation time; that is an `EvaluationFailed`
for that rule alone, never a crash.
"""

from __future__ import annotations

import math
import sys
import types
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Final, Literal

# `cel/__init__.py` imports the package's interactive CLI (typer, rich, prompt_toolkit),
# which costs ~2 s per process; the service never uses it. An empty placeholder for
# `cel.cli` keeps that import out (~0.1 s instead). Harmless if `cel` is already loaded.
sys.modules.setdefault("cel.cli", types.ModuleType("cel.cli"))
import cel  # noqa: E402

from service.ledger.model import MAX_AMOUNT  # noqa: E402
from service.rules import bound, cost, names  # noqa: E402
from service.rules.names import EVENT_RESERVED as EVENT_RESERVED  # noqa: E402
from service.rules.names import FUNCTIONS as FUNCTIONS  # noqa: E402
from service.rules.names import MEMBER_FIELDS as MEMBER_FIELDS  # noqa: E402
from service.rules.names import PERIOD_FIELDS as PERIOD_FIELDS  # noqa: E402
from service.rules.names import Needs as Needs  # noqa: E402

Role = Literal["when", "amount"]

MAX_EXPRESSION_CHARS: Final = 500


class ExpressionInvalid(ValueError):
    """An expression refused when a rule set is validated; the message says why."""


class EvaluationFailed(Exception):
    """An expression that could not be evaluated for one event; the message says why."""


class Expression:
    """A compiled expression, what it is for, what it reads and the most one evaluation
    can cost (`units`, see cost.py; 0 when it was not bounded). Immutable; share it."""

    __slots__ = ("needs", "program", "role", "source", "units")

    def __init__(
        self, source: str, role: Role, program: cel.Program, needs: Needs, units: int = 0
    ) -> None:
        self.source = source
        self.role = role
        self.program = program
        self.needs = needs
        self.units = units

    def __repr__(self) -> str:
        return f"Expression({self.source!r}, role={self.role!r})"


class Bindings:
    """The variables of one evaluation, converted to CEL once for a rule's expressions.

    A value CEL cannot hold (an integer beyond 64 bits) makes every evaluation with
    these bindings fail with `EvaluationFailed`, not the constructor.
    """

    __slots__ = ("context", "error")

    def __init__(self, variables: Mapping[str, Any]) -> None:
        self.context: cel.Context | None = None
        self.error: str | None = None
        try:
            self.context = cel.Context(dict(variables))
        except Exception as exc:
            self.error = f"a value cannot be used in an expression: {explain(exc)}"


def merge_needs(*needs: Needs) -> dict[str, frozenset[str] | None]:
    """What several expressions read together."""
    merged: dict[str, frozenset[str] | None] = {}
    for need in needs:
        for root, fields in need.items():
            known = merged.get(root, frozenset())
            merged[root] = None if fields is None or known is None else known | fields
    return merged


def select(variables: Mapping[str, Any], fields: frozenset[str] | None) -> Mapping[str, Any]:
    """The entries of one root variable an expression needs (all when `fields` is None)."""
    if fields is None:
        return variables
    return {name: variables[name] for name in fields if name in variables}


def compile_expression(
    source: str,
    role: Role,
    *,
    scheduled: bool = False,
    event_type: str = "probe",
    checked: bool = False,
) -> Expression:
    """Compiles and checks one expression; raises `ExpressionInvalid` saying why.

    A new expression (a rule set uploaded, a simulation draft) has its static cost
    bound checked before anything evaluates it, then the probe. A `checked` one
    belongs to a rule set already validated (just now, or when it was published:
    the engine's compile, a stored version): it is neither bounded nor probed
    again, so that no process evaluates anything while loading rules, even a
    version stored before the bound existed.
    """
    if not source.strip():
        raise ExpressionInvalid("an expression must not be empty")
    if len(source) > MAX_EXPRESSION_CHARS:
        raise ExpressionInvalid(f"an expression has at most {MAX_EXPRESSION_CHARS} characters")
    try:
        program = cel.compile(source)
    except Exception as exc:
        raise ExpressionInvalid(_syntax_message(exc)) from None
    code = names.without_strings(source)
    problem = names.problem(code, program, scheduled)
    if problem is not None:
        raise ExpressionInvalid(problem)
    units = 0 if checked else _bound(source)
    expression = Expression(source, role, program, names.needs(code, program), units)
    if not checked:
        _probe(expression, scheduled, event_type)
    return expression


_ROOT_SHAPES: Final = cost.roots(MEMBER_FIELDS)


def _bound(source: str) -> int:
    try:
        return bound.bound(source, _ROOT_SHAPES)
    except cost.CostInvalid as exc:
        raise ExpressionInvalid(str(exc)) from None


def _syntax_message(exc: Exception) -> str:
    text = str(exc)
    first = text.split("ERROR: <input>:", 1)[-1].splitlines()[0].strip()
    return f"not a valid CEL expression: {first[:200]}"


def _probe(expression: Expression, scheduled: bool, event_type: str) -> None:
    """One evaluation on typical values: wrong result types and ill-typed operations."""
    try:
        value = expression.program.execute(_probe_context(scheduled, event_type))
    except (KeyError, ZeroDivisionError, OverflowError, ValueError):
        return  # depends on an event's attributes or a statistic's value: decided later
    except Exception as exc:
        raise ExpressionInvalid(explain(exc)) from None
    try:
        result = _interpret(expression, value)
    except EvaluationFailed as exc:
        raise ExpressionInvalid(str(exc)) from None
    constant = not expression.program.variables()
    if expression.role == "amount" and constant and isinstance(result, int) and result <= 0:
        raise ExpressionInvalid(f"a constant amount must be at least 1, not {result}")


def _probe_context(scheduled: bool, event_type: str) -> dict[str, Any]:
    start = datetime(2026, 11, 1, tzinfo=timezone(timedelta(hours=8)))
    period = {"kind": "month", "key": "2026-11", "start": start, "end": start.replace(month=12)}
    member: dict[str, Any] = dict.fromkeys(MEMBER_FIELDS, 0) | {"id": "probe", "score": 100}
    context: dict[str, Any] = {"member": member, "period": period}
    if not scheduled:
        context["event"] = {"id": "probe", "type": event_type, "occurred_at": start}
    return context


def evaluate_condition(expression: Expression, context: Bindings) -> bool:
    """The value of a `when` condition; raises `EvaluationFailed` saying why not."""
    result = _interpret(expression, _execute(expression, context))
    assert isinstance(result, bool)
    return result


def evaluate_amount(expression: Expression, context: Bindings) -> int:
    """The value of an amount, rounded down to an integer (may be ≤ 0: the caller decides).

    An int is taken as is (CEL's int division already truncates); a double is rounded
    down (floor), so a computed award never exceeds what the formula gives.
    """
    result = _interpret(expression, _execute(expression, context))
    assert isinstance(result, int) and not isinstance(result, bool)
    return result


def _execute(expression: Expression, context: Bindings) -> Any:
    if context.error is not None:
        raise EvaluationFailed(context.error)
    try:
        return expression.program.execute(context.context)
    except Exception as exc:
        raise EvaluationFailed(explain(exc)) from None


def _interpret(expression: Expression, value: object) -> bool | int:
    if expression.role == "when":
        if isinstance(value, bool):
            return value
        raise EvaluationFailed(f"`when` must be true or false, not {_cel_type(value)}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EvaluationFailed(f"an amount must be a number, not {_cel_type(value)}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise EvaluationFailed(f"an amount must be a finite number, not {value}")
        value = math.floor(value)
    if value > MAX_AMOUNT:
        raise EvaluationFailed(f"the amount {value} is above 10^12")
    return value


def _cel_type(value: Any) -> str:
    names = {bool: "a bool", int: "an int", float: "a double", str: "a string"}
    return names.get(type(value), f"a {type(value).__name__}")


def explain(exc: Exception) -> str:
    """A short, caller-facing reason for an evaluation error raised by CEL."""
    if isinstance(exc, KeyError):
        name = exc.args[0] if exc.args else "?"
        return f"no field {name!r} (test for it with has(), e.g. has(event.{name}))"
    if isinstance(exc, ZeroDivisionError):
        return "division by zero"
    if isinstance(exc, OverflowError):
        return "arithmetic overflow"
    text = str(exc)
    if text.startswith(("No such overload", "Unsupported operation")):
        return "operand types do not match (CEL never mixes int and double: use int() or double())"
    if text.startswith("Undefined variable or function"):
        return text.split(".", 1)[0]
    return text.split("\n", 1)[0].split(". Check ", 1)[0][:200]
