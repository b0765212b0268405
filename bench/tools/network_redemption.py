"""A redemption across two communities against one within a community, on any
PostgreSQL — meant for a Citus coordinator, where the two communities' shards are
on different workers (docs/network.md, "On Citus"; docs/scaling.md).

    /work/shared/citus/cluster start /tmp/cn/c 2 56710     # prints the DATABASE_URL
    uv run python -m bench.tools.network_redemption postgresql://postgres@127.0.0.1:56710/postgres

The service runs in this process (httpx's ASGI transport, no HTTP server), with
`--clients` concurrent clients; each round runs the local redemption (store s1 of
`home`, a member of `home`) and the cross-community one (district-wide store s1 of
`away`, a member of `home`) for `--seconds` each, alternating. The database must be
empty or migrated by this tool before (it makes fresh community ids per run).
On Citus, `away` is picked so that its shards are on another worker than `home`'s.
Prints redemptions per second per kind and the ratio, and the district's audit.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import statistics
import time

import asyncpg
import httpx
import msgspec

from service.app import create_app
from service.config import load_rate_limits, load_settings
from service.db import migrate

ADMIN = "network-bench-admin-key-0123456789abcdef"
MEMBERS = 200


async def _worker_of(dsn: str, community: str) -> str | None:
    conn = await asyncpg.connect(dsn)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'citus'"):
            return None
        row = await conn.fetchrow(
            """SELECT s.nodename || ':' || s.nodeport AS node FROM citus_shards s
                WHERE s.shardid = get_shard_id_for_distribution_column('transactions', $1::text)""",
            community,
        )
        return None if row is None else str(row["node"])
    finally:
        await conn.close()


async def _ids(dsn: str) -> tuple[str, str]:
    run = secrets.token_hex(3)
    home = f"nb-{run}-home"
    node = await _worker_of(dsn, home)
    for n in range(200):
        away = f"nb-{run}-away{n}"
        if node is None or await _worker_of(dsn, away) != node:
            return home, away
    raise SystemExit("every community id hashed to one worker")


async def _ok(r: httpx.Response, *status: int) -> None:
    if r.status_code not in status:
        raise SystemExit(f"{r.request.method} {r.request.url}: {r.status_code} {r.text[:300]}")


async def _seed(api: httpx.AsyncClient, home: str, away: str) -> None:
    for c in (home, away):
        await _ok(await api.post("/v1/communities", json={"id": c, "name": c}), 201)
        await _ok(
            await api.post(
                f"/v1/communities/{c}/households", json={"id": "h0", "property_company": "p"}
            ),
            201,
        )
        await _ok(
            await api.put(
                f"/v1/communities/{c}/stores/s1", json={"name": "Love", "district_wide": True}
            ),
            201,
        )
        for i in range(20):
            body = {"name": f"item {i}", "points": 1, "stock": 100_000_000}
            await _ok(await api.put(f"/v1/communities/{c}/stores/s1/items/sku{i}", json=body), 201)
    district = {"id": f"{home}-d", "name": "bench", "communities": [home, away]}
    await _ok(await api.post("/v1/districts", json=district), 201)
    for i in range(MEMBERS):
        await _ok(
            await api.post(
                f"/v1/communities/{home}/members", json={"id": f"m{i}", "household": "h0"}
            ),
            201,
        )
        posting = {
            "source": "system:issuance:points",
            "destination": f"member:m{i}:points",
            "asset": "points",
            "amount": 1_000_000,
        }
        await _ok(
            await api.post(
                f"/v1/communities/{home}/transactions", json={"id": f"f{i}", "postings": [posting]}
            ),
            201,
        )


async def _run(
    api: httpx.AsyncClient, home: str, away: str, kind: str, seconds: float, clients: int
) -> float:
    done = 0
    stop = time.perf_counter() + seconds
    tag = secrets.token_hex(3)

    async def client(n: int) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < stop:
            i += 1
            body: dict[str, object] = {
                "id": f"{kind}-{tag}-{n}-{i}",
                "store": "s1",
                "member": f"m{(n * 7919 + i) % MEMBERS}",
                "items": [{"sku": f"sku{i % 20}", "qty": 1}],
            }
            where = home
            if kind == "cross":
                body["member_community"] = home
                where = away
            r = await api.post(f"/v1/communities/{where}/redemptions", json=body)
            await _ok(r, 201)
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    return done / (time.perf_counter() - start)


async def main(dsn: str, seconds: float, rounds: int, clients: int) -> None:
    await migrate(dsn)
    home, away = await _ids(dsn)
    settings = msgspec.structs.replace(
        load_settings(),
        admin_key=ADMIN,
        pool_max_size=clients + 4,
        rate_limits=msgspec.structs.replace(load_rate_limits(), enabled=False),
    )
    app = create_app(settings, dsn=dsn, scheduler=False)
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {ADMIN}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers=headers, timeout=60
        ) as api:
            await _seed(api, home, away)
            rates: dict[str, list[float]] = {"local": [], "cross": []}
            for _ in range(rounds):
                for kind in ("local", "cross"):
                    rates[kind].append(await _run(api, home, away, kind, seconds, clients))
            audit = (await api.get(f"/v1/districts/{home}-d/audit/verify")).json()
    nodes = [await _worker_of(dsn, c) for c in (home, away)]
    local, cross = statistics.median(rates["local"]), statistics.median(rates["cross"])
    print(
        f"communities {home} on {nodes[0]}, {away} on {nodes[1]}; "
        f"{clients} clients, {rounds} rounds of {seconds} s"
    )
    print("| redemption | per round (ops/s) | median ops/s |")
    print("|---|---|---:|")
    for kind, median in (("within one community", local), ("across two communities", cross)):
        key = "local" if kind.startswith("within") else "cross"
        print(f"| {kind} | {', '.join(f'{r:.0f}' for r in rates[key])} | {median:.0f} |")
    print(f"ratio across / within: {cross / local:.2f}; district audit ok: {audit['ok']}")


if __name__ == "__main__":
    logging.getLogger("httpx").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dsn")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    asyncio.run(main(args.dsn, args.seconds, args.rounds, args.clients))
