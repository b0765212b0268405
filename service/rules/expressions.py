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
what it can statically — length, syntax, root variables, functions — and then runs a
*probe*: one evaluation against typical values, which catches results of the wrong
type (`when` that is not a bool, an amount that is a string) and ill-typed arithmetic
on the fixed-type variables. What depends on an event's attributes can only fail at
evaluation time; that is an `EvaluationFailed` for that rule alone, never a crash.
"""

from __future__ import annotations

import math
import re
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

Role = Literal["when", "amount"]

MAX_EXPRESSION_CHARS: Final = 500

# The statistics every `member` map carries: the caller supplies the numbers (see
# engine.MemberStats); "period" is the rule's period, "this" and "last" are relative
# to the instant of evaluation.
MEMBER_FIELDS: Final = (
    "id",
    "score",
    "points_earned_this_period",
    "points_deducted_this_period",
    "awards_this_period",
    "deductions_this_period",
    "points_earned_last_period",
    "points_deducted_last_period",
    "awards_last_period",
    "deductions_last_period",
    "rule_points_this_period",
    "rule_times_this_period",
    "rule_points_last_period",
    "rule_times_last_period",
)
PERIOD_FIELDS: Final = ("kind", "key", "start", "end")
EVENT_RESERVED: Final = ("id", "type", "occurred_at")


# CEL operators as this binding names them, and the standard functions it implements
# natively. Anything else (the opt-in Python `cel.stdlib`, unknown names) is refused.
def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_OPERATORS: Final = _words(
    "!_ -_ @in @not_strictly_false _%_ _&&_ _||_ _+_ _-_ _*_ _/_ _==_ _!=_ _<_ _<=_ _>_ _>=_ "
    "_?_:_ _[_]"
)
FUNCTIONS: Final = _words(
    "size int uint double string dyn type timestamp duration contains startsWith endsWith "
    "matches getFullYear getMonth getDate getDayOfMonth getDayOfWeek getDayOfYear getHours "
    "getMinutes getSeconds getMilliseconds"
)
_STRING_LITERAL = re.compile(
    r"""(?s)'''.*?'''|\"\"\".*?\"\"\"|'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*\""""
)
_FIELD_ACCESS = re.compile(r"(?<![\w.])(event|member|period)\s*\.\s*([A-Za-z_]\w*)")
_ROOT = re.compile(r"(?<![\w.])(event|member|period)\b")
_BOUND = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")


class ExpressionInvalid(ValueError):
    """An expression refused when a rule set is validated; the message says why."""


class EvaluationFailed(Exception):
    """An expression that could not be evaluated for one event; the message says why."""


# Which fields of each root variable an expression reads; None means it may read any
# (it indexes the map or passes it whole). Evaluation converts only these to CEL, which
# is most of the cost of an evaluation.
Needs = Mapping[str, frozenset[str] | None]


class Expression:
    """A compiled expression, what it is for and what it reads. Immutable; share it."""

    __slots__ = ("needs", "program", "role", "source")

    def __init__(self, source: str, role: Role, program: cel.Program, needs: Needs) -> None:
        self.source = source
        self.role = role
        self.program = program
        self.needs = needs

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
    source: str, role: Role, *, scheduled: bool = False, event_type: str = "probe"
) -> Expression:
    """Compiles and checks one expression; raises `ExpressionInvalid` saying why."""
    if not source.strip():
        raise ExpressionInvalid("an expression must not be empty")
    if len(source) > MAX_EXPRESSION_CHARS:
        raise ExpressionInvalid(f"an expression has at most {MAX_EXPRESSION_CHARS} characters")
    try:
        program = cel.compile(source)
    except Exception as exc:
        raise ExpressionInvalid(_syntax_message(exc)) from None
    code = _STRING_LITERAL.sub("''", source)
    _check_names(code, program, scheduled)
    expression = Expression(source, role, program, _needs(code, program))
    _probe(expression, scheduled, event_type)
    return expression


def _syntax_message(exc: Exception) -> str:
    text = str(exc)
    first = text.split("ERROR: <input>:", 1)[-1].splitlines()[0].strip()
    return f"not a valid CEL expression: {first[:200]}"


def _check_names(code: str, program: cel.Program, scheduled: bool) -> None:
    """Checks variables, functions and fields; `code` is the source without strings."""
    roots = {"member", "period"} if scheduled else {"event", "member", "period"}
    bound = set(_BOUND.findall(code))
    if bound & {"event", "member", "period"}:
        raise ExpressionInvalid("name comprehension variables other than event, member, period")
    unknown = sorted(set(program.variables()) - roots - bound)
    if "event" in unknown and scheduled:
        raise ExpressionInvalid("a scheduled rule has no `event`: use `member` and `period`")
    if unknown:
        raise ExpressionInvalid(f"unknown variable {unknown[0]!r}: use {', '.join(sorted(roots))}")
    functions = sorted(set(program.functions()) - _OPERATORS - FUNCTIONS)
    if functions:
        raise ExpressionInvalid(f"unknown function {functions[0]!r}")
    for root, field in _FIELD_ACCESS.findall(code):
        if root == "event":
            continue
        known = MEMBER_FIELDS if root == "member" else PERIOD_FIELDS
        if field not in known:
            raise ExpressionInvalid(f"`{root}` has no field {field!r}: it has {', '.join(known)}")


def _needs(code: str, program: cel.Program) -> Needs:
    needs: dict[str, frozenset[str] | None] = {}
    for root in set(program.variables()) & {"event", "member", "period"}:
        fields = [f for r, f in _FIELD_ACCESS.findall(code) if r == root]
        mentions = [r for r in _ROOT.findall(code) if r == root]
        needs[root] = frozenset(fields) if len(fields) == len(mentions) else None
    return needs


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
