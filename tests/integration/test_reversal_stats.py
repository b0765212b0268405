"""Reversing what a rule posted takes it out of the member's statistics and the rule's
usage for the period it counted in (SPEC section 9): the cap frees up and the
leaderboard drops it. Once, however often or however concurrently it is asked for."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import asyncpg

from service.rules.book import RuleBook
from service.rules.jobs import run_all
from tests.api.test_rules import YAML, event
from tests.helpers import ISSUANCE, C, Client, balance, community, transfer

RULES = """\
baseline: 100
floor: 0
expiry:
  points: year_end_plus_one
rules:
  - id: fee-on-time
    on: fee.paid
    award: 20
    cap: {period: month, max: 20}
    reason: 按时缴纳物业费
  - id: fee-bonus
    on: fee.paid
    award: 5
    reason: 缴费奖励
  - id: first-award
    on: checkin
    when: member.awards_this_period == 0
    award: 1
    reason: 本月首次获奖
  - id: volunteer-minutes
    on: volunteer.approved
    asset: minutes
    award: event.minutes
    cap: {period: week, max: 600}
    reason: 志愿服务时长
  - id: flying-lead
    on: compact.violation
    deduct: 10
    reason: 飞线充电
"""

MONTHLY = """\
  - id: compact-month
    every: month
    award: 5
    reason: 遵守小区公约
"""

# 2026-11-30T16:30Z is already 1 December in Shanghai: the award counts in December.
AT = "2026-11-30T16:30:00Z"
DECEMBER = ["2026-12-01", "2026-W49", "2026-12", "2026"]


async def _publish(client: Client, text: str = RULES, effective_from: str | None = None) -> None:
    params = {"effective_from": effective_from} if effective_from else {}
    r = await client.put(f"{C}/rules", params=params, content=text.encode(), headers=YAML)
    assert r.status_code == 201, r.text


async def _event(client: Client, ident: str, event_type: str, **attributes: Any) -> Any:
    attributes.setdefault("at", AT)
    r = await client.post(f"{C}/events", json=event(ident, event_type, **attributes))
    assert r.status_code == 201, r.text
    return r.json()


async def _reverse(client: Client, tx_id: str, status: int = 201) -> Any:
    r = await client.post(f"{C}/transactions/{tx_id}/reverse")
    assert r.status_code == status, r.text
    return r.json()


async def _leaders(client: Client, period: str) -> dict[str, int]:
    r = await client.get(f"{C}/reports/leaderboard", params={"period": period})
    assert r.status_code == 200, r.text
    return {x["member"]: x["earned"] for x in r.json()["leaders"]}


async def _stats(pool: asyncpg.Pool, member: str = "m0") -> dict[str, tuple[int, ...]]:
    """member_stats by period key: (earned, awards, deducted, deductions)."""
    rows = await pool.fetch(
        "SELECT period_key, earned, awards, deducted, deductions FROM member_stats"
        " WHERE community_id = 'green' AND member_id = $1",
        member,
    )
    return {r["period_key"]: tuple(r)[1:] for r in rows}


async def _usage(pool: asyncpg.Pool, member: str = "m0") -> dict[tuple[str, str], tuple[int, int]]:
    """rule_usage by (rule, period key): (amount, times)."""
    rows = await pool.fetch(
        "SELECT rule_id, period_key, amount, times FROM rule_usage"
        " WHERE community_id = 'green' AND member_id = $1",
        member,
    )
    return {(r["rule_id"], r["period_key"]): (r["amount"], r["times"]) for r in rows}


async def _audit_passes(client: Client) -> None:
    r = await client.get(f"{C}/audit/verify")
    assert r.status_code == 200 and r.json()["ok"] is True, r.text


async def test_a_reversed_award_leaves_the_leaderboard_and_frees_the_cap(
    client: Client, pool: asyncpg.Pool
) -> None:
    await community(client)
    await _publish(client)
    first = await _event(client, "e1", "fee.paid")
    assert [d["applied"] for d in first["decisions"]] == [20, 5]
    capped = await _event(client, "e2", "fee.paid")
    assert capped["decisions"][0]["skipped"] == "cap_reached"
    assert await _leaders(client, "2026-12") == {"m0": 30}

    reversal = await _reverse(client, "event:e1:fee-on-time")
    assert reversal["kind"] == "reversal" and reversal["rule_id"] == "fee-on-time"
    # Counted in December (Shanghai), whenever the reversal happens; November is untouched.
    assert await _leaders(client, "2026-12") == {"m0": 10}
    assert await _leaders(client, "2026-11") == {}
    assert _usage_of(await _usage(pool), "fee-on-time") == {"2026-12": (0, 0)}
    again = await _event(client, "e3", "fee.paid")
    assert [d["applied"] for d in again["decisions"]] == [20, 5]
    assert await _leaders(client, "2026-12") == {"m0": 35}
    assert _usage_of(await _usage(pool), "fee-on-time") == {"2026-12": (20, 1)}
    # e1 still counts as an award (its bonus stands): three events awarded.
    assert await _stats(pool) == dict.fromkeys(DECEMBER, (35, 3, 0, 0))
    assert (await balance(client, "m0"))["points"]["score"] == 135
    await _audit_passes(client)


def _usage_of(usage: dict[tuple[str, str], tuple[int, int]], rule: str) -> dict[str, Any]:
    return {key: value for (rule_id, key), value in usage.items() if rule_id == rule}


async def test_an_event_stops_counting_as_an_award_when_all_its_awards_are_reversed(
    client: Client, pool: asyncpg.Pool
) -> None:
    """`awards` counts events that awarded points: reversing one of two awards of an
    event leaves the event counted; reversing the other takes it out."""
    await community(client)
    await _publish(client)
    await _event(client, "e1", "fee.paid")
    await _reverse(client, "event:e1:fee-on-time")
    assert await _stats(pool) == dict.fromkeys(DECEMBER, (5, 1, 0, 0))
    blocked = await _event(client, "c1", "checkin")
    assert blocked["decisions"][0]["skipped"] == "condition_false"

    await _reverse(client, "event:e1:fee-bonus")
    assert await _stats(pool) == dict.fromkeys(DECEMBER, (0, 0, 0, 0))
    assert await _leaders(client, "2026-12") == {}
    allowed = await _event(client, "c2", "checkin")
    assert allowed["decisions"][0]["applied"] == 1
    await _audit_passes(client)


async def test_a_replayed_reversal_subtracts_once(client: Client, pool: asyncpg.Pool) -> None:
    await community(client)
    await _publish(client)
    await _event(client, "e1", "fee.paid")
    first = await _reverse(client, "event:e1:fee-on-time")
    replay = await _reverse(client, "event:e1:fee-on-time", status=200)
    assert replay == first
    assert _usage_of(await _usage(pool), "fee-on-time") == {"2026-12": (0, 0)}
    assert await _stats(pool) == dict.fromkeys(DECEMBER, (5, 1, 0, 0))
    assert await _leaders(client, "2026-12") == {"m0": 5}
    await _audit_passes(client)


async def test_concurrent_reversals_subtract_once(client: Client, pool: asyncpg.Pool) -> None:
    await community(client, members=2)
    await _publish(client)
    await _event(client, "e1", "fee.paid")
    await _event(client, "e2", "fee.paid", member="m1")
    ids = ["event:e1:fee-on-time", "event:e2:fee-on-time", "event:e1:fee-bonus"]
    responses = await asyncio.gather(
        *(client.post(f"{C}/transactions/{ids[i % 3]}/reverse") for i in range(12))
    )
    by_tx: dict[str, list[int]] = {}
    for r in responses:
        assert r.status_code in (200, 201), r.text
        by_tx.setdefault(r.json()["reversal_of"], []).append(r.status_code)
    assert {tx: sorted(codes) for tx, codes in by_tx.items()} == {
        tx: [200, 200, 200, 201] for tx in ids
    }
    assert await _usage(pool) == {
        ("fee-on-time", "2026-12"): (0, 0),
        ("fee-bonus", "2026-12"): (0, 0),
    }
    assert await _stats(pool) == dict.fromkeys(DECEMBER, (0, 0, 0, 0))
    assert await _stats(pool, "m1") == dict.fromkeys(DECEMBER, (5, 1, 0, 0))
    assert await _leaders(client, "2026-12") == {"m1": 5}
    await _audit_passes(client)


async def test_a_reversed_deduction_and_a_reversed_minutes_award_are_uncounted(
    client: Client, pool: asyncpg.Pool
) -> None:
    """A deduction's reversal takes it out of `deducted` and `deductions`; an award of
    minutes counts only in its rule's usage (its week), and leaves the points alone."""
    await community(client)
    await _publish(client)
    await _event(client, "v1", "compact.violation")
    await _event(client, "h1", "volunteer.approved", minutes=90)
    assert await _stats(pool) == dict.fromkeys(DECEMBER, (0, 0, 10, 1))
    assert await _usage(pool) == {
        ("flying-lead", "2026-12"): (10, 1),
        ("volunteer-minutes", "2026-W49"): (90, 1),
    }
    await _reverse(client, "event:v1:flying-lead")
    await _reverse(client, "event:h1:volunteer-minutes")
    assert await _stats(pool) == dict.fromkeys(DECEMBER, (0, 0, 0, 0))
    assert await _usage(pool) == {
        ("flying-lead", "2026-12"): (0, 0),
        ("volunteer-minutes", "2026-W49"): (0, 0),
    }
    assert (await balance(client, "m0"))["points"]["score"] == 100
    await _audit_passes(client)


async def test_reversing_a_transaction_no_rule_posted_changes_no_statistics(
    client: Client, pool: asyncpg.Pool
) -> None:
    await community(client)
    await _publish(client)
    await _event(client, "e1", "fee.paid")
    r = await client.post(f"{C}/transactions", json=transfer("t1", ISSUANCE, "member:m0:points", 7))
    assert r.status_code == 201, r.text
    before = (await _stats(pool), await _usage(pool))
    reversal = await _reverse(client, "t1")
    assert reversal["rule_id"] is None and reversal["metadata"] is None
    assert (await _stats(pool), await _usage(pool)) == before
    assert await _leaders(client, "2026-12") == {"m0": 25}
    await _audit_passes(client)


async def test_a_reversed_scheduled_award_leaves_the_month_it_settled(
    client: Client, pool: asyncpg.Pool
) -> None:
    await community(client, members=2)
    await _publish(client, RULES + MONTHLY, "2026-10-01T00:00:00+08:00")
    now = datetime.fromisoformat("2026-11-02T00:00:00+08:00")
    assert await run_all(pool, RuleBook(), now) == 2  # October, for m0 and m1
    assert await _leaders(client, "2026-10") == {"m0": 5, "m1": 5}
    october = ["2026-10-31", "2026-W44", "2026-10", "2026"]
    assert await _stats(pool) == dict.fromkeys(october, (5, 1, 0, 0))

    reversal = await _reverse(client, "compact-month:2026-10:m0")
    assert reversal["metadata"] == {"uncounted": {"usage": "2026-10", "statistics": october}}
    assert await _leaders(client, "2026-10") == {"m1": 5}
    assert await _stats(pool) == dict.fromkeys(october, (0, 0, 0, 0))
    assert await _usage(pool) == {("compact-month", "2026-10"): (0, 0)}
    assert await _usage(pool, "m1") == {("compact-month", "2026-10"): (5, 1)}
    assert await run_all(pool, RuleBook(), now) == 0  # settled once: the reversal stands
    await _audit_passes(client)


async def test_a_reversed_award_is_neither_earned_nor_spent_for_year_end_expiry(
    client: Client, pool: asyncpg.Pool
) -> None:
    """The reversal takes the award out of the year's earnings, so its debit does not
    also count as spending: what is left of the year's awards still expires."""
    await community(client, members=1)
    await _publish(client, effective_from="2025-01-01T00:00:00+08:00")
    await _event(client, "e1", "fee.paid", at="2025-03-05T09:00:00+08:00")
    await _reverse(client, "event:e1:fee-on-time")
    assert (await balance(client, "m0"))["points"]["score"] == 105
    expiry = datetime.fromisoformat("2027-01-01T00:00:01+08:00")
    assert await run_all(pool, RuleBook(), expiry) == 1
    assert (await balance(client, "m0"))["points"]["score"] == 100  # 2025's 5 expired
    await _audit_passes(client)
