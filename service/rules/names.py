"""The names a rule expression may use, and which fields of each variable it reads.

Checked statically when an expression is compiled (`expressions.compile_expression`):
the variables `event`, `member` and `period` (no `event` for a scheduled rule), the
fields `member` and `period` have, the standard functions the `cel` package implements
natively (never the opt-in Python `cel.stdlib`), and comprehension variables that do
not hide a root variable. What an expression reads decides what each evaluation
converts to CEL, which is most of its cost.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import cel

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
ROOTS: Final = frozenset({"event", "member", "period"})


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

# Which fields of each root variable an expression reads; None means it may read any
# (it indexes the map or passes it whole). Evaluation converts only these to CEL.
Needs = Mapping[str, frozenset[str] | None]


def without_strings(source: str) -> str:
    """`source` with every string literal emptied, so names inside strings do not count."""
    return _STRING_LITERAL.sub("''", source)


def problem(code: str, program: cel.Program, scheduled: bool) -> str | None:
    """What is wrong with the names of `code` (the source without strings), or None."""
    roots = ROOTS - {"event"} if scheduled else ROOTS
    bound = set(_BOUND.findall(code))
    if bound & ROOTS:
        return "name comprehension variables other than event, member, period"
    unknown = sorted(set(program.variables()) - roots - bound)
    if "event" in unknown and scheduled:
        return "a scheduled rule has no `event`: use `member` and `period`"
    if unknown:
        return f"unknown variable {unknown[0]!r}: use {', '.join(sorted(roots))}"
    functions = sorted(set(program.functions()) - _OPERATORS - FUNCTIONS)
    if functions:
        return f"unknown function {functions[0]!r}"
    for root, field in _FIELD_ACCESS.findall(code):
        if root == "event":
            continue
        known = MEMBER_FIELDS if root == "member" else PERIOD_FIELDS
        if field not in known:
            return f"`{root}` has no field {field!r}: it has {', '.join(known)}"
    return None


def needs(code: str, program: cel.Program) -> Needs:
    """The fields of each root variable that `code` reads (None: possibly all)."""
    found: dict[str, frozenset[str] | None] = {}
    for root in set(program.variables()) & ROOTS:
        fields = [f for r, f in _FIELD_ACCESS.findall(code) if r == root]
        mentions = [r for r in _ROOT.findall(code) if r == root]
        found[root] = frozenset(fields) if len(fields) == len(mentions) else None
    return found
