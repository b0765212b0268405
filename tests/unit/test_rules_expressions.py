"""Rule expressions: what compiles, what each evaluates to, and what is refused.

CEL is safe by construction (no Python objects, no loops, no side effects); these
tests pin down the checks and conventions added on top: known variables and
functions only, bools for conditions, integers (rounded down) for amounts, and an
evaluation error that explains itself instead of crashing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from service.rules.expressions import (
    MAX_EXPRESSION_CHARS,
    Bindings,
    EvaluationFailed,
    Expression,
    ExpressionInvalid,
    compile_expression,
    evaluate_amount,
    evaluate_condition,
    merge_needs,
    select,
)
from service.rules.periods import local_fixed


def when(source: str, **variables: Any) -> bool:
    return evaluate_condition(compile_expression(source, "when"), Bindings(variables))


def amount(source: str, **variables: Any) -> int:
    return evaluate_amount(compile_expression(source, "amount"), Bindings(variables))


def invalid(source: str, role: str = "when", *, scheduled: bool = False) -> str:
    with pytest.raises(ExpressionInvalid) as info:
        compile_expression(source, role, scheduled=scheduled)  # type: ignore[arg-type]
    return str(info.value)


# --- conditions --------------------------------------------------------------------------


def test_conditions_read_event_attributes() -> None:
    assert when("event.days_late <= 0", event={"days_late": 0}) is True
    assert when("event.days_late <= 0", event={"days_late": 3}) is False
    kind = 'event.kind == "flying_lead_charging"'
    assert when(kind, event={"kind": "flying_lead_charging"}) is True


def test_conditions_combine_event_and_member() -> None:
    source = "event.kind == 'sorting' && member.awards_this_period < 3"
    assert when(source, event={"kind": "sorting"}, member={"awards_this_period": 2}) is True
    assert when(source, event={"kind": "sorting"}, member={"awards_this_period": 3}) is False


def test_has_guards_a_missing_attribute() -> None:
    source = "has(event.days_late) && event.days_late <= 0"
    assert when(source, event={}) is False
    assert when(source, event={"days_late": -1}) is True


def test_a_missing_attribute_is_an_evaluation_error_that_says_what_to_do() -> None:
    with pytest.raises(EvaluationFailed, match=r"no field 'days_late' \(test for it with has"):
        when("event.days_late <= 0", event={})


def test_a_condition_on_an_attribute_that_is_not_a_bool_fails_at_evaluation() -> None:
    with pytest.raises(EvaluationFailed, match="must be true or false, not a string"):
        when("event.kind", event={"kind": "x"})


def test_lists_in_attributes_work_with_macros() -> None:
    source = "event.tags.exists(t, t == 'elderly')"
    assert when(source, event={"tags": ["child", "elderly"]}) is True


def test_event_time_is_local_to_the_community() -> None:
    # 16:30 UTC is 00:30 the next day in Shanghai.
    at = local_fixed(datetime(2026, 11, 30, 16, 30, tzinfo=UTC), "Asia/Shanghai")
    event = {"occurred_at": at}
    assert when("event.occurred_at.getHours() == 0", event=event) is True
    assert when("event.occurred_at.getMonth() == 11", event=event) is True  # 0-based: December
    assert when("event.occurred_at > timestamp('2026-11-30T16:00:00Z')", event=event) is True


def test_strings_that_look_like_fields_are_not_checked_as_fields() -> None:
    assert when("event.note == 'member.karma'", event={"note": "member.karma"}) is True


# --- amounts -----------------------------------------------------------------------------


def test_integer_division_truncates() -> None:
    assert amount("event.minutes / 6", event={"minutes": 125}) == 20
    assert amount("event.minutes / 6", event={"minutes": 5}) == 0


def test_doubles_are_rounded_down() -> None:
    assert amount("double(event.minutes) / 6.0", event={"minutes": 125}) == 20
    assert amount("event.rate * 2.0", event={"rate": 1.99}) == 3
    assert amount("event.rate * -1.0", event={"rate": 0.5}) == -1  # floor, not towards zero


def test_negative_amounts_are_returned_for_the_engine_to_clamp() -> None:
    assert amount("event.minutes - 200", event={"minutes": 125}) == -75


def test_mixing_int_and_double_fails_at_evaluation_with_a_hint() -> None:
    with pytest.raises(EvaluationFailed, match=r"CEL never mixes int and double: use int\(\)"):
        amount("event.minutes / 6.0", event={"minutes": 125})


def test_an_amount_that_is_a_bool_or_string_fails() -> None:
    with pytest.raises(EvaluationFailed, match="must be a number, not a bool"):
        amount("event.ok", event={"ok": True})
    with pytest.raises(EvaluationFailed, match="must be a number, not a string"):
        amount("event.points", event={"points": "10"})


def test_amounts_above_the_ledger_limit_fail() -> None:
    with pytest.raises(EvaluationFailed, match="above 10"):
        amount("event.n * 1000", event={"n": 10**12})


def test_infinite_amounts_fail() -> None:
    with pytest.raises(EvaluationFailed, match="finite"):
        amount("event.x / 0.0", event={"x": 1.0})


def test_overflow_and_division_by_zero_fail_cleanly() -> None:
    with pytest.raises(EvaluationFailed, match="overflow"):
        amount("event.n * event.n", event={"n": 2**62})
    with pytest.raises(EvaluationFailed, match="division by zero"):
        amount("100 / event.n", event={"n": 0})


# --- what compiling refuses -------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("__import__('os')", "unknown function '__import__'"),
        ("open('/etc/passwd') == ''", "unknown function 'open'"),
        ("event.x.y()", "unknown function 'y'"),
        ("event.name.lowerAscii() == 'a'", "unknown function 'lowerAscii'"),
        ("os.system('ls') == 0", "unknown variable 'os'"),
        ("self == 1", "unknown variable 'self'"),
        ("member.karma > 1", "`member` has no field 'karma'"),
        ("period.month == 1", "`period` has no field 'month'"),
        ("event.xs.exists(member, member > 1)", "name comprehension variables other than"),
        ("", "must not be empty"),
        ("event.a ==", "not a valid CEL expression"),
        ("(" * 200 + "1" + ")" * 200 + " == 1", "not a valid CEL expression"),
        ("x" * (MAX_EXPRESSION_CHARS + 1), "at most 500 characters"),
        ("1 + 1", "`when` must be true or false, not an int"),
        ("'yes'", "`when` must be true or false, not a string"),
        ("member.score > 1.5 + 1", "operand types do not match"),
    ],
)
def test_conditions_refused_when_compiled(source: str, message: str) -> None:
    assert message in invalid(source)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("'10'", "must be a number, not a string"),
        ("true", "must be a number, not a bool"),
        ("member.score > 1", "must be a number, not a bool"),
        ("0", "a constant amount must be at least 1, not 0"),
        ("-3", "a constant amount must be at least 1, not -3"),
        ("1.5 * 2", "operand types do not match"),
        ("0.5 * 1.5", "a constant amount must be at least 1, not 0"),
        ("int(timestamp('yesterday'))", "Function 'timestamp' error"),
    ],
)
def test_amounts_refused_when_compiled(source: str, message: str) -> None:
    assert message in invalid(source, "amount")


def test_a_scheduled_rule_cannot_read_the_event() -> None:
    assert "a scheduled rule has no `event`" in invalid("event.x == 1", scheduled=True)
    compile_expression("member.deductions_last_period == 0", "when", scheduled=True)


def test_attribute_tricks_reach_no_python_object() -> None:
    expr = compile_expression("event.__class__ == 'dict'", "when")
    with pytest.raises(EvaluationFailed, match="no field '__class__'"):
        evaluate_condition(expr, Bindings({"event": {}}))


def test_expressions_depending_on_attributes_compile_and_decide_at_evaluation() -> None:
    # The probe cannot know `event.kind`; compiling accepts, evaluation judges.
    assert isinstance(compile_expression("event.kind", "when"), Expression)


# --- what an expression reads ----------------------------------------------------------


def test_needs_lists_the_fields_read() -> None:
    expr = compile_expression("event.kind == 'x' && member.score > 1", "when")
    assert expr.needs == {"event": frozenset({"kind"}), "member": frozenset({"score"})}


def test_needs_is_everything_when_a_map_is_indexed() -> None:
    expr = compile_expression("event['kind'] == 'x' && has(event.y)", "when")
    assert expr.needs == {"event": None}


def test_merge_and_select() -> None:
    merged = merge_needs({"event": frozenset({"a"})}, {"event": frozenset({"b"}), "period": None})
    assert merged == {"event": frozenset({"a", "b"}), "period": None}
    assert select({"a": 1, "b": 2, "c": 3}, frozenset({"a", "z"})) == {"a": 1}
    assert select({"a": 1}, None) == {"a": 1}


def test_values_cel_cannot_hold_fail_at_evaluation() -> None:
    bindings = Bindings({"event": {"n": 10**400}})
    with pytest.raises(EvaluationFailed, match="a value cannot be used in an expression"):
        evaluate_amount(compile_expression("event.n / 6", "amount"), bindings)


def test_one_binding_serves_several_expressions() -> None:
    bindings = Bindings({"event": {"minutes": 60}})
    assert evaluate_condition(compile_expression("event.minutes > 30", "when"), bindings)
    assert evaluate_amount(compile_expression("event.minutes / 6", "amount"), bindings) == 10
