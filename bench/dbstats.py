"""What the database did during a scenario, read straight from the server.

Transaction ids assigned (every write transaction takes one, so xids per
operation shows how many commits the service needed per transfer), WAL bytes
written, and, with pg_stat_statements loaded, the statements that took the most
time. Also: waiting for the sealer, and the bytes each posting takes on disk.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg

_SNAPSHOT = """
SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS next_xid,
       pg_current_wal_lsn() - '0/0'::pg_lsn AS wal
"""
_TOP = """
SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 160) AS query, calls, toplevel,
       round(total_exec_time::numeric, 1) AS total_ms,
       round(mean_exec_time::numeric, 3) AS mean_ms, rows
  FROM pg_stat_statements
 ORDER BY total_exec_time DESC
 LIMIT 15
"""
LEDGER_TABLES = ("entries", "transactions", "accounts")


async def snapshot(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(_SNAPSHOT)
    finally:
        await conn.close()
    assert row is not None
    return {"next_xid": int(row["next_xid"]), "wal": int(row["wal"])}


def delta(before: dict[str, int], after: dict[str, int], ops: int) -> dict[str, Any]:
    xids = after["next_xid"] - before["next_xid"]
    wal = after["wal"] - before["wal"]
    return {
        "xids": xids,
        "wal_bytes": wal,
        "xids_per_op": round(xids / ops, 3) if ops else None,
        "wal_bytes_per_op": round(wal / ops, 1) if ops else None,
    }


async def pgss_enable(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    finally:
        await conn.close()


async def pgss_reset(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_stat_statements_reset()")
    finally:
        await conn.close()


async def pgss_top(dsn: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [
            {k: (float(v) if k.endswith("_ms") else v) for k, v in dict(r).items()}
            for r in await conn.fetch(_TOP)
        ]
    finally:
        await conn.close()


async def wait_sealed(dsn: str, timeout_s: float = 300.0) -> float:
    """Seconds until the sealer has emptied the seal queue."""
    start = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        while await conn.fetchval("SELECT EXISTS (SELECT 1 FROM seal_queue)"):
            if time.perf_counter() - start > timeout_s:
                raise SystemExit(f"the seal queue did not empty within {timeout_s:.0f} s")
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
    return round(time.perf_counter() - start, 2)


async def analyze(dsn: str) -> float:
    """ANALYZE of the whole database, as autovacuum keeps a running one; seconds."""
    start = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return round(time.perf_counter() - start, 2)


async def ledger_bytes(dsn: str) -> dict[str, int]:
    """Bytes on disk of each ledger table: heap (with TOAST) and each index."""
    conn = await asyncpg.connect(dsn)
    try:
        sizes: dict[str, int] = {}
        for table in LEDGER_TABLES:
            sizes[table] = await conn.fetchval("SELECT pg_table_size($1::regclass)", table)
            for row in await conn.fetch(
                "SELECT indexrelid::regclass::text AS name, pg_relation_size(indexrelid) AS size"
                "  FROM pg_index WHERE indrelid = $1::regclass",
                table,
            ):
                sizes[f"{table}.{row['name']}"] = row["size"]
        return sizes
    finally:
        await conn.close()


async def postings(dsn: str) -> int:
    """Postings stored: pairs of entries (every posting writes one entry per side)."""
    conn = await asyncpg.connect(dsn)
    try:
        entries: int = await conn.fetchval("SELECT count(*) FROM entries")
    finally:
        await conn.close()
    return entries // 2


async def wait_quiet(dsn: str, timeout_s: float = 300.0) -> float:
    """Seconds until no statement of the service is running (e.g. a batch the load
    generator gave up on), so that a bulk load does not wait behind it for locks."""
    start = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        while await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
            "AND application_name = 'points-ledger' AND pid <> pg_backend_pid() "
            "AND query NOT LIKE '%ledger_seal%'"
        ):
            if time.perf_counter() - start > timeout_s:
                break
            await asyncio.sleep(0.5)
    finally:
        await conn.close()
    return round(time.perf_counter() - start, 1)
