"""The ledger's single write on one connection, with nothing else running: what the
server spends in each ledger function (pg_stat_user_functions) per write.

    uv run python -m bench --quick --no-scale --only s1_transfer --keep-data --work-dir /tmp/bw
    cp -a /tmp/bw /tmp/bw-try   # --apply changes the database it is given
    uv run python -m bench.tools.single_write /tmp/bw-try [--apply candidate.sql]

Each write is the service's own query (`ledger_write`, one issuance → member
transfer of 1 point) in its own transaction, as a single write outside the group
commit runs; with `--one-transaction`, all writes of a round share one transaction
instead, which separates what a write costs per transaction from what it costs per
statement. `synchronous_commit` is off for this session, so the numbers are the
server's work without the WAL flush.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import time
from pathlib import Path

import asyncpg

from bench.pg import Server
from service.db import q
from service.ledger import store
from service.ledger.model import NewTransaction, Posting, RuleParams
from service.ledger.posting import plan_create

_FUNCTION_STATS = """
SELECT funcname, calls, total_time / calls * 1000 AS total_us, self_time / calls * 1000 AS self_us
  FROM pg_stat_user_functions
 WHERE calls > 0
 ORDER BY total_time DESC
"""


def transfer_write(run: str, i: int, memo: str | None = None) -> store.Write:
    """The service's write for an issuance -> member transfer of 1 point."""
    postings = (
        Posting(
            source="system:issuance:points",
            destination=f"member:m{i % 1000}:points",
            asset="points",
            amount=1,
        ),
    )
    tx = NewTransaction(
        client_id=f"single-write-{run}-{i}",
        postings=postings,
        request_hash=hashlib.sha256(f"{run}-{i}".encode()).digest(),
        actor="bench",
        memo=memo,
    )
    return store.create_write(tx, plan_create(postings, RuleParams(), pending=False))


def _document(run: str, i: int) -> str:
    return store.document([transfer_write(run, i)])


async def _round(conn: asyncpg.Connection, run: str, writes: int, one_transaction: bool) -> None:
    took: list[float] = []
    outer = conn.transaction() if one_transaction else None
    if outer is not None:
        await outer.start()
    for i in range(writes):
        document = _document(run, i)
        started = time.perf_counter()
        if outer is None:
            async with conn.transaction():
                rows = await conn.fetch(q("ledger_write"), "bench", document, False)
        else:
            rows = await conn.fetch(q("ledger_write"), "bench", document, False)
        took.append(time.perf_counter() - started)
        if rows[0]["outcome"] != "created":
            raise RuntimeError(f"write {i}: {dict(rows[0])}")
    if outer is not None:
        await outer.commit()
    print(
        f"{writes} writes: mean {statistics.mean(took) * 1e6:,.0f} µs, "
        f"median {statistics.median(took) * 1e6:,.0f} µs a write (client's clock)"
    )


async def _main(args: argparse.Namespace) -> None:
    server = Server(args.work_dir / "pgdata", pg_stat_statements=False)
    try:
        conn = await asyncpg.connect(server.dsn("postgres"))
        if args.apply is not None:
            await conn.execute(args.apply.read_text())
        await conn.execute("SET synchronous_commit = off")
        await conn.execute("SET track_functions = 'all'")
        await conn.execute("SELECT pg_stat_reset()")
        run = time.strftime("%Y%m%dT%H%M%S")
        for r in range(args.rounds):
            await _round(conn, f"{run}-{r}", args.writes, args.one_transaction)
        await conn.execute("SELECT pg_stat_force_next_flush()")
        await asyncio.sleep(1.0)  # the next flush of the statistics
        print("per write (µs): function, calls, total, self")
        for row in await conn.fetch(_FUNCTION_STATS):
            name, calls, total, own = row["funcname"], row["calls"], row["total_us"], row["self_us"]
            print(f"  {name:28s} {calls:6d} {total:8.1f} {own:8.1f}")
        await conn.close()
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work_dir", type=Path, help="a `bench --keep-data --work-dir` folder")
    parser.add_argument("--apply", type=Path, help="SQL to run first (a candidate migration)")
    parser.add_argument("--writes", type=int, default=400, help="writes per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--one-transaction", action="store_true", help="a round in one transaction")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
