"""One source of order per community on a Citus cluster (docs/scaling.md, "Why some
ids came from the coordinator").

Citus hands out a sequence's values from a range of each node's own (`groupid <<
48`): a row whose id is taken on the coordinator (a function call Citus did not
delegate, whose statements the coordinator routes to the shards) is numbered from
1, one taken inside a function delegated to the worker from that worker's range.
Entries are ordered by `seq` (the audit's running balance, an account's statement
and its cursor), transactions by id (the lots' epoch), outbox events by seq
(delivery order). So these must come from the node that holds the community,
whichever path wrote the row. Here the demo is seeded through the service's own
code on a connection that does not delegate, the rest is written through the API
(delegated), and then the audit passes and the statement lists the writes in the
order they were made. Skipped unless DATABASE_URL names a Citus coordinator."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from service import demo, setup
from service.demo import seed_demo
from service.ledger import service as ledger
from service.ledger.model import NewTransaction, Posting
from service.ledger.service import seal_all
from service.rules.book import RuleBook
from tests.helpers import Client, transfer

B = "/v1/communities/demo"

# (table, column) of every id that orders rows of a community. Not `lots.id`:
# the write engine takes it itself and refers to it in the same call, so it
# comes from the node that ran the call (sql/citus/distribute.sql says why that
# keeps the lots' order).
ORDERING = (
    ("entries", "seq"),
    ("transactions", "id"),
    ("lot_uses", "id"),
    ("outbox_events", "seq"),
    ("offsets", "seq"),
    ("member_households", "seq"),
    ("mandate_log", "seq"),
)


@pytest.fixture(autouse=True)
def _only_on_citus(citus: bool) -> None:
    if not citus:
        pytest.skip("needs DATABASE_URL naming a Citus coordinator (docs/scaling.md)")


async def _home_group(conn: asyncpg.Connection, community: str) -> int:
    """The group id of the worker that holds `community`'s shards."""
    group: int = await conn.fetchval(
        """SELECT n.groupid FROM citus_shards s
             JOIN pg_dist_node n ON n.nodename = s.nodename AND n.nodeport = s.nodeport
            WHERE s.shardid = get_shard_id_for_distribution_column('transactions', $1::text)""",
        community,
    )
    return group


async def _groups(conn: asyncpg.Connection, community: str) -> dict[str, set[int]]:
    """Per ordering column, the groups whose range its values of `community` are in."""
    found: dict[str, set[int]] = {}
    for table, column in ORDERING:
        rows = await conn.fetch(
            f"SELECT DISTINCT {column} >> 48 AS g FROM {table} WHERE community_id = $1",
            community,
        )
        found[f"{table}.{column}"] = {r["g"] for r in rows}
    return found


async def _post(client: Client, body: dict[str, Any]) -> None:
    r = await client.post(f"{B}/transactions", json=body)
    assert r.status_code == 201, r.text


# A query Citus refuses while planning its subqueries recursively: the delivery
# claim across every community as it was (sql/queries/webhooks.sql). On Citus 14.0 such an
# error leaves the backend's recursive-planning depth raised, and from then on
# that connection delegates no function call ("not pushing down function calls in
# CTEs or Subqueries"): each runs on the coordinator, statement by statement.
POISON = """WITH endpoints AS (
    SELECT w.community_id, w.id AS webhook_id
      FROM webhooks w
     WHERE EXISTS (SELECT 1 FROM webhook_deliveries d
                    WHERE d.community_id = w.community_id AND d.webhook_id = w.id
                      AND d.status = 'pending' AND d.next_attempt_at <= now())
       AND NOT EXISTS (SELECT 1 FROM webhook_deliveries x
                        WHERE x.community_id = w.community_id AND x.webhook_id = w.id
                          AND x.status = 'pending' AND x.leased_until IS NOT NULL
                          AND x.leased_until > now())
     ORDER BY w.community_id, w.id
     LIMIT 5
), due AS (
    SELECT d.community_id, d.id
      FROM endpoints p
     CROSS JOIN LATERAL (
           SELECT d.community_id, d.id
             FROM webhook_deliveries d
             JOIN outbox_events e ON e.community_id = d.community_id AND e.seq = d.event_seq
            WHERE d.community_id = p.community_id AND d.webhook_id = p.webhook_id
              AND d.status = 'pending' AND d.next_attempt_at <= now()
              AND e.xid < pg_snapshot_xmin(pg_current_snapshot())
            ORDER BY d.event_seq
            LIMIT 5) d
), claimed AS (
    SELECT d.community_id, d.id FROM webhook_deliveries d
     WHERE (d.community_id, d.id) IN (SELECT due.community_id, due.id FROM due)
       AND d.status = 'pending'
       FOR UPDATE SKIP LOCKED
)
UPDATE webhook_deliveries d
   SET leased_until = now() + make_interval(secs => 30), attempts = d.attempts + 1,
       last_attempt_at = now()
  FROM claimed c, outbox_events e, webhooks w
 WHERE d.community_id = c.community_id AND d.id = c.id
   AND e.community_id = d.community_id AND e.seq = d.event_seq
   AND w.community_id = d.community_id AND w.id = d.webhook_id
RETURNING d.community_id, d.id, d.webhook_id, d.attempts, e.id AS event_id, e.type,
          e.seq, e.occurred_at, e.data, w.url, w.secret"""


async def _undelegating(dsn: str) -> asyncpg.Connection:
    """A connection on which Citus no longer delegates function calls."""
    conn = await asyncpg.connect(dsn)
    with pytest.raises(asyncpg.FeatureNotSupportedError):
        await conn.fetch(POISON)
    return conn


async def test_writes_through_the_coordinator_take_the_workers_ids(
    client: Client, dsn: str, pool: asyncpg.Pool
) -> None:
    """The demo seeded on a connection whose calls run on the coordinator (as the
    web app's did after the webhook claim failed), then written to through the API
    (delegated): the audit passes and the statement is in write order."""
    conn = await _undelegating(dsn)
    try:
        notices: list[str] = []
        conn.add_log_listener(lambda _c, m: notices.append(m.message))
        await conn.execute("SET citus.log_remote_commands = on")
        await demo._seed(conn)  # type: ignore[arg-type]
        await conn.execute("RESET citus.log_remote_commands")
    finally:
        await conn.close()
    # The seeding's entries were sent to the shard by the coordinator.
    assert any("public.entries_" in n for n in notices), notices[:20]
    await seed_demo(dsn, "http://test")  # and again, on a connection that delegates
    # Then the API, whose writes are delegated to the worker of `demo`.
    writes = [
        transfer("later-1", "member:m-1:points", "member:m-2:points", 5),
        transfer("later-2", "system:issuance:points", "member:m-1:points", 7),
        transfer("later-3", "member:m-1:points", "member:m-3:points", 12),
        transfer("later-4", "member:m-2:points", "member:m-1:points", 1),
    ]
    for body in writes:
        await _post(client, body)
    # The coordinator's path once more, after the API's writes.
    conn = await _undelegating(dsn)
    try:
        await setup.create_member(
            conn,
            "demo",
            "m-4",
            "h-102",
            "Late",
            b"late",
            await RuleBook().params(conn, "demo"),
            language=await RuleBook().language(conn, "demo"),
        )
        await ledger.create_transaction(
            conn,
            "demo",
            NewTransaction(
                client_id="later-5",
                postings=(
                    Posting(
                        source="member:m-1:points",
                        destination="member:m-4:points",
                        asset="points",
                        amount=2,
                    ),
                ),
                request_hash=b"later-5",
                kind="transfer",
            ),
            await RuleBook().params(conn, "demo"),
        )
    finally:
        await conn.close()
    await _post(client, transfer("later-6", "member:m-4:points", "member:m-1:points", 1))

    assert await seal_all(pool) > 0
    r = await client.get(f"{B}/audit/verify")
    assert r.status_code == 200, r.text
    assert r.json()["ok"] is True, r.text

    # The statement, newest first, is the order of the writes, page by page.
    seen = await _statement(client, "member:m-1:points")
    assert seen == [
        "later-6",
        "later-5",
        "later-4",
        "later-3",
        "later-2",
        "later-1",
        "demo-award-1",
        "m-1:opening",
    ], seen

    conn = await asyncpg.connect(dsn)
    try:
        home = await _home_group(conn, "demo")
        groups = await _groups(conn, "demo")
    finally:
        await conn.close()
    assert home != 0
    for column, found in groups.items():
        assert found <= {home}, (column, found, home)
    assert groups["entries.seq"] == {home}
    assert groups["transactions.id"] == {home}


async def _statement(client: Client, address: str) -> list[str]:
    """The transaction ids of `address`'s entries, newest first, a page of two at a time."""
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        r = await client.get(f"{B}/accounts/{address}/entries", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        seen += [e["transaction_id"] for e in page["entries"]]
        cursor = page.get("next_cursor")
        if not cursor:
            return seen


async def _move_up(conn: asyncpg.Connection, community: str) -> int:
    """Moves `community`'s shards (with every colocated one) to the worker with the
    next higher group id; returns that group."""
    source = await conn.fetchrow(
        """SELECT s.shardid, s.nodename, s.nodeport, n.groupid FROM citus_shards s
             JOIN pg_dist_node n ON n.nodename = s.nodename AND n.nodeport = s.nodeport
            WHERE s.shardid = get_shard_id_for_distribution_column('transactions', $1::text)""",
        community,
    )
    assert source is not None
    target = await conn.fetchrow(
        """SELECT nodename, nodeport, groupid FROM pg_dist_node
            WHERE groupid > $1 ORDER BY groupid LIMIT 1""",
        source["groupid"],
    )
    if target is None:
        pytest.skip(f"{community} is on the worker with the highest group id already")
    await conn.execute(
        """SELECT citus_move_shard_placement($1, $2, $3, $4, $5,
                                             shard_transfer_mode => 'block_writes')""",
        source["shardid"],
        source["nodename"],
        source["nodeport"],
        target["nodename"],
        target["nodeport"],
    )
    # The moved shards' old copies are dropped later; tests/citus_support.wipe
    # truncates every shard of a node at once and would meet them.
    await conn.execute("CALL citus_cleanup_orphaned_resources()")
    group: int = target["groupid"]
    return group


async def test_order_holds_when_a_community_moves_to_a_higher_group(
    client: Client, dsn: str, pool: asyncpg.Pool
) -> None:
    """After its shards move, a community's new rows take the new node's values.
    Each worker's sequences are bounded to its own range (`groupid << 48` up to the
    next group's), so on a node with a higher group id they sort after every row
    written before the move (docs/scaling.md: moves go to higher groups only)."""
    await seed_demo(dsn, "http://test")
    await _post(client, transfer("before", "member:m-1:points", "member:m-2:points", 4))
    conn = await asyncpg.connect(dsn)
    try:
        group = await _move_up(conn, "demo")
        assert await _home_group(conn, "demo") == group
    finally:
        await conn.close()
    await _post(client, transfer("after", "member:m-1:points", "member:m-3:points", 2))
    r = await client.post(f"{B}/members", json={"id": "m-9", "household": "h-101"})
    assert r.status_code == 201, r.text
    await _post(client, transfer("last", "member:m-1:points", "member:m-9:points", 1))
    assert await seal_all(pool) > 0
    r = await client.get(f"{B}/audit/verify")
    assert r.status_code == 200, r.text
    assert r.json()["ok"] is True, r.text
    assert await _statement(client, "member:m-1:points") == [
        "last",
        "after",
        "before",
        "demo-award-1",
        "m-1:opening",
    ]
