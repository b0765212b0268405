"""Scheduled rules and year-end expiry: idempotent per (rule, member, period), safe in
two processes at once, catching up on periods that ended while nobody ran them."""

from __future__ import annotations

import asyncio
from datetime import datetime

import asyncpg

from service.db import create_pool
from service.rules.book import RuleBook
from service.rules.jobs import run_all
from tests.api.test_rules import SCHEME, YAML, event
from tests.helpers import C, Client, balance, community

MONTHLY = """\
rules:
  - id: flying-lead
    on: compact.violation
    deduct: 10
    reason: 飞线充电
  - id: compact-month
    every: month
    when: member.deductions_last_period == 0
    award: 5
    reason: 遵守小区公约
"""


async def _publish(client: Client, text: str, effective_from: str) -> None:
    r = await client.put(
        f"{C}/rules", params={"effective_from": effective_from}, content=text.encode(), headers=YAML
    )
    assert r.status_code == 201, r.text


async def test_monthly_rule_catches_up_once_even_when_run_twice_at_once(
    client: Client, dsn: str
) -> None:
    await community(client)
    await _publish(client, MONTHLY, "2026-09-01T00:00:00+08:00")
    r = await client.post(f"{C}/events", json=event("v1", "compact.violation", member="m1",
                                                    at="2026-10-10T12:00:00+08:00"))  # fmt: skip
    assert r.status_code == 201
    now = datetime.fromisoformat("2026-11-23T12:00:00+08:00")
    pools = [await create_pool(dsn, min_size=1, max_size=4) for _ in range(2)]
    try:
        counts = await asyncio.gather(*(run_all(p, RuleBook(), now) for p in pools))
        assert sum(counts) == 3  # m0: September and October; m1: September only
        assert await run_all(pools[0], RuleBook(), now) == 0
    finally:
        for p in pools:
            await p.close()
    assert (await balance(client, "m0"))["points"]["score"] == 110
    assert (await balance(client, "m1"))["points"]["score"] == 95
    entries = (await client.get(f"{C}/members/m0/statement")).json()["entries"]
    assert {e["transaction_id"] for e in entries if e["rule_id"] == "compact-month"} == {
        "compact-month:2026-09:m0", "compact-month:2026-10:m0",
    }  # fmt: skip
    assert entries[0]["reason"] == "遵守小区公约"


async def test_points_expire_at_the_end_of_the_next_year_soonest_first(
    client: Client, pool: asyncpg.Pool
) -> None:
    await community(client, members=1)
    await _publish(client, SCHEME.split("rules:")[0] + "rules:\n" + SCHEME.split("rules:")[1]
                   .split("  - id: compact-month")[0], "2024-01-01T00:00:00+08:00")  # fmt: skip
    for ident, at in (("f1", "2024-03-05"), ("f2", "2024-04-05"), ("f3", "2025-02-05")):
        r = await client.post(
            f"{C}/events", json=event(ident, "fee.paid", at=f"{at}T09:00:00+08:00", days_late=0)
        )
        assert r.json()["decisions"][0]["applied"] == 20
    spend = {"id": "s1", "postings": [{"source": "member:m0:points",
             "destination": "store:s1:redemptions", "asset": "points", "amount": 10}]}  # fmt: skip
    assert (await client.post(f"{C}/transactions", json=spend)).status_code == 201
    assert (await balance(client, "m0"))["points"]["score"] == 150

    # The spend (today, after 2024's lots reached their instant but before the job
    # expired them) took the soonest-expiring lots: 2024's. Their other 30 expire
    # when the job runs; 2025's 20 stay.
    assert await run_all(pool, RuleBook(), datetime.fromisoformat("2026-01-01T00:00:01+08:00")) == 1
    assert (await balance(client, "m0"))["points"]["score"] == 120
    assert await run_all(pool, RuleBook(), datetime.fromisoformat("2026-06-01T00:00:00+08:00")) == 0
    # 2025's 20 expire when 2027 begins.
    assert await run_all(pool, RuleBook(), datetime.fromisoformat("2027-01-01T00:00:01+08:00")) == 1
    assert (await balance(client, "m0"))["points"]["score"] == 100
    r = await client.get(f"{C}/accounts/system:expired:points")
    assert r.json()["posted"] == 50
    entries = (await client.get(f"{C}/members/m0/statement")).json()["entries"]
    assert [(e["transaction_id"], e["amount"]) for e in entries if e["kind"] == "expiry"] == [
        ("expiry:points:20261231T160000Z:m0", -20),
        ("expiry:points:20251231T160000Z:m0", -30),
    ]
    assert entries[0]["reason"] == "积分过期"
