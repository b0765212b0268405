"""Rule-set documents: what parses, and one test per kind of refusal.

An uploaded rule set is a 422 unless it is exactly right, and the message must point
at the field (and the rule id, and in YAML the line), so operators can fix it.
"""

from __future__ import annotations

import json

import msgspec
import pytest

from service.errors import ValidationFailed
from service.ledger.model import RuleParams
from service.rules.defaults import EXAMPLE_YAML, example_rule_set
from service.rules.model import (
    DEFAULT_RULE_SET,
    MAX_DOCUMENT_BYTES,
    Cap,
    RuleSet,
    parse_rule_set,
    rule_set_from_builtins,
    to_document,
)

YAML = "application/yaml"
JSON = "application/json"


def yaml_rule(body: str, **top: str) -> bytes:
    """A YAML document with one rule whose lines are `body` (indented for the list)."""
    head = "".join(f"{k}: {v}\n" for k, v in top.items())
    lines = body.strip("\n").splitlines()
    rule = "  - " + lines[0] + "".join(f"\n    {line}" for line in lines[1:])
    return f"{head}rules:\n{rule}\n".encode()


def refused(raw: bytes, content_type: str = YAML) -> str:
    with pytest.raises(ValidationFailed) as info:
        parse_rule_set(raw, content_type)
    assert info.value.code == "validation_error" and info.value.status == 422
    return info.value.detail


# --- what parses -----------------------------------------------------------------------


def test_the_spec_example_parses_from_yaml() -> None:
    rule_set = parse_rule_set(EXAMPLE_YAML.encode(), "application/yaml")
    assert (rule_set.baseline, rule_set.floor, rule_set.fen_per_point) == (100, 0, 10)
    assert rule_set.offset.max_bill_percent == 30
    assert rule_set.offset.max_fen_per_household_per_year == 60000
    assert rule_set.expiry.points == "year_end_plus_one"
    assert [r.id for r in rule_set.rules] == [
        "fee-on-time",
        "volunteer-points",
        "flying-lead",
        "compact-month",
    ]
    fee, volunteer, flying, monthly = rule_set.rules
    assert fee.on == "fee.paid" and fee.award == 20 and fee.cap == Cap(period="month", max=20)
    assert volunteer.award == "event.minutes / 6"
    assert flying.kind == "deduct" and flying.amount == 10
    assert monthly.every == "month" and monthly.on is None


def test_the_spec_example_parses_from_json_to_the_same_rule_set() -> None:
    as_json = json.dumps(to_document(example_rule_set()), ensure_ascii=False).encode()
    assert parse_rule_set(as_json, "application/json; charset=utf-8") == example_rule_set()


def test_the_on_key_stays_a_string_in_yaml() -> None:
    # PyYAML's YAML 1.1 would read `on:` as the boolean True (and `yes`/`off` too).
    rule_set = parse_rule_set(yaml_rule("id: r\non: on\naward: 1\nreason: yes"), YAML)
    assert rule_set.rules[0].on == "on"
    assert rule_set.rules[0].reason == "yes"


def test_yaml_scalars_are_read_like_json() -> None:
    raw = yaml_rule("id: r\non: e\naward: 010\nreason: 2026-11-01", baseline="0100")
    rule = parse_rule_set(raw, YAML).rules[0]
    assert parse_rule_set(raw, YAML).baseline == 100  # decimal, not octal
    assert rule.award == 10 and rule.reason == "2026-11-01"  # a string, not a date


def test_yes_is_not_a_boolean_in_yaml() -> None:
    detail = refused(b"time_bank:\n  approval_required: yes\n")
    assert detail.startswith("time_bank.approval_required: Expected `bool`, got `str`")


def test_an_empty_document_is_the_default() -> None:
    assert parse_rule_set(b"{}", JSON) == DEFAULT_RULE_SET


def test_the_default_follows_the_spec() -> None:
    rule_set = DEFAULT_RULE_SET
    assert (rule_set.baseline, rule_set.floor, rule_set.fen_per_point) == (100, 0, 10)
    assert rule_set.offset.max_bill_percent is None and rule_set.offset.min_points is None
    assert rule_set.time_bank.approval_required is True
    assert rule_set.expiry.points == "never" and rule_set.rules == []
    assert rule_set.to_params() == RuleParams(baseline=100, floor=0)


def test_to_params_carries_baseline_and_floor() -> None:
    rule_set = parse_rule_set(b'{"baseline": 50, "floor": -20}', JSON)
    assert rule_set.to_params() == RuleParams(baseline=50, floor=-20)


def test_a_stored_document_reads_back() -> None:
    document = msgspec.json.decode(msgspec.json.encode(to_document(example_rule_set())))
    assert rule_set_from_builtins(document) == example_rule_set()
    assert "deduct" not in document["rules"][0]  # rules omit what they do not use


def test_a_scheduled_rule_may_be_capped_per_longer_period() -> None:
    raw = yaml_rule("id: r\nevery: week\naward: 5\ncap: {period: month, max: 10}\nreason: x")
    assert parse_rule_set(raw, YAML).rules[0].cap == Cap(period="month", max=10)


# --- one test per kind of refusal ------------------------------------------------------


def test_unknown_top_level_field() -> None:
    assert refused(b"baseline: 100\nbonus: 3\n") == "Object contains unknown field `bonus` (line 2)"


def test_unknown_rule_field_names_rule_and_line() -> None:
    detail = refused(yaml_rule("id: fee\non: e\naward: 1\nreason: x\npoints: 3"))
    assert detail == "rules[0] (fee): Object contains unknown field `points` (line 6)"


def test_float_where_an_integer_belongs() -> None:
    assert refused(b'{"baseline": 100.0}', JSON) == "baseline: Expected `int`, got `float`"
    detail = refused(yaml_rule("id: fee\non: e\naward: 1.5\nreason: x"))
    assert detail == "rules[0] (fee).award: Expected `int | str | null`, got `float` (line 4)"


def test_boolean_where_a_number_belongs() -> None:
    assert refused(b'{"fen_per_point": true}', JSON).startswith("fen_per_point: Expected `int`")


def test_negative_baseline() -> None:
    assert refused(b'{"baseline": -1}', JSON) == "baseline: Expected `int` >= 0"


def test_floor_above_baseline() -> None:
    detail = refused(b"baseline: 50\nfloor: 60\n")
    assert detail == "floor: must not exceed the baseline (50) (line 2)"


def test_fen_per_point_below_one() -> None:
    assert refused(b'{"fen_per_point": 0}', JSON) == "fen_per_point: Expected `int` >= 1"


def test_offset_percent_out_of_range() -> None:
    detail = refused(b'{"offset": {"max_bill_percent": 101}}', JSON)
    assert detail == "offset.max_bill_percent: Expected `int` <= 100"


def test_unknown_expiry_policy() -> None:
    detail = refused(b"expiry:\n  points: month_end\n")
    assert detail.startswith("expiry.points: Invalid enum value 'month_end' (line 2)")


def test_rules_must_be_a_list() -> None:
    assert refused(b'{"rules": {"id": "x"}}', JSON) == "rules: Expected `array`, got `object`"


def test_duplicate_rule_ids() -> None:
    one = {"id": "same", "on": "e", "award": 1, "reason": "x"}
    detail = refused(json.dumps({"rules": [one, one]}).encode(), JSON)
    assert detail == "rules[1] (same).id: duplicate rule id (also rules[0])"


def test_rule_id_outside_the_pattern() -> None:
    detail = refused(yaml_rule("id: has space\non: e\naward: 1\nreason: x"))
    assert detail.startswith("rules[0] (has space).id: Expected `str` matching regex")


def test_both_on_and_every() -> None:
    detail = refused(yaml_rule("id: r\non: e\nevery: day\naward: 1\nreason: x"))
    assert detail.startswith("rules[0] (r): give exactly one of `on` (an event type) or `every`")


def test_neither_on_nor_every() -> None:
    detail = refused(yaml_rule("id: r\naward: 1\nreason: x"))
    assert detail.startswith("rules[0] (r): give exactly one of `on`")


def test_both_award_and_deduct() -> None:
    detail = refused(yaml_rule("id: r\non: e\naward: 1\ndeduct: 1\nreason: x"))
    assert detail == "rules[0] (r): give exactly one of `award` or `deduct` (line 2)"


def test_neither_award_nor_deduct() -> None:
    assert "exactly one of `award` or `deduct`" in refused(yaml_rule("id: r\non: e\nreason: x"))


def test_zero_or_negative_literal_amount() -> None:
    assert "Expected `int` >= 1" in refused(yaml_rule("id: r\non: e\naward: 0\nreason: x"))
    assert "Expected `int` >= 1" in refused(yaml_rule("id: r\non: e\ndeduct: -5\nreason: x"))


def test_every_year_is_not_a_schedule() -> None:
    detail = refused(yaml_rule("id: r\nevery: year\naward: 1\nreason: x"))
    assert detail.startswith("rules[0] (r).every: Invalid enum value 'year'")


def test_unknown_cap_period() -> None:
    detail = refused(
        yaml_rule("id: r\non: e\naward: 1\ncap: {period: fortnight, max: 5}\nreason: x")
    )
    assert detail.startswith("rules[0] (r).cap.period: Invalid enum value 'fortnight'")


def test_cap_max_below_one() -> None:
    detail = refused(yaml_rule("id: r\non: e\naward: 1\ncap: {period: day, max: 0}\nreason: x"))
    assert detail == "rules[0] (r).cap.max: Expected `int` >= 1 (line 5)"


def test_scheduled_rule_capped_per_shorter_period() -> None:
    detail = refused(
        yaml_rule("id: r\nevery: month\naward: 1\ncap: {period: day, max: 1}\nreason: x")
    )
    assert detail == (
        "rules[0] (r).cap.period: a rule that runs every month cannot be capped per day (line 5)"
    )


def test_missing_reason() -> None:
    detail = refused(yaml_rule("id: r\non: e\naward: 1"))
    assert detail == "rules[0] (r): Object missing required field `reason` (line 2)"


def test_reason_too_long() -> None:
    detail = refused(yaml_rule(f"id: r\non: e\naward: 1\nreason: {'x' * 201}"))
    assert detail == "rules[0] (r).reason: Expected `str` of length <= 200 (line 5)"


def test_unknown_asset() -> None:
    detail = refused(yaml_rule("id: r\non: e\naward: 1\nreason: x\nasset: yuan"))
    assert detail.startswith("rules[0] (r).asset: Invalid enum value 'yuan'")


def test_expression_with_a_syntax_error() -> None:
    detail = refused(yaml_rule("id: r\non: e\nwhen: event.days_late <=\naward: 1\nreason: x"))
    assert detail.startswith("rules[0] (r).when: not a valid CEL expression: 1:19: Syntax error")
    assert detail.endswith("(line 4)")


def test_expression_too_long() -> None:
    long = " || ".join(["event.a == 1"] * 40)
    detail = refused(yaml_rule(f"id: r\non: e\nwhen: {long}\naward: 1\nreason: x"))
    assert detail == "rules[0] (r).when: Expected `str` of length <= 500 (line 4)"


def test_expression_with_an_unknown_variable() -> None:
    detail = refused(yaml_rule("id: r\non: e\nwhen: evnt.kind == 'x'\naward: 1\nreason: x"))
    assert detail.startswith("rules[0] (r).when: unknown variable 'evnt'")


def test_expression_calling_python() -> None:
    detail = refused(yaml_rule("id: r\non: e\nwhen: __import__('os')\naward: 1\nreason: x"))
    assert detail == "rules[0] (r).when: unknown function '__import__' (line 4)"


def test_expression_with_an_unknown_member_statistic() -> None:
    detail = refused(yaml_rule("id: r\non: e\nwhen: member.karma > 3\naward: 1\nreason: x"))
    assert detail.startswith("rules[0] (r).when: `member` has no field 'karma'")


def test_scheduled_rule_reading_the_event() -> None:
    detail = refused(yaml_rule("id: r\nevery: day\nwhen: event.kind == 'x'\naward: 1\nreason: x"))
    assert detail.startswith("rules[0] (r).when: a scheduled rule has no `event`")


def test_condition_that_is_not_a_bool() -> None:
    detail = refused(yaml_rule("id: r\non: e\nwhen: member.score + 1\naward: 1\nreason: x"))
    assert detail == "rules[0] (r).when: `when` must be true or false, not an int (line 4)"


def test_amount_that_is_a_string() -> None:
    detail = refused(yaml_rule("id: r\non: e\naward: \"'ten'\"\nreason: x"))
    assert detail == "rules[0] (r).award: an amount must be a number, not a string (line 4)"


def test_constant_expression_amount_below_one() -> None:
    detail = refused(yaml_rule("id: r\non: e\ndeduct: 3 - 5\nreason: x"))
    assert detail == "rules[0] (r).deduct: a constant amount must be at least 1, not -2 (line 4)"


def test_ill_typed_arithmetic() -> None:
    detail = refused(yaml_rule("id: r\non: e\naward: member.score * 1.5\nreason: x"))
    assert detail.startswith("rules[0] (r).award: operand types do not match")


def test_yaml_duplicate_keys() -> None:
    assert refused(b"baseline: 100\nbaseline: 200\n") == (
        "not valid YAML: duplicate key 'baseline' (line 2, column 1)"
    )


def test_yaml_aliases() -> None:
    raw = b"rules:\n  - &r {id: a, on: e, award: 1, reason: x}\n  - *r\n"
    assert refused(raw).startswith("not valid YAML: aliases (*name) are not allowed (line 3")


def test_yaml_syntax_error() -> None:
    assert refused(b"rules: [\n").startswith("not valid YAML:")


def test_yaml_with_two_documents() -> None:
    assert refused(b"baseline: 1\n---\nbaseline: 2\n").startswith("not valid YAML:")


def test_yaml_that_is_not_a_mapping() -> None:
    assert refused(b"- 1\n- 2\n") == "Expected `object`, got `array` (line 1)"


def test_invalid_json() -> None:
    assert refused(b'{"baseline": ', JSON).startswith("not valid JSON:")


def test_unsupported_content_type() -> None:
    assert refused(b"baseline = 1", "text/x-toml").startswith("a rule set is application/json")


def test_document_too_large() -> None:
    raw = b"{}" + b" " * MAX_DOCUMENT_BYTES
    assert refused(raw, JSON) == f"a rule set has at most {MAX_DOCUMENT_BYTES} bytes"


def test_rule_set_struct_is_strict_about_unknown_fields() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"baseline": 1, "x": 2}, RuleSet, strict=True)
