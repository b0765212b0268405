"""One write engine: a batch writes exactly what its items write one at a time.

Each scenario runs one batch twice, on two communities that start identical: once
as one call of ledger_write (decided in turn under its locks, then written set-based),
once item by item, each a batch of one. Outcomes, transactions, entries (their
order, legs and running balances), balances and the seal queue must match row for
row; and the batch is one database transaction with no subtransaction in it.
"""

from __future__ import annotations

import random
from typing import Any

import asyncpg
import pytest

from service.ledger import store
from service.ledger.model import NewTransaction, Outcome, Posting, RuleParams
from service.ledger.posting import plan_create, plan_post_pending, plan_void
from service.ledger.service import create
from service.setup import create_community, create_household, create_member
from tests.helpers import ISSUANCE, STORE

PARAMS = RuleParams()
MEMBERS = 12


async def _community(conn: asyncpg.Connection, name: str) -> None:
    await create_community(conn, name, name, "Asia/Shanghai", b"c")
    await create_household(conn, name, "h0", None, "acme", b"h")
    for m in range(MEMBERS):
        await create_member(conn, name, f"m{m}", "h0", None, b"m", PARAMS, language="zh-CN")
        if m % 3:  # balances of 100, 100 + 7, 100 + 14, …
            await _write_one(conn, name, f"a{m}", ISSUANCE, f"member:m{m}:points", 7 * (m % 3))


async def _write_one(
    conn: asyncpg.Connection, community: str, client_id: str, source: str, dest: str, amount: int
) -> None:
    tx = _tx(client_id, [(source, dest, amount)])
    _, replayed = await create(conn, community, tx, PARAMS)
    assert not replayed


@pytest.fixture(params=[False, True], ids=["batch", "group-commit"])
def skip_locked(request: pytest.FixtureRequest) -> bool:
    """Every scenario as an explicit batch and as a group commit writes it."""
    value: bool = request.param
    return value


@pytest.fixture
async def conn(pool: asyncpg.Pool) -> Any:
    async with pool.acquire() as c:
        for name in ("fast", "slow"):
            await _community(c, name)
        yield c


def _tx(
    client_id: str,
    legs: list[tuple[str, str, int]],
    *,
    pending: bool = False,
    ttl_s: int | None = None,
    memo: str | None = None,
) -> NewTransaction:
    postings = tuple(Posting(source=s, destination=d, asset="points", amount=a) for s, d, a in legs)
    return NewTransaction(
        client_id=client_id,
        postings=postings,
        request_hash=repr(legs).encode(),
        pending=pending,
        ttl_s=ttl_s,
        memo=memo,
        metadata={"n": client_id, "quote": 'a "b" \\ c', "text": "积分"} if memo else None,
        actor="test-key",
    )


def _writes(txs: list[NewTransaction]) -> list[store.Write]:
    return [
        store.create_write(tx, plan_create(tx.postings, PARAMS, pending=tx.pending)) for tx in txs
    ]


Outcomes = list[tuple[Any, ...]]  # each item's (outcome, failure, whether it has no expiry)


async def _run_both(
    conn: asyncpg.Connection, txs: list[NewTransaction], skip_locked: bool
) -> Outcomes:
    """Writes the batch at once and item by item and checks they did the same; with
    `skip_locked`, as the group commit writes it."""
    writes = _writes(txs)
    async with conn.transaction():
        fast = await store.write(conn, "fast", writes, skip_locked=skip_locked)
        # Read in the community's shard: on Citus the rows are written on the worker
        # that holds it, in the worker's own transaction, and a bare SELECT would
        # give the coordinator's xid (docs/scaling.md). On one server the same.
        top = await conn.fetchval(
            "SELECT pg_current_xact_id()::xid::text FROM accounts"
            " WHERE community_id = 'fast' LIMIT 1"
        )
    slow = [
        one for w in writes for one in await store.write(conn, "slow", [w], skip_locked=skip_locked)
    ]
    outcomes = [(c.outcome, c.failure, c.expires_at is None) for c in fast]
    assert outcomes == [(c.outcome, c.failure, c.expires_at is None) for c in slow]
    assert await _state(conn, "fast") == await _state(conn, "slow")
    await _ids_name_their_items(conn, "fast", txs, [c.row_id for c in fast])
    await _ids_name_their_items(conn, "slow", txs, [c.row_id for c in slow])
    await _written_by_one_transaction(conn, fast, top)
    return outcomes


async def _written_by_one_transaction(
    conn: asyncpg.Connection, done: list[store.Written], top: str
) -> None:
    """Every row the batch created carries the statement's own transaction id: the
    engine needs no subtransaction (which would take an xid of its own)."""
    ids = [c.row_id for c in done if c.outcome == Outcome.CREATED]
    apart = await conn.fetchval(
        "SELECT count(*) FROM transactions"
        " WHERE community_id = 'fast' AND id = ANY ($1::bigint[]) AND xmin::text <> $2",
        ids,
        top,
    )
    assert apart == 0


async def _ids_name_their_items(
    conn: asyncpg.Connection, community: str, txs: list[NewTransaction], ids: list[int | None]
) -> None:
    """Each result's row is the transaction with its item's client id (the new one,
    or the one a replay or conflict found)."""
    rows = await conn.fetch(
        "SELECT id, client_id FROM transactions WHERE community_id = $1", community
    )
    by_id = {r["id"]: r["client_id"] for r in rows}
    named = [None if i is None else by_id[i] for i in ids]
    assert named == [None if i is None else tx.client_id for tx, i in zip(txs, ids, strict=True)]


# Everything a batch writes, in write order, without ids and times.
_STATE = {
    "transactions": """
SELECT t.client_id, t.kind, t.status, t.request_hash, t.pending_postings, t.memo,
       t.metadata, t.reason, t.actor, t.expires_at - t.created_at AS ttl,
       t.finalized_at = t.created_at AS final_at_once, t.finalized_at IS NULL AS open
  FROM transactions t WHERE t.community_id = $1 ORDER BY t.id""",
    "entries": """
SELECT t.client_id, e.leg, a.address, e.amount, e.balance_after
  FROM entries e
  JOIN transactions t ON t.community_id = e.community_id AND t.id = e.tx_id
  JOIN accounts a ON a.community_id = e.community_id AND a.id = e.account_id
 WHERE e.community_id = $1 ORDER BY e.seq""",
    "accounts": """
SELECT address, asset, member_id, posted, held
  FROM accounts WHERE community_id = $1 ORDER BY address""",
    "queued": """
SELECT t.client_id
  FROM seal_queue q JOIN transactions t ON t.community_id = q.community_id AND t.id = q.tx_id
 WHERE q.community_id = $1 ORDER BY t.id""",
}


async def _state(conn: asyncpg.Connection, community: str) -> dict[str, list[tuple[Any, ...]]]:
    return {
        name: [tuple(r.values()) for r in await conn.fetch(query, community)]
        for name, query in _STATE.items()
    }


def transfers(prefix: str, count: int) -> list[NewTransaction]:
    """Issuance to m0, m1, … in turn, of 1 … 5 points."""
    return [
        _tx(f"{prefix}{i}", [(ISSUANCE, f"member:m{i % MEMBERS}:points", 1 + i % 5)])
        for i in range(count)
    ]


async def test_a_batch_that_all_succeeds(conn: asyncpg.Connection, skip_locked: bool) -> None:
    txs = transfers("t", 40)
    txs += [  # spends and member-to-member moves of what the batch just credited
        _tx(f"s{m}", [(f"member:m{m}:points", STORE, 3)], memo="soap") for m in range(MEMBERS)
    ]
    txs.append(
        _tx(
            "multi",
            [
                ("member:m1:points", "member:m2:points", 5),
                ("member:m2:points", "member:m3:points", 4),
                (ISSUANCE, "member:m1:points", 2),
                ("member:m3:points", STORE, 1),
            ],
        )
    )
    outcomes = await _run_both(conn, txs, skip_locked)
    assert {o for o, _, _ in outcomes} == {"created"}
    row = await conn.fetchrow(
        "SELECT request_hash, memo, metadata, actor FROM transactions"
        " WHERE community_id = 'fast' AND client_id = 's1'"
    )
    s1 = txs[41]
    assert (bytes(row["request_hash"]), row["memo"], row["metadata"], row["actor"]) == (
        s1.request_hash,
        s1.memo,
        s1.metadata,
        s1.actor,
    )


async def test_an_overspend_midway_is_refused_and_the_rest_applied(
    conn: asyncpg.Connection, skip_locked: bool
) -> None:
    txs = transfers("t", 10)
    txs.append(_tx("over", [("member:m0:points", STORE, 5)]))  # m0 has nothing redeemable…
    txs += transfers("u", 10)  # …until later in the batch
    txs.append(_tx("later", [("member:m0:points", STORE, 2)]))
    outcomes = await _run_both(conn, txs, skip_locked)
    assert [o for o, _, _ in outcomes].count("insufficient") == 1
    assert outcomes[10][0] == "insufficient" and outcomes[-1][0] == "created"


async def test_replays_conflicts_and_duplicates_inside_the_batch(
    conn: asyncpg.Connection, skip_locked: bool
) -> None:
    for community in ("fast", "slow"):
        await _write_one(conn, community, "old", ISSUANCE, "member:m4:points", 9)
    old = _tx("old", [(ISSUANCE, "member:m4:points", 9)])
    txs = transfers("t", 6)
    txs.append(old)  # a replay
    txs += transfers("u", 3)
    txs.append(_tx("old", [(ISSUANCE, "member:m4:points", 8)]))  # a conflict
    txs.append(txs[2])  # a replay of an item of this batch
    txs.append(_tx("t3", [(ISSUANCE, "member:m4:points", 50)]))  # a conflict with one
    outcomes = await _run_both(conn, txs, skip_locked)
    assert [o for o, _, _ in outcomes][6:] == [
        "replay",
        "created",
        "created",
        "created",
        "conflict",
        "replay",
        "conflict",
    ]


async def test_a_duplicate_inside_the_batch_alone(
    conn: asyncpg.Connection, skip_locked: bool
) -> None:
    txs = transfers("t", 5)
    txs.insert(3, txs[1])
    outcomes = await _run_both(conn, txs, skip_locked)
    assert [o for o, _, _ in outcomes] == ["created"] * 3 + ["replay"] + ["created"] * 2


async def test_unknown_members_and_a_first_item_that_fails(
    conn: asyncpg.Connection, skip_locked: bool
) -> None:
    txs = transfers("t", 4)
    txs.insert(2, _tx("ghost", [(ISSUANCE, "member:ghost:points", 5)]))
    outcomes = await _run_both(conn, txs, skip_locked)
    assert outcomes[2][0] == "not_found"
    txs = [_tx("first", [("member:m5:points", STORE, 10_000)]), *transfers("v", 4)]
    outcomes = await _run_both(conn, txs, skip_locked)
    assert outcomes[0][0] == "insufficient"


async def test_pending_items_hold_and_write_no_entries(
    conn: asyncpg.Connection, skip_locked: bool
) -> None:
    txs = transfers("t", 12)
    txs += [
        _tx(f"h{m}", [(f"member:m{m}:points", "property:acme:offsets", 1)], pending=True, ttl_s=60)
        for m in range(MEMBERS)
    ]
    txs.append(_tx("credit", [(ISSUANCE, "member:m0:points", 3)], pending=True))
    txs.append(_tx("after", [("member:m1:points", STORE, 1)]))
    outcomes = await _run_both(conn, txs, skip_locked)
    assert {o for o, _, _ in outcomes} == {"created"}
    reserved = await conn.fetchval(
        "SELECT pending_postings FROM transactions WHERE community_id = 'fast' AND client_id = 'h3'"
    )
    assert reserved == [
        {
            "source": "member:m3:points",
            "destination": "property:acme:offsets",
            "asset": "points",
            "amount": 1,
        }
    ]
    held = await conn.fetchval(
        "SELECT held FROM accounts WHERE community_id = 'fast' AND address = 'member:m1:points'"
    )
    assert held == 1


async def test_holds_count_against_later_spends_of_the_batch(
    conn: asyncpg.Connection, skip_locked: bool
) -> None:
    txs = transfers("t", 12)  # m0 gets 1 from t0, which the hold then takes
    txs.append(_tx("hold", [("member:m0:points", "property:acme:offsets", 1)], pending=True))
    txs.append(_tx("spend", [("member:m0:points", STORE, 1)]))
    txs.append(_tx("too-much", [("member:m0:points", STORE, 1)]))
    outcomes = await _run_both(conn, txs, skip_locked)
    assert [o for o, _, _ in outcomes][-3:] == ["created", "insufficient", "insufficient"]


async def test_a_random_mixed_batch(conn: asyncpg.Connection, skip_locked: bool) -> None:
    rng = random.Random(20261123)
    txs: list[NewTransaction] = []
    for i in range(400):
        m, n = rng.randrange(MEMBERS), rng.randrange(MEMBERS)
        kind = rng.random()
        if kind < 0.5:
            txs.append(_tx(f"r{i}", [(ISSUANCE, f"member:m{m}:points", rng.randint(1, 9))]))
        elif kind < 0.75 and m != n:
            txs.append(_tx(f"r{i}", [(f"member:m{m}:points", f"member:m{n}:points", 3)]))
        elif kind < 0.9:
            txs.append(_tx(f"r{i}", [(f"member:m{m}:points", STORE, rng.randint(1, 12))]))
        else:
            hold = (f"member:m{m}:points", "property:acme:offsets", rng.randint(1, 5))
            txs.append(_tx(f"r{i}", [hold], pending=True, ttl_s=rng.choice([None, 30])))
    outcomes = await _run_both(conn, txs, skip_locked)
    assert {"created", "insufficient"} <= {o for o, _, _ in outcomes}


async def test_posts_and_voids_share_a_batch_with_creates(conn: asyncpg.Connection) -> None:
    """Finishing pending transactions is a write like any other: in one batch, a
    post, a void (whose release lets a later spend through), a second post of the
    same transaction (already done by then) and a post of one that does not exist."""
    holds = [
        _tx(f"h{m}", [(f"member:m{m}:points", "property:acme:offsets", 4)], pending=True)
        for m in (1, 2)
    ]
    await store.write(conn, "fast", _writes([*transfers("t", 3), *holds]))
    ids = {
        r["client_id"]: r["id"]
        for r in await conn.fetch(
            "SELECT id, client_id FROM transactions WHERE community_id = 'fast'"
        )
    }
    reserved = {tx.client_id: tx.postings for tx in holds}
    post = plan_post_pending(reserved["h1"], None)[0]
    writes = [
        store.finish_write(ids["h1"], post),
        store.finish_write(ids["h2"], plan_void(reserved["h2"]), void_reason="cancelled"),
        *_writes([_tx("spend", [("member:m2:points", STORE, 9)])]),
        store.finish_write(ids["h1"], post),
        store.finish_write(10**12, post),
    ]
    done = await store.write(conn, "fast", writes)
    assert [d.outcome for d in done] == ["done", "done", "created", "posted", "not_found"]
    rows = await conn.fetch(
        "SELECT address, posted, held FROM accounts WHERE community_id = 'fast'"
        " AND address IN ('member:m1:points', 'member:m2:points') ORDER BY address"
    )
    # m1: 107 + 2 (t1) - 4 posted; m2: 114 + 3 (t2) - 9 spent; nothing held.
    assert [tuple(r.values()) for r in rows] == [
        ("member:m1:points", 105, 0),
        ("member:m2:points", 108, 0),
    ]
    statuses = await conn.fetch(
        "SELECT client_id, status, void_reason FROM transactions"
        " WHERE community_id = 'fast' AND client_id IN ('h1', 'h2') ORDER BY client_id"
    )
    assert [tuple(r.values()) for r in statuses] == [
        ("h1", "posted", None),
        ("h2", "voided", "cancelled"),
    ]
