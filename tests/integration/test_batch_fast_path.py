"""The set-based fast path of ledger_create_batch (0005) writes exactly what the
item-by-item function of 0002 writes.

Each scenario runs one batch twice, on two communities that start identical: once
through today's ledger_create_batch, once through the 0002 definition loaded under
another name. Outcomes, transactions, entries (their order, legs and running
balances), balances and the seal queue must match row for row.
"""

from __future__ import annotations

import random
import re
from typing import Any

import asyncpg
import pytest

from service.db import q, sql_dir
from service.ledger import store
from service.ledger.model import NewTransaction, Posting, RuleParams
from service.ledger.posting import Plan, plan_create
from service.ledger.service import create_transaction
from service.setup import create_community, create_household, create_member

PARAMS = RuleParams()
MEMBERS = 12
ISSUANCE = "system:issuance:points"
STORE = "store:s1:redemptions"


def _reference_function() -> str:
    """0002's ledger_create_batch, renamed: the item-by-item reference."""
    text = (sql_dir() / "migrations" / "0002_ledger_functions.sql").read_text()
    match = re.search(r"CREATE FUNCTION ledger_create_batch\(.*?\n\$\$;", text, re.DOTALL)
    assert match is not None
    return match.group(0).replace("ledger_create_batch(", "ledger_create_batch_0002(", 1)


async def _community(conn: asyncpg.Connection, name: str) -> None:
    await create_community(conn, name, name, "Asia/Shanghai", b"c")
    await create_household(conn, name, "h0", None, "acme", b"h")
    for m in range(MEMBERS):
        await create_member(conn, name, f"m{m}", "h0", None, b"m", PARAMS)
        if m % 3:  # balances of 100, 100 + 7, 100 + 14, …
            await _write_one(conn, name, f"a{m}", ISSUANCE, f"member:m{m}:points", 7 * (m % 3))


async def _write_one(
    conn: asyncpg.Connection, community: str, client_id: str, source: str, dest: str, amount: int
) -> None:
    tx = _tx(client_id, [(source, dest, amount)])
    _, replayed = await create_transaction(conn, community, tx, PARAMS)
    assert not replayed


@pytest.fixture(params=[False, True], ids=["batch", "group-commit"])
def skip_locked(request: pytest.FixtureRequest) -> bool:
    """Every scenario as an explicit batch and as a group commit writes it."""
    value: bool = request.param
    return value


@pytest.fixture
async def conn(pool: asyncpg.Pool) -> Any:
    async with pool.acquire() as c:
        await c.execute(_reference_function())
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


def _planned(txs: list[NewTransaction]) -> list[tuple[NewTransaction, Plan]]:
    return [(tx, plan_create(tx.postings, PARAMS, pending=tx.pending)) for tx in txs]


class Outcomes(list[tuple[Any, ...]]):
    """Each item's (outcome, failure, whether it has no expiry), equal on both paths;
    `fast` counts the leading items the fast path wrote."""

    fast: int


async def _run_both(
    conn: asyncpg.Connection, txs: list[NewTransaction], skip_locked: bool
) -> Outcomes:
    """Writes the batch through both functions and checks they did the same; with
    `skip_locked`, as the group commit writes it."""
    items = _planned(txs)
    async with conn.transaction():
        fast = await store.create_batch(conn, "fast", items, skip_locked=skip_locked)
        top = await conn.fetchval("SELECT pg_current_xact_id()::xid::text")
    reference = q("tx_create_batch").replace("ledger_create_batch(", "ledger_create_batch_0002(")
    slow = await conn.fetch(reference, "slow", store._batch_document(items), skip_locked)
    assert [r["idx"] for r in slow] == list(range(1, len(txs) + 1))
    outcomes = Outcomes((c.outcome, c.failure, c.expires_at is None) for c in fast)
    assert outcomes == [(r["outcome"], r["failure"], r["expires_at"] is None) for r in slow]
    assert await _state(conn, "fast") == await _state(conn, "slow")
    await _ids_name_their_items(conn, "fast", txs, [c.row_id for c in fast])
    await _ids_name_their_items(conn, "slow", txs, [r["tx_id"] for r in slow])
    outcomes.fast = await _written_apart(conn, fast, top)
    return outcomes


async def _written_apart(conn: asyncpg.Connection, created: list[store.Created], top: str) -> int:
    """How many leading items were written in a subtransaction (the fast path's
    block) rather than by the statement's own transaction `top`."""
    ids = [c.row_id for c in created if c.outcome == "created"]
    rows = await conn.fetch(
        "SELECT id, xmin::text <> $2 AS apart FROM transactions"
        " WHERE community_id = 'fast' AND id = ANY ($1::bigint[])",
        ids,
        top,
    )
    apart = {r["id"]: r["apart"] for r in rows}
    flags = [c.outcome == "created" and apart[c.row_id] for c in created]
    count = flags.index(False) if False in flags else len(flags)
    assert not any(flags[count:]), "the fast path writes a leading run of items only"
    return count


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
    assert outcomes.fast == len(txs)
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
    assert outcomes.fast == 10


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
    assert outcomes.fast == 6


async def test_a_duplicate_inside_the_batch_alone(
    conn: asyncpg.Connection, skip_locked: bool
) -> None:
    txs = transfers("t", 5)
    txs.insert(3, txs[1])
    outcomes = await _run_both(conn, txs, skip_locked)
    assert [o for o, _, _ in outcomes] == ["created"] * 3 + ["replay"] + ["created"] * 2
    assert outcomes.fast == 3


async def test_unknown_members_and_a_first_item_that_fails(
    conn: asyncpg.Connection, skip_locked: bool
) -> None:
    txs = transfers("t", 4)
    txs.insert(2, _tx("ghost", [(ISSUANCE, "member:ghost:points", 5)]))
    outcomes = await _run_both(conn, txs, skip_locked)
    assert outcomes[2][0] == "not_found" and outcomes.fast == 2
    txs = [_tx("first", [("member:m5:points", STORE, 10_000)]), *transfers("v", 4)]
    outcomes = await _run_both(conn, txs, skip_locked)
    assert outcomes[0][0] == "insufficient" and outcomes.fast == 0


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
    assert outcomes.fast == len(txs)
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
    assert outcomes.fast == len(txs) - 2


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
    first_refused = next(i for i, (o, _, _) in enumerate(outcomes) if o != "created")
    assert outcomes.fast == (first_refused if first_refused >= 2 else 0)


async def test_the_fast_path_stops_at_the_first_item_it_cannot_be_sure_of(
    conn: asyncpg.Connection,
) -> None:
    """ledger_batch_first_unsure names the item where item-by-item writing must take over."""
    assert await conn.fetchval("SELECT ledger_batch_item_of('{2,3,5}')") == [1, 1, 2, 3, 3]
    assert await conn.fetchval("SELECT ledger_batch_item_of('{0,2}')") == [2, 2]
    cases = {
        "all sure": (transfers("t", 5), 6),
        "overspend": ([*transfers("t", 3), _tx("x", [("member:m0:points", STORE, 5)])], 4),
        "duplicate": ([*transfers("t", 3), transfers("t", 2)[1]], 4),
        "ghost": ([*transfers("t", 2), _tx("g", [(ISSUANCE, "member:g:points", 1)])], 3),
    }
    for name, (txs, first) in cases.items():
        items = _planned(txs)
        found = await conn.fetchval(_FIRST_UNSURE, "fast", store._batch_document(items))
        assert found == first, name


_FIRST_UNSURE = """
SELECT ledger_batch_first_unsure(
           $1, b.client_ids, ledger_batch_item_of(b.acct_end),
           ledger_account_ids($1, b.addrs, b.assets), b.member, b.posted, b.held, b.min,
           l.ids, l.posted, l.held)
  FROM jsonb_populate_record(NULL::ledger_batch, $2::text::jsonb) AS b,
       LATERAL (SELECT array_agg(a.id) AS ids, array_agg(a.posted) AS posted,
                       array_agg(a.held) AS held
                  FROM accounts a
                 WHERE a.community_id = $1 AND a.member_id IS NOT NULL
                   AND a.address = ANY (b.addrs)) AS l
"""
