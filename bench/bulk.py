"""Scenario 7's data: a large community bulk-loaded in SQL, not through HTTP.

Community `scale`: `members` members (s0 … s{n-1}, 100 per household), each with
its two accounts and the opening transaction the service would have written,
then transfers from issuance to members chosen by a fixed hash, until there are
`postings` postings (one per transaction). Every `k`-th transfer goes to the
statement member s0, so that it ends with `statement_entries` entries spread
over the whole table, as a year of real use would leave them.

Invariants kept: each transaction's entries sum to zero; a member account's
`posted` is the sum of its entries and `balance_after` their running sum;
accounts without limits hold the sum of their entries in `posted` as if sealed.
What is not done: the hash chain. Nothing of `scale` is in `seals` or
`seal_queue`, so audit/verify would report its transactions as unsealed.

Foreign keys are not checked during the load (`session_replication_role =
replica`; the data is generated consistent), and the secondary indexes of
`entries` are dropped for the load and rebuilt after it, which is much faster
than inserting 20 million keys in random order.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import asyncpg

COMMUNITY = "scale"
STATEMENT_MEMBER = "s0"
BASELINE = 100
MULT = 2654435761  # Knuth's multiplicative hash: spreads transfers over members

_SESSION = """
SET session_replication_role = replica;
SET work_mem = '2GB';
SET maintenance_work_mem = '2GB';
SET synchronous_commit = on;
"""

_SECONDARY_INDEXES = """
SELECT i.indexname, i.indexdef
  FROM pg_indexes i
 WHERE i.schemaname = 'public' AND i.tablename = 'entries'
   AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)
"""


async def _reserve(conn: asyncpg.Connection, table: str, column: str, count: int) -> int:
    """The first of `count` fresh values of the sequence behind `table.column`
    (the service is idle meanwhile, so nothing else takes values in between)."""
    sequence = await conn.fetchval("SELECT pg_get_serial_sequence($1, $2)", table, column)
    sequence = sequence or "entry_seq"
    last: int = await conn.fetchval(
        "SELECT setval($1::regclass, nextval($1::regclass) + $2 - 1)", sequence, count
    )
    return last - count + 1


_COMMUNITY = """
INSERT INTO communities (id, name, timezone, request_hash)
VALUES ('{c}', 'Scale', 'Asia/Shanghai', '\\x00'::bytea);
INSERT INTO chain_heads (community_id) VALUES ('{c}');
INSERT INTO households (community_id, id, property_company, request_hash)
SELECT '{c}', 'sh' || g, 'acme', '\\x00'::bytea FROM generate_series(0, {last_household}) g;
INSERT INTO members (community_id, id, household_id, request_hash)
SELECT '{c}', 's' || g, 'sh' || (g / 100), '\\x00'::bytea FROM generate_series(0, {last_member}) g
"""
# Transaction g (0 … postings-1): the first `members` are openings, the rest transfers.
_TRANSACTIONS = """
INSERT INTO transactions (id, community_id, client_id, request_hash, kind, status,
                          reason, actor, created_at, finalized_at) OVERRIDING SYSTEM VALUE
SELECT {t0} + g, '{c}',
       CASE WHEN g < {members} THEN 's' || g || ':opening'
            ELSE 'bulk-' || lpad(g::text, 12, '0') END,
       CASE WHEN g < {members} THEN 'opening'::bytea
            ELSE decode(lpad(to_hex(g), 32, '0'), 'hex') END,
       CASE WHEN g < {members} THEN 'opening' ELSE 'transfer' END, 'posted',
       CASE WHEN g < {members} THEN '基础分' END,  -- service/i18n: opening_balance, zh-CN
       CASE WHEN g >= {members} THEN 'env-admin' END, {ts}, {ts}
  FROM generate_series(0, {last_posting}) g
"""
# Leg 0 debits the source, leg 1 credits the member with its running balance; rows
# go in in entry order, so a member's entries lie scattered over the whole table.
_ENTRIES = """
INSERT INTO entries (community_id, tx_id, leg, account_id, seq, amount, balance_after, created_at)
WITH legs AS (
    SELECT g, CASE WHEN g < {members} THEN {opening} ELSE {issuance} END AS src,
           {a0} + 1 + 2 * CASE WHEN g < {members} THEN g
                               WHEN (g - {members}) % {every} = 0 THEN 0
                               ELSE g * {mult}::bigint % {members} END AS dst,
           CASE WHEN g < {members} THEN {baseline} ELSE 1 + g % 10 END AS amount
      FROM generate_series(0, {last_posting}) g)
SELECT '{c}', {t0} + g, 0, src, {e0} + 2 * g, -amount, NULL::bigint, {ts} FROM legs
UNION ALL
SELECT '{c}', {t0} + g, 1, dst, {e0} + 2 * g + 1, amount,
       sum(amount) OVER (PARTITION BY dst ORDER BY g), {ts} FROM legs
ORDER BY 5
"""
# Member k's minutes account is a0 + 2k, its points account a0 + 2k + 1.
_ACCOUNTS = """
INSERT INTO accounts (id, community_id, address, asset, member_id, posted)
    OVERRIDING SYSTEM VALUE
WITH totals AS (SELECT account_id, sum(amount)::bigint AS total FROM entries
                 WHERE community_id = '{c}' GROUP BY account_id),
     opened AS (
         SELECT {a0} + 2 * g + k AS id,
                'member:s' || g || CASE k WHEN 0 THEN ':minutes' ELSE ':points' END AS address,
                CASE k WHEN 0 THEN 'minutes' ELSE 'points' END AS asset, 's' || g AS member_id
           FROM generate_series(0, {last_member}) g, (VALUES (0), (1)) k(k)
         UNION ALL
         VALUES ({opening}, 'system:opening:points', 'points', NULL),
                ({issuance}, 'system:issuance:points', 'points', NULL),
                ({store}, 'store:s1:redemptions', 'points', NULL))
SELECT o.id, '{c}', o.address, o.asset, o.member_id, coalesce(t.total, 0)
  FROM opened o LEFT JOIN totals t ON t.account_id = o.id
 ORDER BY o.id
"""


def _statements(
    members: int, postings: int, every: int, a0: int, t0: int, e0: int
) -> list[tuple[str, str]]:
    p = {
        "c": COMMUNITY,
        "members": members,
        "every": every,
        "a0": a0,
        "t0": t0,
        "e0": e0,
        "last_member": members - 1,
        "last_household": (members - 1) // 100,
        "last_posting": postings - 1,
        "mult": MULT,
        "baseline": BASELINE,
        "opening": a0 + 2 * members,
        "issuance": a0 + 2 * members + 1,
        "store": a0 + 2 * members + 2,
        "ts": f"(now() - interval '365 days' + g * (interval '365 days' / {postings}))",
    }
    return [
        ("community, households, members", _COMMUNITY.format(**p)),
        ("transactions", _TRANSACTIONS.format(**p)),
        ("entries", _ENTRIES.format(**p)),
        ("accounts", _ACCOUNTS.format(**p)),
    ]


class _Steps:
    """Runs SQL steps on one connection, timing and announcing each."""

    def __init__(self, conn: asyncpg.Connection, say: Callable[[str], None]) -> None:
        self.conn = conn
        self.say = say
        self.timings: dict[str, float] = {}

    async def run(self, name: str, *statements: str) -> None:
        start = time.perf_counter()
        for sql in statements:
            await self.conn.execute(sql)
        self.timings[name] = round(time.perf_counter() - start, 1)
        self.say(f"  bulk load: {name} in {self.timings[name]} s")


async def load(
    dsn: str, members: int, postings: int, statement_entries: int, say: Callable[[str], None]
) -> dict[str, float]:
    """Loads the community; returns seconds per step."""
    every = max(1, (postings - members) // statement_entries)
    conn = await asyncpg.connect(dsn, command_timeout=None)
    steps = _Steps(conn, say)
    try:
        await conn.execute(_SESSION)
        a0 = await _reserve(conn, "accounts", "id", 2 * members + 3)
        t0 = await _reserve(conn, "transactions", "id", postings)
        e0 = await _reserve(conn, "entries", "seq", 2 * postings)
        dropped = await conn.fetch(_SECONDARY_INDEXES)
        await steps.run(
            "drop secondary indexes of entries",
            *(f'DROP INDEX "{r["indexname"]}"' for r in dropped),
        )
        try:
            for name, sql in _statements(members, postings, every, a0, t0, e0):
                await steps.run(name, sql)
        finally:
            await steps.run("rebuild secondary indexes", *(r["indexdef"] for r in dropped))
        await conn.execute("RESET session_replication_role")
        tables = ("accounts", "members", "households", "transactions", "entries")
        await steps.run(
            "vacuum, analyze, checkpoint", *(f"VACUUM (ANALYZE) {t}" for t in tables), "CHECKPOINT"
        )
    finally:
        await conn.close()
    return steps.timings


# The service's own audit queries, less the two about sealing (see the docstring).
_CHECKS = (
    "audit_unbalanced",
    "audit_stored_balances",
    "audit_held",
    "audit_asset_sums",
    "audit_running_balances",
)


async def verify(dsn: str, say: Callable[[str], None]) -> dict[str, int]:
    """Offending rows per audit check on the loaded community (all zero when sound)."""
    from service.db import q  # the service's audit queries, read as they are

    conn = await asyncpg.connect(dsn, command_timeout=None)
    found: dict[str, int] = {}
    try:
        await conn.execute("SET work_mem = '1GB'")
        for check in _CHECKS:
            start = time.perf_counter()
            found[check] = len(await conn.fetch(q(check), COMMUNITY))
            say(f"  verify: {check} {found[check]} rows in {time.perf_counter() - start:.1f} s")
        found["audit_limits"] = len(await conn.fetch(q("audit_limits"), COMMUNITY, 0))
    finally:
        await conn.close()
    return found
