"""Creations and finishes share one budget of flush slots: never more groups in
flight than slots, and one kind's backlog cannot starve the other."""

from __future__ import annotations

import asyncio

import asyncpg

from service.ledger import store
from service.ledger.coalescer import Coalescer, Slots
from service.ledger.posting import Plan

PLAN = Plan(
    addresses=[],
    assets=[],
    limited=[],
    posted=[],
    held=[],
    minimum=[],
    leg_account=[],
    leg_amount=[],
)


class Flushes:
    """What the kinds sharing some slots flushed, in order, and the most in flight."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.inflight = 0
        self.most = 0


class Recorder(Coalescer[int, int]):
    """A kind whose group takes a moment and records itself, so that the order and
    overlap of flushes can be seen (the database is not asked anything)."""

    def __init__(self, pool: asyncpg.Pool, slots: Slots, name: str, seen: Flushes) -> None:
        super().__init__(pool, slots, max_group=1)
        self.name = name
        self.seen = seen

    def _plan(self, item: int) -> Plan:
        return PLAN

    async def _group(self, conn: store.Conn, community: str, items: list[int]) -> list[int]:
        self.seen.order.append(self.name)
        self.seen.inflight += 1
        self.seen.most = max(self.seen.most, self.seen.inflight)
        await asyncio.sleep(0.002)
        self.seen.inflight -= 1
        return items

    async def _one(self, conn: store.Conn, community: str, item: int) -> int:
        raise AssertionError("nothing is busy here")

    def _busy(self, result: int) -> bool:
        return False


async def test_two_kinds_take_turns_at_shared_slots(pool: asyncpg.Pool) -> None:
    """One slot, twenty items of one kind and five of the other, all at once: one
    group at a time, and the second kind's five are not left until the first kind's
    backlog is gone."""
    slots, seen = Slots(1), Flushes()
    a, b = Recorder(pool, slots, "a", seen), Recorder(pool, slots, "b", seen)
    calls = [a.submit("green", i) for i in range(20)] + [b.submit("green", i) for i in range(5)]
    assert await asyncio.gather(*calls) == list(range(20)) + list(range(5))
    assert seen.most == 1
    order = "".join(seen.order)
    assert order.index("b") <= 1 and "bb" not in order and "aa" not in order[: order.rindex("b")]
    assert slots.free == 1


async def test_groups_in_flight_never_exceed_the_slots(pool: asyncpg.Pool) -> None:
    slots, seen = Slots(3), Flushes()
    kinds = [Recorder(pool, slots, name, seen) for name in "ab"]
    await asyncio.gather(*(k.submit("green", i) for i in range(30) for k in kinds))
    assert len(seen.order) == 60 and seen.most == 3
    assert slots.free == 3
