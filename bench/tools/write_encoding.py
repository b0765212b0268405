"""What it costs the service to send ledger writes: as JSON text (what it does,
`store.document`, turned into `ledger_write[]` by `ledger_writes` on the server)
against asyncpg's binary encoding of the composite array (`$1::ledger_write[]`).

    uv run python -m bench --quick --no-scale --only s1_transfer --keep-data --work-dir /tmp/bw
    uv run python -m bench.tools.write_encoding /tmp/bw

Both queries only count the writes they are given, so what differs is the
client's work to encode them and the server's to decode them. Measured as the
CPU time of this process (the service's side) per call, median of the rounds,
alternating the two ways; the writes are the service's own (issuance -> member).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from bench.pg import Server
from bench.tools.single_write import transfer_write
from service.ledger import store

_AS_JSON = "SELECT cardinality(ledger_writes($1::text::jsonb))"
_AS_COMPOSITE = "SELECT cardinality($1::ledger_write[])"
# The SQL type's fields, in order (sql/migrations/0002_write_engine.sql).
_FIELDS = (
    "op",
    "tx_id",
    "client_id",
    "request_hash",
    "kind",
    "pending",
    "reserved",
    "memo",
    "metadata",
    "reason",
    "rule_id",
    "rule_version",
    "event_id",
    "actor",
    "reversal_of",
    "ttl_s",
    "void_reason",
    "accounts",
    "legs",
)


def _writes(size: int) -> list[store.Write]:
    return [transfer_write("encoding", i, memo="a memo") for i in range(size)]


def _as_tuple(write: store.Write) -> tuple[Any, ...]:
    """`write` as the record asyncpg encodes for `ledger_write` (fields in order)."""
    fields = msgspec.structs.asdict(write)
    if write.request_hash is not None:
        fields["request_hash"] = bytes.fromhex(write.request_hash.removeprefix("\\x"))
    for name in ("reserved", "metadata"):
        if fields[name] is not None:
            fields[name] = msgspec.json.encode(fields[name]).decode()
    fields["accounts"] = [msgspec.structs.astuple(a) for a in write.accounts]
    fields["legs"] = [msgspec.structs.astuple(leg) for leg in write.legs]
    return tuple(fields[name] for name in _FIELDS)


async def _cpu_per_call(
    conn: asyncpg.Connection, query: str, writes: list[store.Write], calls: int
) -> float:
    """CPU µs of this process per call, each call encoding the writes anew."""
    started = time.process_time()
    for _ in range(calls):
        if query == _AS_JSON:
            await conn.fetchval(query, store.document(writes))
        else:
            await conn.fetchval(query, [_as_tuple(w) for w in writes])
    return (time.process_time() - started) / calls * 1e6


async def _main(args: argparse.Namespace) -> None:
    server = Server(args.work_dir / "pgdata", pg_stat_statements=False)
    try:
        conn = await asyncpg.connect(server.dsn("postgres"))
        print("writes a call: JSON µs, composite µs (this process's CPU per call, median)")
        for size in args.sizes:
            writes = _writes(size)
            as_json = [0.0] * args.rounds
            as_composite = [0.0] * args.rounds
            for r in range(args.rounds):
                as_json[r] = await _cpu_per_call(conn, _AS_JSON, writes, args.calls)
                as_composite[r] = await _cpu_per_call(conn, _AS_COMPOSITE, writes, args.calls)
            print(
                f"  {size:5d}  {statistics.median(as_json):9.1f}  "
                f"{statistics.median(as_composite):9.1f}"
            )
        await conn.close()
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work_dir", type=Path, help="a `bench --keep-data --work-dir` folder")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
