"""The pure engine: events and scheduled periods in, explained decisions out.

Each rule feature of SPEC section 5 — conditions, computed amounts, caps per member
per rule per period (in Asia/Shanghai), deductions, scheduled rules — is checked
against the decisions the database layer will post, including why nothing is posted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from service.rules.defaults import example_rule_set
from service.rules.engine import (
    CompiledRuleSet,
    Decision,
    EventInput,
    MemberStats,
    PeriodStats,
    RuleUsage,
    _member_map,
    compile_rule_set,
    evaluate,
    evaluate_scheduled,
)
from service.rules.expressions import MEMBER_FIELDS
from service.rules.model import DEFAULT_RULE_SET, parse_rule_set
from service.rules.periods import period_from_key, period_of, stat_keys
from tests.helpers import SH

NOV_30_LATE = datetime(2026, 11, 30, 15, 59, tzinfo=UTC)  # 23:59 on 30 Nov in Shanghai
DEC_1_EARLY = datetime(2026, 11, 30, 16, 30, tzinfo=UTC)  # 00:30 on 1 Dec in Shanghai


@pytest.fixture(scope="module")
def example() -> CompiledRuleSet:
    return compile_rule_set(example_rule_set(), version=3)


def compiled(yaml: str, version: int = 1) -> CompiledRuleSet:
    return compile_rule_set(parse_rule_set(yaml.encode(), "application/yaml"), version)


def event(type_: str, at: datetime = DEC_1_EARLY, **attributes: Any) -> EventInput:
    return EventInput(id="e-1", type=type_, member_id="m-17", occurred_at=at, attributes=attributes)


def stats(**kwargs: Any) -> MemberStats:
    return MemberStats(member_id="m-17", **kwargs)


def one(decisions: list[Decision]) -> Decision:
    assert len(decisions) == 1
    return decisions[0]


# --- conditions and amounts ----------------------------------------------------------


def test_a_condition_that_holds_awards(example: CompiledRuleSet) -> None:
    decision = one(evaluate(example, event("fee.paid", days_late=0), stats(), SH))
    assert decision == Decision(
        rule_id="fee-on-time",
        rule_version=3,
        asset="points",
        kind="award",
        requested=20,
        amount=20,
        period_key="2026-12",
        reason="按时缴纳物业费",
    )


def test_a_condition_that_fails_says_so(example: CompiledRuleSet) -> None:
    decision = one(evaluate(example, event("fee.paid", days_late=3), stats(), SH))
    assert (decision.amount, decision.skipped) == (0, "condition_false")
    assert decision.why == "condition `event.days_late <= 0` is false"


def test_computed_amounts_use_integer_division(example: CompiledRuleSet) -> None:
    decision = one(evaluate(example, event("volunteer.approved", minutes=125), stats(), SH))
    assert (decision.requested, decision.amount, decision.skipped) == (20, 20, None)


def test_a_computed_amount_of_zero_posts_nothing(example: CompiledRuleSet) -> None:
    decision = one(evaluate(example, event("volunteer.approved", minutes=5), stats(), SH))
    assert (decision.amount, decision.skipped) == (0, "zero_amount")
    assert decision.why == "amount `event.minutes / 6` evaluated to 0"


def test_deductions_report_the_requested_amount(example: CompiledRuleSet) -> None:
    violation = event("compact.violation", kind="flying_lead_charging")
    decision = one(evaluate(example, violation, stats(score=3), SH))
    assert (decision.kind, decision.requested, decision.amount) == ("deduct", 10, 10)
    assert decision.reason == "飞线充电"  # the floor is applied by the database, not here


def test_events_no_rule_listens_to_decide_nothing(example: CompiledRuleSet) -> None:
    assert evaluate(example, event("parcel.collected"), stats(), SH) == []
    assert evaluate(compile_rule_set(DEFAULT_RULE_SET, 1), event("fee.paid"), stats(), SH) == []


def test_an_evaluation_error_skips_only_its_rule() -> None:
    rules = compiled(
        """
rules:
  - {id: needs-kind, on: sorted, when: event.kind == 'glass', award: 2, reason: a}
  - {id: always, on: sorted, award: 1, reason: b}
"""
    )
    first, second = evaluate(rules, event("sorted"), stats(), SH)
    assert (first.skipped, first.amount) == ("evaluation_error", 0)
    assert first.why is not None and "no field 'kind'" in first.why
    assert (second.rule_id, second.amount, second.skipped) == ("always", 1, None)


def test_double_amounts_round_down_and_negative_ones_post_nothing() -> None:
    rules = compiled(
        """
rules:
  - {id: half, on: e, award: "double(event.n) / 2.0", reason: a}
  - {id: rest, on: e, award: event.n - 10, reason: b}
"""
    )
    half, rest = evaluate(rules, event("e", n=7), stats(), SH)
    assert (half.requested, half.amount) == (3, 3)
    assert (rest.amount, rest.skipped, rest.why) == (
        0,
        "zero_amount",
        "amount `event.n - 10` evaluated to -3",
    )


def test_a_string_attribute_as_amount_is_an_error_not_a_crash() -> None:
    rules = compiled("rules: [{id: r, on: e, award: event.points, reason: x}]")
    decision = one(evaluate(rules, event("e", points="10"), stats(), SH))
    assert (decision.skipped, decision.why) == (
        "evaluation_error",
        "an amount must be a number, not a string",
    )


def test_an_attribute_cel_cannot_hold_is_an_error_not_a_crash() -> None:
    rules = compiled("rules: [{id: r, on: e, award: event.n / 6, reason: x}]")
    decision = one(evaluate(rules, event("e", n=10**400), stats(), SH))
    assert decision.skipped == "evaluation_error"


def test_rules_on_minutes_carry_their_asset() -> None:
    rules = compiled("rules: [{id: r, on: e, award: 30, asset: minutes, reason: x}]")
    assert one(evaluate(rules, event("e"), stats(), SH)).asset == "minutes"


def test_conditions_see_local_time_member_and_period() -> None:
    rules = compiled(
        """
rules:
  - id: early-bird
    on: e
    when: >-
      event.occurred_at.getHours() < 8 && member.score >= 100
      && period.key == '2026-12-01' && event.type == 'e' && member.id == 'm-17'
    award: 1
    cap: {period: day, max: 1}
    reason: x
"""
    )
    assert one(evaluate(rules, event("e"), stats(score=100), SH)).amount == 1
    assert one(evaluate(rules, event("e"), stats(score=99), SH)).skipped == "condition_false"


def test_member_statistics_are_those_of_the_rules_period() -> None:
    rules = compiled(
        """
rules:
  - id: first-sorting-of-week
    on: sorted
    when: member.rule_times_this_period == 0 && member.points_deducted_last_period == 0
    award: 3
    cap: {period: week, max: 100}
    reason: x
"""
    )
    fresh = stats(usage={("first-sorting-of-week", "2026-W48"): RuleUsage(amount=3, times=1)})
    assert one(evaluate(rules, event("sorted"), fresh, SH)).amount == 3  # now 2026-W49
    again = stats(usage={("first-sorting-of-week", "2026-W49"): RuleUsage(amount=3, times=1)})
    assert one(evaluate(rules, event("sorted"), again, SH)).skipped == "condition_false"
    penalised = stats(periods={"2026-W48": PeriodStats(deducted=10, deductions=1)})
    assert one(evaluate(rules, event("sorted"), penalised, SH)).skipped == "condition_false"


# --- caps ---------------------------------------------------------------------------


def test_a_cap_reduces_an_award_to_what_is_left(example: CompiledRuleSet) -> None:
    used = stats(usage={("volunteer-points", "2026-12"): RuleUsage(amount=90, times=3)})
    decision = one(evaluate(example, event("volunteer.approved", minutes=125), used, SH))
    assert (decision.requested, decision.amount, decision.skipped) == (20, 10, None)
    assert decision.why == "cap 100 per month (2026-12), 90 used: reduced from 20 to 10"


def test_a_reached_cap_posts_nothing(example: CompiledRuleSet) -> None:
    used = stats(usage={("fee-on-time", "2026-12"): RuleUsage(amount=20, times=1)})
    decision = one(evaluate(example, event("fee.paid", days_late=0), used, SH))
    assert (decision.requested, decision.amount, decision.skipped) == (20, 0, "cap_reached")
    assert decision.why == "cap 20 per month (2026-12), 20 used"


def test_caps_count_in_the_local_period_of_occurred_at(example: CompiledRuleSet) -> None:
    november_full = stats(usage={("fee-on-time", "2026-11"): RuleUsage(amount=20, times=1)})
    late_november = one(
        evaluate(example, event("fee.paid", NOV_30_LATE, days_late=0), november_full, SH)
    )
    assert (late_november.period_key, late_november.skipped) == ("2026-11", "cap_reached")
    # Half an hour later it is December in Shanghai (still November in UTC): a new cap.
    early_december = one(
        evaluate(example, event("fee.paid", DEC_1_EARLY, days_late=0), november_full, SH)
    )
    assert (early_december.period_key, early_december.amount) == ("2026-12", 20)


def test_caps_per_week_follow_iso_weeks_in_shanghai() -> None:
    rules = compiled("rules: [{id: r, on: e, award: 5, cap: {period: week, max: 5}, reason: x}]")
    sunday_night = datetime(2026, 11, 29, 15, 0, tzinfo=UTC)  # Sun 23:00 local, W48
    monday = datetime(2026, 11, 29, 16, 0, tzinfo=UTC)  # Mon 00:00 local, W49
    used = stats(usage={("r", "2026-W48"): RuleUsage(amount=5, times=1)})
    assert one(evaluate(rules, event("e", sunday_night), used, SH)).skipped == "cap_reached"
    assert one(evaluate(rules, event("e", monday), used, SH)).amount == 5


def test_the_keys_to_fetch_cover_every_lookup(example: CompiledRuleSet) -> None:
    keys = stat_keys(DEC_1_EARLY, SH)
    for decision in evaluate(example, event("fee.paid", days_late=0), stats(), SH):
        assert decision.period_key in keys


# --- scheduled rules -----------------------------------------------------------------


def test_scheduled_rule_awards_a_clean_month(example: CompiledRuleSet) -> None:
    november = period_from_key("2026-11", SH)
    decision = evaluate_scheduled(example, "compact-month", stats(), november)
    assert (decision.rule_id, decision.amount, decision.period_key) == (
        "compact-month",
        5,
        "2026-11",
    )
    assert decision.reason == "遵守小区公约"


def test_scheduled_rule_reads_the_settled_period_as_last_period(example: CompiledRuleSet) -> None:
    november = period_from_key("2026-11", SH)
    penalised = stats(periods={"2026-11": PeriodStats(deducted=10, deductions=1)})
    decision = evaluate_scheduled(example, "compact-month", penalised, november)
    assert (decision.skipped, decision.why) == (
        "condition_false",
        "condition `member.deductions_last_period == 0` is false",
    )
    # Deductions in the month just begun, or in October, do not count against November.
    other = stats(
        periods={"2026-12": PeriodStats(deductions=2), "2026-10": PeriodStats(deductions=1)}
    )
    assert evaluate_scheduled(example, "compact-month", other, november).amount == 5


def test_scheduled_rule_sees_the_period_it_settles() -> None:
    rules = compiled(
        """
rules:
  - id: weekly
    every: week
    when: period.kind == 'week' && period.key == '2026-W48' && period.end > period.start
    award: member.points_earned_last_period / 10
    reason: x
"""
    )
    week = period_of("week", datetime(2026, 11, 25, tzinfo=UTC), SH)
    busy = stats(periods={"2026-W48": PeriodStats(earned=57, awards=4)})
    assert evaluate_scheduled(rules, "weekly", busy, week).amount == 5


def test_scheduled_caps_count_in_the_period_containing_the_settled_one() -> None:
    rules = compiled(
        "rules: [{id: w, every: week, award: 5, cap: {period: month, max: 12}, reason: x}]"
    )
    week = period_from_key("2026-W48", SH)  # 23-29 November
    used = stats(usage={("w", "2026-11"): RuleUsage(amount=10, times=2)})
    decision = evaluate_scheduled(rules, "w", used, week)
    assert (decision.period_key, decision.requested, decision.amount) == ("2026-11", 5, 2)


def test_scheduled_rules_are_not_triggered_by_events(example: CompiledRuleSet) -> None:
    assert evaluate(example, event("compact-month"), stats(), SH) == []


def test_scheduled_misuse_is_a_programming_error(example: CompiledRuleSet) -> None:
    with pytest.raises(KeyError):
        evaluate_scheduled(example, "fee-on-time", stats(), period_from_key("2026-11", SH))
    with pytest.raises(ValueError, match="runs every month, not week"):
        evaluate_scheduled(example, "compact-month", stats(), period_from_key("2026-W48", SH))


def test_the_member_variable_has_exactly_the_documented_fields() -> None:
    current = period_from_key("2026-11", SH)
    assert set(_member_map("r", stats(), current)) == set(MEMBER_FIELDS)


def test_compiled_rule_sets_index_rules_by_trigger(example: CompiledRuleSet) -> None:
    assert set(example.by_event) == {"fee.paid", "volunteer.approved", "compact.violation"}
    assert set(example.scheduled) == {"compact-month"}
    assert example.version == 3 and example.rule_set.to_params().baseline == 100
