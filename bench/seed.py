"""Seeding the small database through the HTTP API, as a client would.

Community `bench`; households h0 … h99; members m0 … m{n-1} (each opened with
its 100-point baseline by the service); race members r0 … r99; the statement
member `stmt`. Members are funded through the batch endpoint so that spends and
holds never run short, except the race members, who get a few points above
their baseline: that is the limit they race against. Then a rule set, a store's
catalogue and a little history (offsets, redemptions, events); the harness
analyzes the database after seeding.

Consent (SPEC section 10), as scenarios 9 and 10 need it: every plain member's
mandate for property company `acme` (its households' company), with ceilings no
run reaches; a key for store s1's till, one for acme's billing system, and resident
keys for the first RESIDENTS members, whose phones issue spend codes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

import msgspec

from bench.httpclient import Connection
from bench.scenarios import ISSUANCE

COMMUNITY = "bench"
# A second community of the same district, whose district-wide store s1 serves
# bench's members (SPEC section 16; scenario s11).
NEIGHBOUR = "bench-next"
DISTRICT = "bench-district"
HOUSEHOLDS = 100
RACE_MEMBERS = 100
RACE_HEADROOM = 5  # redeemable points each race member starts with
FUNDING = 1_000_000  # points each plain member gets: spends never run short
COMPANY = "acme"  # every bench household's property company
# Every plain member's mandate for COMPANY: far above what a run offsets.
MANDATE = {"max_points_per_bill": 1_000_000, "max_points_per_year": 100_000_000}
RESIDENTS = 200  # members m0 … m199 get a resident key (scenario 10's phones)


class SeedError(SystemExit):
    pass


class Keys(msgspec.Struct, kw_only=True):
    """The keys the consent scenarios send, besides the admin key."""

    store: str  # store s1's till
    property: str  # COMPANY's billing system
    residents: list[tuple[str, str]]  # (member, its resident key)


class _KeyOut(msgspec.Struct):
    key: str


class Api:
    """`concurrency` keep-alive connections used by concurrent seeding calls."""

    def __init__(self, port: int, admin_key: str, concurrency: int = 32) -> None:
        headers = {"Authorization": f"Bearer {admin_key}"}
        self._free: asyncio.Queue[Connection] = asyncio.Queue()
        for _ in range(concurrency):
            self._free.put_nowait(Connection("127.0.0.1", port, headers))
        self.concurrency = concurrency

    async def call(self, method: str, path: str, body: object, ok: int = 201) -> bytes:
        conn = await self._free.get()
        try:
            data = None if body is None else msgspec.json.encode(body)
            status, payload = await conn.request(method, path, data)
        finally:
            self._free.put_nowait(conn)
        if status != ok:
            raise SeedError(f"seeding: {method} {path} answered {status}: {payload[:300]!r}")
        return payload

    async def many(self, calls: Iterable[tuple[str, str, object]], ok: int = 201) -> None:
        pending = iter(calls)

        async def worker() -> None:
            for method, path, body in pending:
                await self.call(method, path, body, ok)

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))


def _chunks(items: Iterable[dict[str, object]], size: int) -> Iterator[list[dict[str, object]]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _awards(prefix: str, members: Iterable[str], amount: int) -> Iterator[dict[str, object]]:
    for i, member in enumerate(members):
        posting = {
            "source": ISSUANCE,
            "destination": f"member:{member}:points",
            "asset": "points",
            "amount": amount,
        }
        yield {"id": f"{prefix}-{i}", "postings": [posting]}


async def _batches(api: Api, items: Iterable[dict[str, object]], batch_size: int) -> None:
    base = f"/v1/communities/{COMMUNITY}/transactions:batch"
    calls = (
        ("POST", base, {"transactions": chunk, "atomic": True})
        for chunk in _chunks(items, batch_size)
    )
    await api.many(calls, ok=200)


async def seed(
    port: int, admin_key: str, members: int, statement_entries: int
) -> tuple[dict[str, float], Keys]:
    """Seeds everything the small scenarios use; returns seconds per step and the
    consent scenarios' keys."""
    api = Api(port, admin_key)
    base = f"/v1/communities/{COMMUNITY}"
    names = [f"m{i}" for i in range(members)]
    names += [f"r{i}" for i in range(RACE_MEMBERS)] + ["stmt"]
    timings: dict[str, float] = {}
    start = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal start
        timings[step] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()

    await api.call("POST", "/v1/communities", {"id": COMMUNITY, "name": "Bench"})
    await api.many(
        ("POST", f"{base}/households", {"id": f"h{i}", "property_company": COMPANY})
        for i in range(HOUSEHOLDS)
    )
    await api.many(
        ("POST", f"{base}/members", {"id": name, "household": f"h{i % HOUSEHOLDS}"})
        for i, name in enumerate(names)
    )
    lap("community, households, members")
    await _batches(api, _awards("fund", names[:members], FUNDING), 1000)
    await _batches(api, _awards("race", names[members:-1], RACE_HEADROOM), 1000)
    lap("funding")
    await _batches(api, _awards("stmt", ["stmt"] * statement_entries, 1), 1000)
    lap("statement member")
    await _rules_and_store(api, base)
    lap("rule set, store catalogue")
    await _neighbour(api, names[: HOUSEHOLDS * HISTORY])
    lap("district: the neighbour community and its district-wide store")
    await _history(api, base)
    lap("history: offsets, redemptions, events")
    await api.many(
        (("PUT", f"{base}/members/{name}/mandates/{COMPANY}", MANDATE) for name in names[:members]),
        ok=200,
    )
    lap("mandates")
    keys = await _keys(api, names[: min(RESIDENTS, members)])
    lap("keys")
    return timings, keys


async def _keys(api: Api, residents: list[str]) -> Keys:
    async def key(**scope: str) -> str:
        body = {"community": COMMUNITY, **scope}
        return msgspec.json.decode(await api.call("POST", "/v1/api-keys", body), type=_KeyOut).key

    store = await key(role="store", store="s1")
    company = await key(role="property", property_company=COMPANY)
    found = await asyncio.gather(*(key(role="resident", member=m) for m in residents))
    return Keys(store=store, property=company, residents=list(zip(residents, found, strict=True)))


# The rule set scenario 8's events meet: the default (baseline 100, no caps on
# offsets) plus one award, capped per month far above what a run can reach, so
# that every event awards and the cap is still tracked.
BENCH_RULE = {
    "id": "bench-award",
    "on": "bench.helped",
    "award": 1,
    "cap": {"period": "month", "max": 100_000_000},
    "reason": "benchmark",
}
SKUS = 100
STOCK = 100_000_000


async def _rules_and_store(api: Api, base: str) -> None:
    active: dict[str, Any] = msgspec.json.decode(await api.call("GET", f"{base}/rules", None, 200))
    document = {**active["document"], "rules": [BENCH_RULE]}
    await api.call("PUT", f"{base}/rules", document)
    await api.many(
        (
            "PUT",
            f"{base}/stores/s1/items/sku{i}",
            {"name": f"item {i}", "points": 1, "stock": STOCK},
        )
        for i in range(SKUS)
    )


HISTORY = 2  # offsets, redemptions and events per household before the run


async def _neighbour(api: Api, members: list[str]) -> None:
    """The neighbour community in one district with bench, its store s1 district-wide
    with the same catalogue, and a little history of bench's members redeeming there
    (as `_history` gives bench, for the same reason)."""
    base = f"/v1/communities/{NEIGHBOUR}"
    await api.call("POST", "/v1/communities", {"id": NEIGHBOUR, "name": "Bench next door"})
    body = {"id": DISTRICT, "name": "Bench district", "communities": [COMMUNITY, NEIGHBOUR]}
    await api.call("POST", "/v1/districts", body)
    await api.call("PUT", f"{base}/stores/s1", {"name": "Love", "district_wide": True})
    await _rules_and_store(api, base)
    await api.many(
        (
            "POST",
            f"{base}/redemptions",
            {"id": f"seed-{m}", "store": "s1", "member": m, "member_community": COMMUNITY,
             "items": [{"sku": f"sku{n % SKUS}", "qty": 1}]},
        )
        for n, m in enumerate(members)
    )  # fmt: skip


async def _history(api: Api, base: str) -> None:
    """A little of what a running community has behind it: applied offsets,
    redemptions and events (HISTORY per household, by its first members). Without
    it, the first statements on those tables are planned while they are empty
    and unanalyzed, and a cached plan can stay bad for a whole scenario."""
    people = [(f"m{i}", f"h{i % HOUSEHOLDS}") for i in range(HOUSEHOLDS * HISTORY)]
    await api.many(
        (
            "POST",
            f"{base}/offsets",
            {"id": f"seed-{m}", "member": m, "household": h, "bill_amount_fen": 10_000,
             "points": 1},
        )
        for m, h in people
    )  # fmt: skip
    await api.many(
        (
            "POST",
            f"{base}/redemptions",
            {"id": f"seed-{m}", "store": "s1", "member": m,
             "items": [{"sku": f"sku{n % SKUS}", "qty": 1}]},
        )
        for n, (m, _) in enumerate(people)
    )  # fmt: skip
    await api.many(
        (
            "POST",
            f"{base}/events",
            {"id": f"seed-{m}", "type": "bench.helped", "member": m,
             "occurred_at": "2026-01-01T12:00:00+08:00", "attributes": {}},
        )
        for m, _ in people
    )  # fmt: skip


async def audit(port: int, admin_key: str) -> dict[str, Any]:
    """The service's audit/verify report of the bench community, with the problems of
    its neighbour's and of the district's network checks added."""
    api = Api(port, admin_key, concurrency=1)
    report: dict[str, Any] = {}
    for path in (
        f"/v1/communities/{COMMUNITY}/audit/verify",
        f"/v1/communities/{NEIGHBOUR}/audit/verify",
        f"/v1/districts/{DISTRICT}/audit/verify",
    ):
        found: dict[str, Any] = msgspec.json.decode(await api.call("GET", path, None, 200))
        if not report:
            report = found
        else:
            report["ok"] = report["ok"] and found["ok"]
            report["problems"] = report["problems"] + found["problems"]
    return report
