"""Rule sets the service ships: the SPEC default, and SPEC section 5's example scheme.

`DEFAULT_RULE_SET` is what a community runs on until it publishes a rule set.
`EXAMPLE_YAML` is the example of SPEC section 5, verbatim: a demo community can
publish it, and the tests check that it parses.
"""

from __future__ import annotations

from typing import Final

from service.rules.model import DEFAULT_RULE_SET, RuleSet, parse_rule_set

__all__ = ["DEFAULT_RULE_SET", "EXAMPLE_YAML", "example_rule_set"]

EXAMPLE_YAML: Final = """\
baseline: 100            # opening score of every member
floor: 0                 # deductions never go below this
fen_per_point: 10        # 1 point offsets 0.10 yuan
offset:
  max_bill_percent: 30   # at most 30 % of one bill
  max_fen_per_household_per_year: 60000
  min_points: 10
time_bank:
  approval_required: true
  points_per_hour: 10    # conversion rate minutes -> points
expiry:
  points: year_end_plus_one   # earned in year Y expire at the end of Y+1 (FIFO)
  minutes: never
rules:
  - id: fee-on-time
    on: fee.paid
    when: event.days_late <= 0
    award: 20
    cap: {period: month, max: 20}
    reason: 按时缴纳物业费
  - id: volunteer-points
    on: volunteer.approved          # emitted when hours are approved
    award: event.minutes / 6
    cap: {period: month, max: 100}
    reason: 志愿服务
  - id: flying-lead
    on: compact.violation
    when: event.kind == "flying_lead_charging"
    deduct: 10
    reason: 飞线充电
  - id: compact-month
    every: month                    # a scheduled rule
    when: member.deductions_last_period == 0
    award: 5
    reason: 遵守小区公约
"""


def example_rule_set() -> RuleSet:
    """SPEC section 5's example, parsed."""
    return parse_rule_set(EXAMPLE_YAML.encode(), "application/yaml")
