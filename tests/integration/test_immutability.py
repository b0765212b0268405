"""The database itself keeps the ledger's history append-only, and the hash chain
detects what a superuser changes behind its back (SPEC section 6)."""

from __future__ import annotations

import asyncpg
import pytest

from service.ledger.service import seal_all
from tests import citus_support
from tests.helpers import C, Client, award, community, transfer


async def sealed_ledger(client: Client, pool: asyncpg.Pool) -> None:
    """Community `green`: an award, a spend, a voided and a pending hold; final ones sealed."""
    await community(client, members=1)
    await award(client, "a1", "m0", 50)
    spend = transfer("t1", "member:m0:points", "store:s1:redemptions", 10, memo="soap")
    assert (await client.post(f"{C}/transactions", json=spend)).status_code == 201
    for tx_id in ("h1", "h2"):
        hold = transfer(
            tx_id, "member:m0:points", "property:acme:offsets", 5, pending={"ttl_s": 60}
        )
        assert (await client.post(f"{C}/transactions", json=hold)).status_code == 201
    assert (await client.post(f"{C}/transactions/h1/void")).status_code == 200
    assert await seal_all(pool) > 0


REFUSED = (
    "UPDATE entries SET amount = amount + 1",
    "UPDATE entries SET created_at = now()",
    "DELETE FROM entries",
    "TRUNCATE entries",
    "UPDATE seals SET digest = hash",
    "DELETE FROM seals",
    "TRUNCATE seals",
    "UPDATE transactions SET memo = 'changed' WHERE status = 'posted'",
    "UPDATE transactions SET status = 'pending', finalized_at = NULL WHERE status = 'voided'",
    "UPDATE transactions SET memo = 'changed' WHERE status = 'pending'",
    "DELETE FROM transactions",
    "TRUNCATE transactions",
)


async def sqlstate_of(conn: asyncpg.Connection, statement: str) -> str | None:
    """The SQLSTATE `statement` fails with (None if it succeeds); rolled back either way, so a
    missing guard fails this test alone and leaves the ledger whole."""
    attempt = conn.transaction()
    await attempt.start()
    try:
        await conn.execute(statement)
        return None
    except asyncpg.PostgresError as err:
        return str(err.sqlstate)
    finally:
        await attempt.rollback()


async def test_history_cannot_be_rewritten(client: Client, pool: asyncpg.Pool) -> None:
    """Every statement that would rewrite history fails with SQLSTATE LG403."""
    await sealed_ledger(client, pool)
    async with pool.acquire() as conn:
        outcomes = {statement: await sqlstate_of(conn, statement) for statement in REFUSED}
    assert outcomes == dict.fromkeys(REFUSED, "LG403")


# name: (table, its guarding trigger, the sealed transaction, the forgery, its exact undo).
# The last two change what statements and `as_of` balances report (entry times) and
# when a hold was due to expire.
TAMPERING = {
    "entry amount": (
        "entries",
        "entries_append_only",
        "t1",
        "UPDATE entries SET amount = amount + 1 WHERE tx_id = $1 AND leg = 1",
        "UPDATE entries SET amount = amount - 1 WHERE tx_id = $1 AND leg = 1",
    ),
    "transaction memo": (
        "transactions",
        "transactions_guard",
        "t1",
        "UPDATE transactions SET memo = 'forged' WHERE id = $1",
        "UPDATE transactions SET memo = 'soap' WHERE id = $1",
    ),
    "entry time": (
        "entries",
        "entries_append_only",
        "t1",
        "UPDATE entries SET created_at = created_at + interval '24 hours' WHERE tx_id = $1",
        "UPDATE entries SET created_at = created_at - interval '24 hours' WHERE tx_id = $1",
    ),
    "hold expiry": (
        "transactions",
        "transactions_guard",
        "h1",
        "UPDATE transactions SET expires_at = expires_at + interval '24 hours' WHERE id = $1",
        "UPDATE transactions SET expires_at = expires_at - interval '24 hours' WHERE id = $1",
    ),
}


async def tamper(conn: asyncpg.Connection, table: str, trigger: str, change: str, row: int) -> None:
    """As a superuser: guard off, change, guard on, in one transaction nobody else sees half of."""
    async with conn.transaction():
        await conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
        assert await conn.execute(change, row) != "UPDATE 0"
        await conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER {trigger}")


async def tamper_anywhere(
    conn: asyncpg.Connection, dsn: str, citus: bool, table: str, trigger: str, change: str, row: int
) -> None:
    """`tamper`, where the rows are. On Citus (docs/scaling.md) a distributed table
    takes no `DISABLE TRIGGER` ("triggers are not supported on distributed tables"),
    so the superuser does it on `green`'s shard, on the worker that holds it: the
    shard's copy of the trigger is named after the shard, and changes made to a
    shard directly need `citus.enable_manual_changes_to_shards`."""
    if not citus:
        await tamper(conn, table, trigger, change, row)
        return
    node, shard, shard_id = await citus_support.shard_of(dsn, table, "green")
    on_node = await asyncpg.connect(node)
    try:
        await on_node.execute("SET citus.enable_manual_changes_to_shards = on")
        on_shard = change.replace(f"UPDATE {table} ", f"UPDATE {shard} ", 1)
        await tamper(on_node, shard, f"{trigger}_{shard_id}", on_shard, row)
    finally:
        await on_node.close()


@pytest.mark.parametrize("name", list(TAMPERING))
async def test_audit_detects_a_change_to_a_sealed_transaction(
    client: Client, pool: asyncpg.Pool, dsn: str, citus: bool, name: str
) -> None:
    """A sealed transaction changed with its guard switched off breaks the hash chain, which
    audit/verify reports; once the change is undone the audit passes again."""
    table, trigger, client_id, forge, undo = TAMPERING[name]
    await sealed_ledger(client, pool)
    async with pool.acquire() as conn:
        row = await conn.fetchval(
            "SELECT t.id FROM transactions t JOIN seals s"
            " ON s.community_id = t.community_id AND s.tx_id = t.id WHERE t.client_id = $1",
            client_id,
        )
        assert row is not None, f"{client_id} is not sealed"
        await tamper_anywhere(conn, dsn, citus, table, trigger, forge, row)
        try:
            report = (await client.get(f"{C}/audit/verify")).json()
        finally:
            await tamper_anywhere(conn, dsn, citus, table, trigger, undo, row)
    checks = {p["check"] for p in report["problems"]}
    assert "hash_chain" in checks, f"audit/verify missed a changed {name}: {report}"
    assert (await client.get(f"{C}/audit/verify")).json()["ok"] is True
