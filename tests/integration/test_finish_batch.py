"""ledger_finish_batch (0008): many posts and voids in one call, each with its own
outcome, and a group that never waits for a lock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from service.ledger import store
from service.ledger.model import NewTransaction, Posting, RuleParams
from service.ledger.posting import Plan, plan_post_pending, plan_void
from service.ledger.service import create_transaction
from service.setup import create_community, create_household, create_member

PARAMS = RuleParams()
STORE = "store:s1:redemptions"
ISSUANCE = "system:issuance:points"


async def _hold(
    conn: asyncpg.Connection, client_id: str, member: str, amount: int, ttl_s: int = 60
) -> None:
    posting = Posting(
        source=f"member:{member}:points", destination=STORE, asset="points", amount=amount
    )
    tx = NewTransaction(
        client_id=client_id, postings=(posting,), request_hash=b"h", pending=True, ttl_s=ttl_s
    )
    await create_transaction(conn, "green", tx, PARAMS)


@pytest.fixture
async def conn(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """Community green with members m0 … m2, 100 points each (their baseline), and
    50 more for m0 and m1 to hold."""
    async with pool.acquire() as c:
        await create_community(c, "green", "Green", "Asia/Shanghai", b"c")
        await create_household(c, "green", "h0", None, "acme", b"h")
        for m in range(3):
            await create_member(c, "green", f"m{m}", "h0", None, b"m", PARAMS)
        for m in ("m0", "m1"):
            posting = Posting(
                source=ISSUANCE, destination=f"member:{m}:points", asset="points", amount=50
            )
            award = NewTransaction(client_id=f"a-{m}", postings=(posting,), request_hash=b"a")
            await create_transaction(c, "green", award, PARAMS)
        yield c


async def _item(
    conn: asyncpg.Connection, client_id: str, status: str, amount: int | None = None
) -> store.Finish:
    found = await store.get_tx(conn, "green", client_id=client_id)
    assert found is not None and found[0].reserved is not None
    reserved = found[0].reserved
    if status == "voided":
        plan = plan_void(reserved)
        return store.Finish(row_id=found[0].row_id, status=status, void_reason="x", plan=plan)
    plan, _ = plan_post_pending(reserved, amount)
    return store.Finish(row_id=found[0].row_id, status=status, plan=plan)


async def _points(conn: asyncpg.Connection, member: str) -> tuple[int, int]:
    row = await conn.fetchrow(
        "SELECT posted, held FROM accounts WHERE community_id = 'green' AND address = $1",
        f"member:{member}:points",
    )
    assert row is not None
    return row["posted"], row["held"]


async def _status(conn: asyncpg.Connection, client_id: str) -> dict[str, Any]:
    row = await conn.fetchrow(
        "SELECT status, void_reason, xmin::text AS xid FROM transactions"
        " WHERE community_id = 'green' AND client_id = $1",
        client_id,
    )
    assert row is not None
    return dict(row)


def _any_plan() -> Plan:
    """A plan for a transaction that does not exist: any valid plan will do."""
    posting = Posting(source="member:m2:points", destination=STORE, asset="points", amount=1)
    return plan_void((posting,))


async def test_each_item_has_its_own_outcome_in_one_commit(conn: asyncpg.Connection) -> None:
    """Posts (in full and partial), a void, an expired post, finished and unknown
    transactions, and one transaction twice: ledger_finish_tx's outcome for each."""
    await _hold(conn, "post", "m0", 10)
    await _hold(conn, "partial", "m1", 30)
    await _hold(conn, "void", "m0", 5)
    await _hold(conn, "twice", "m1", 4)
    await _hold(conn, "expired", "m0", 7, ttl_s=1)
    await _hold(conn, "was-posted", "m0", 1)
    await _hold(conn, "was-voided", "m0", 2)
    await store.finish_tx(conn, "green", await _item(conn, "was-posted", "posted"))
    await store.finish_tx(conn, "green", await _item(conn, "was-voided", "voided"))
    await asyncio.sleep(1.1)  # "expired" is past its ttl
    items = [
        await _item(conn, "post", "posted"),
        await _item(conn, "partial", "posted", amount=20),
        await _item(conn, "void", "voided"),
        await _item(conn, "twice", "posted"),
        await _item(conn, "twice", "voided"),
        await _item(conn, "expired", "posted"),
        await _item(conn, "was-posted", "voided"),
        await _item(conn, "was-voided", "posted"),
        store.Finish(row_id=10**12, status="posted", plan=_any_plan()),
    ]
    results = await store.finish_batch(conn, "green", items)
    assert [r.outcome for r in results] == [
        "done",
        "done",
        "done",
        "done",
        "posted",  # the first item for "twice" posted it
        "expired",
        "posted",
        "voided",
        "not_found",
    ]
    assert all((r.finalized_at is None) == (r.outcome != "done") for r in results)
    done = [await _status(conn, c) for c in ("post", "partial", "void", "twice")]
    assert [(s["status"], s["void_reason"]) for s in done] == [
        ("posted", None),
        ("posted", None),
        ("voided", "x"),
        ("posted", None),
    ]
    assert len({s["xid"] for s in done}) == 1, "the items did not share one commit"
    assert (await _status(conn, "expired"))["status"] == "pending"
    # m0: 150 - 10 posted - 1 posted earlier, 7 still held; m1: 150 - 20 - 4.
    assert await _points(conn, "m0") == (139, 7)
    assert await _points(conn, "m1") == (126, 0)


async def test_a_locked_transaction_or_member_is_busy_and_never_waited_for(
    conn: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    """Another transaction holds one hold's row and m1's points account: those items
    come back busy with nothing written, the others are done, and the call returns
    while the locks are still held. Alone (ledger_finish_tx) they finish afterwards."""
    await _hold(conn, "row-locked", "m0", 3)
    await _hold(conn, "member-locked", "m1", 4)
    await _hold(conn, "free", "m0", 5)
    await _hold(conn, "free-void", "m0", 6)
    items = [
        await _item(conn, "row-locked", "posted"),
        await _item(conn, "member-locked", "posted"),
        await _item(conn, "free", "posted"),
        await _item(conn, "free-void", "voided"),
    ]
    async with pool.acquire() as holder, holder.transaction():
        await holder.execute(
            "SELECT 1 FROM transactions WHERE community_id = 'green' AND id = $1 FOR UPDATE",
            items[0].row_id,
        )
        await holder.execute(
            "SELECT 1 FROM accounts WHERE community_id = 'green'"
            " AND address = 'member:m1:points' FOR UPDATE"
        )
        results = await asyncio.wait_for(store.finish_batch(conn, "green", items), 10)
        assert [r.outcome for r in results] == ["busy", "busy", "done", "done"]
        assert (await _status(conn, "row-locked"))["status"] == "pending"
        assert (await _status(conn, "member-locked"))["status"] == "pending"
        assert await _points(conn, "m1") == (150, 4)
    for item in items[:2]:
        assert (await store.finish_tx(conn, "green", item)).outcome == "done"
    assert await _points(conn, "m0") == (150 - 3 - 5, 0)
    assert await _points(conn, "m1") == (150 - 4, 0)


async def test_an_empty_group_returns_nothing(conn: asyncpg.Connection) -> None:
    assert await store.finish_batch(conn, "green", []) == []
