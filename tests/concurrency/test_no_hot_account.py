"""Writes to different members never queue behind each other.

STYLE ("accounts without limits are not locked") and SPEC section 6 (sealing "never
serialises" the writes): only member accounts are locked by a write, so an
uncommitted write to one member must not delay issuances to, or spends of, any
other member: not through a system account, nor through a write shared with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest

from service.ledger.model import NewTransaction, Posting, RuleParams
from service.ledger.service import create
from tests.concurrency.common import send
from tests.helpers import ISSUANCE, STORE, C, award, balance, community, transfer


@asynccontextmanager
async def uncommitted(
    pool: asyncpg.Pool, source: str, destination: str, amount: int, *, commit: bool = True
) -> AsyncIterator[None]:
    """Runs the real write path for one transfer and keeps its database transaction open."""
    posting = Posting(source=source, destination=destination, asset="points", amount=amount)
    tx = NewTransaction(client_id="open", postings=(posting,), request_hash=b"open")
    async with pool.acquire() as conn:
        open_tx = conn.transaction()
        await open_tx.start()
        try:
            await create(conn, "green", tx, RuleParams())
            yield
        finally:
            await (open_tx.commit() if commit else open_tx.rollback())


async def still_waiting(tasks: list[asyncio.Task[Any]], seconds: float = 5) -> int:
    """How many of `tasks` are not done after `seconds` (they are left running)."""
    _, waiting = await asyncio.wait(tasks, timeout=seconds)
    return len(waiting)


async def test_other_members_do_not_wait_for_an_open_issuance(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """While issuance -> m0 is uncommitted, writes to m1 and m2 and reads complete at once."""
    await community(api, members=3)
    await award(api, "a1", "m1", 20)  # the issuance account exists from here on
    async with uncommitted(pool, ISSUANCE, "member:m0:points", 5):
        writes = [
            send(api, transfer("b1", ISSUANCE, "member:m1:points", 1)),
            send(api, transfer("b2", ISSUANCE, "member:m2:points", 2)),
            send(api, transfer("b3", "member:m1:points", STORE, 5)),
        ]
        reads = [
            asyncio.create_task(balance(api, "m0")),
            asyncio.create_task(api.get(f"{C}/accounts/{ISSUANCE}")),
        ]
        waiting = await still_waiting(writes + reads)
    await asyncio.gather(*writes, *reads)  # the open transaction is over: nothing hangs now
    assert waiting == 0, "a write to another member waited for the open issuance to m0"
    assert [w.result().status_code for w in writes] == [201, 201, 201]
    assert reads[0].result()["points"]["score"] == 100  # the open write was not visible
    scores = [(await balance(api, m))["points"]["score"] for m in ("m0", "m1", "m2")]
    assert scores == [105, 116, 102]


async def test_writes_sent_with_one_for_a_locked_member_do_not_wait(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """A write to m0 (locked by an open write) sent together with writes to m1 and m2: the
    m0 write waits, the others complete (they must not share its wait in a group commit)."""
    await community(api, members=3)
    await award(api, "a1", "m1", 1)
    await asyncio.gather(*(balance(api, "m1") for _ in range(11)))  # open the app's connections
    async with uncommitted(pool, ISSUANCE, "member:m0:points", 5):
        blocked = send(api, transfer("b0", ISSUANCE, "member:m0:points", 1))
        others = [
            send(api, transfer(f"b{n}", ISSUANCE, f"member:m{1 + n % 2}:points", 1))
            for n in range(1, 11)
        ]
        waiting = await still_waiting(others)
    await asyncio.gather(blocked, *others)
    assert waiting == 0, f"{waiting} of 10 writes to m1/m2 waited for the lock on m0"
    assert {r.result().status_code for r in [blocked, *others]} == {201}


async def test_writes_queued_behind_a_locked_member_do_not_stall_the_others(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """Several writes to m0 arrive one after another and all wait for its lock: a write to
    m1 sent after them still completes at once."""
    await community(api, members=2)
    await award(api, "a1", "m1", 1)
    async with uncommitted(pool, ISSUANCE, "member:m0:points", 5):
        blocked = []
        for n in range(6):
            blocked.append(send(api, transfer(f"b{n}", ISSUANCE, "member:m0:points", 1)))
            await asyncio.sleep(0.05)  # each arrives on its own, while the others wait
        other = send(api, transfer("c1", ISSUANCE, "member:m1:points", 1))
        waiting = await still_waiting([other])
    await asyncio.gather(*blocked, other)
    assert waiting == 0, "a write to m1 waited behind writes blocked on m0's lock"
    assert (await balance(api, "m0"))["points"]["score"] == 111


async def test_a_write_to_the_locked_member_waits_for_it(
    api: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """The control: an issuance to m0 does wait while another write to m0 is uncommitted."""
    await community(api, members=1)
    await award(api, "a1", "m0", 1)  # the issuance account exists from here on
    async with uncommitted(pool, ISSUANCE, "member:m0:points", 5):
        credit = send(api, transfer("b1", ISSUANCE, "member:m0:points", 2))
        done, _ = await asyncio.wait({credit}, timeout=0.5)
        waited = not done
    assert (await credit).status_code == 201
    assert waited, "the write to m0 did not wait for the open write to m0: is m0 locked at all?"
    assert (await balance(api, "m0"))["points"]["score"] == 108


@pytest.mark.parametrize("commit", [True, False])
async def test_a_spend_waits_for_an_open_spend_and_cannot_double_spend(
    api: httpx.AsyncClient, pool: asyncpg.Pool, commit: bool
) -> None:
    """m0 may redeem 1 and an uncommitted spend takes it: a second spend of 1 waits, then is
    refused if the first committed, and succeeds if it rolled back."""
    await community(api, members=1)
    await award(api, "a1", "m0", 1)
    async with uncommitted(pool, "member:m0:points", STORE, 1, commit=commit):
        spend = send(api, transfer("s1", "member:m0:points", STORE, 1))
        done, _ = await asyncio.wait({spend}, timeout=0.5)
        waited = not done
    response = await spend
    assert waited, "the second spend did not wait for the open spend of the same member"
    assert response.status_code == (409 if commit else 201), response.text
    assert (await balance(api, "m0"))["points"]["score"] == 100


async def test_200_concurrent_issuances_to_50_members(api: httpx.AsyncClient) -> None:
    """200 issuances to 50 members at once: all succeed; every member and the issuer exact."""
    members = [f"m{i}" for i in range(50)]
    await community(api, members=len(members), households=5)
    bodies = [
        transfer(f"i{n}", ISSUANCE, f"member:m{n % 50}:points", 1 + n % 7) for n in range(200)
    ]
    responses = await asyncio.gather(*(api.post(f"{C}/transactions", json=b) for b in bodies))
    assert [r.status_code for r in responses] == [201] * 200, [
        r.text for r in responses if r.status_code != 201
    ]
    expected = {m: 100 for m in members}
    for n, body in enumerate(bodies):
        expected[f"m{n % 50}"] += body["postings"][0]["amount"]
    got = await asyncio.gather(*(balance(api, m) for m in members))
    assert {m: b["points"]["score"] for m, b in zip(members, got, strict=True)} == expected
    issued = (await api.get(f"{C}/accounts/{ISSUANCE}")).json()["posted"]
    assert issued == -sum(expected.values()) + 100 * len(members)
