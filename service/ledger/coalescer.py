"""Group commit for the ledger: concurrent single writes of one process share one
database round trip and one commit.

Two kinds of write are grouped: creations of single transactions (`Creations`)
and posts and voids of pending ones (`Finishes`). Each kind has its own queue,
and the kinds share the process's flush slots (`Slots`). Every item of a group is
still applied or refused on its own (the batch function gives each its own
outcome and undoes a refused one), and each keeps its own idempotency key. A
group is flushed as soon as a flush slot is free, so an idle service adds no
wait; under load, requests that arrive while the slots are busy form the next
groups. Items are sorted by the member accounts they lock, so groups flushed at
the same time take member locks in the same order.

A group never waits for a lock another transaction holds: such an item comes back
`busy` and is written on its own, where only it waits. And if a group fails as a
whole, its items are written one by one, so one bad item cannot fail the requests
it was grouped with. The machinery is `Coalescer`'s; each kind says only how a
group is written, how one item is written alone, and what busy looks like.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Coroutine
from typing import Any, Generic, TypeVar

import asyncpg

from service.db import retrying
from service.ledger import store
from service.ledger.model import NewTransaction
from service.ledger.posting import Plan

Item = TypeVar("Item")
Result = TypeVar("Result")
# A waiting item: its community, the item, and the future its request awaits.
_Entry = tuple[str, Item, asyncio.Future[Result]]


def _lock_key(plan: Plan) -> list[str]:
    return [a for a, limited in zip(plan.addresses, plan.limited, strict=True) if limited]


class Slots:
    """A process's flush slots, shared by its coalescers: at most `size` groups of
    any kind in flight at once. More groups in flight means smaller ones competing
    for the same cores (sixteen slots did worse than eight, docs/performance.md),
    so creations and finishes take turns at one budget rather than each having its
    own."""

    def __init__(self, size: int) -> None:
        self.free = size
        self._coalescers: list[Coalescer[Any, Any]] = []

    def join(self, coalescer: Coalescer[Any, Any]) -> None:
        self._coalescers.append(coalescer)

    def release(self) -> None:
        """A group is done: its slot goes to a coalescer with items waiting, each
        coalescer first in turn, so that neither kind can starve the other."""
        self.free += 1
        self._coalescers.append(self._coalescers.pop(0))
        for coalescer in self._coalescers:
            coalescer.kick()


class Coalescer(ABC, Generic[Item, Result]):
    """The machinery of one kind's group commits; the kind says how it is written."""

    def __init__(self, pool: asyncpg.Pool, slots: Slots, *, max_group: int = 200) -> None:
        self._pool = pool
        self._slots = slots
        self._max_group = max_group
        self._waiting: list[_Entry[Item, Result]] = []
        self._kick_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        slots.join(self)

    @abstractmethod
    def _plan(self, item: Item) -> Plan:
        """The item's plan, whose member accounts order the items of a group."""

    @abstractmethod
    async def _group(self, conn: store.Conn, community: str, items: list[Item]) -> list[Result]:
        """Writes `items` in one round trip that waits for no lock; one result each."""

    @abstractmethod
    async def _one(self, conn: store.Conn, community: str, item: Item) -> Result:
        """Writes `item` in its own transaction, waiting for its locks."""

    @abstractmethod
    def _busy(self, result: Result) -> bool:
        """Whether the group skipped the item because another transaction held a lock."""

    async def submit(self, community: str, item: Item) -> Result:
        """Writes `item` as part of the next group; returns its own outcome."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._waiting.append((community, item, future))
        if not self._kick_scheduled and self._slots.free > 0:
            # Let the requests already runnable in this loop tick join the group.
            self._kick_scheduled = True
            loop.call_soon(self._scheduled_kick)
        return await future

    def _scheduled_kick(self) -> None:
        self._kick_scheduled = False
        self.kick()

    def kick(self) -> None:
        """Flushes what is waiting, a group per free slot."""
        while self._waiting and self._slots.free > 0:
            group = self._waiting[: self._max_group]
            del self._waiting[: self._max_group]
            self._slots.free -= 1
            self._spawn(self._flush(group))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self, group: list[_Entry[Item, Result]]) -> None:
        try:
            by_community: dict[str, list[_Entry[Item, Result]]] = defaultdict(list)
            for entry in group:
                by_community[entry[0]].append(entry)
            for community, entries in by_community.items():
                entries.sort(key=lambda e: _lock_key(self._plan(e[1])))
                await self._write(community, entries)
        finally:
            self._slots.release()

    async def _write(self, community: str, entries: list[_Entry[Item, Result]]) -> None:
        items = [item for _, item, _ in entries]
        try:
            async with self._pool.acquire() as conn:
                results = await retrying(lambda: self._group(conn, community, items))
        except Exception:
            # Something in the group broke the whole round trip: write each on its own,
            # so only the item at fault hears of it.
            for entry in entries:
                self._spawn(self._write_alone(entry))
            return
        for entry, result in zip(entries, results, strict=True):
            if self._busy(result):
                self._spawn(self._write_alone(entry))
            elif not entry[2].done():
                entry[2].set_result(result)

    async def _write_alone(self, entry: _Entry[Item, Result]) -> None:
        """Writes one item in its own transaction, outside the flush slots, where it
        may wait for a lock held elsewhere without holding up anyone else."""
        community, item, future = entry
        try:
            async with self._pool.acquire() as conn:
                result = await retrying(lambda: self._one(conn, community, item))
        except Exception as err:  # the caller's request fails with it
            if not future.done():
                future.set_exception(err)
            return
        if not future.done():
            future.set_result(result)


class Creations(Coalescer[tuple[NewTransaction, Plan], store.Created]):
    """Single transactions created by the process's requests (POST …/transactions)."""

    def _plan(self, item: tuple[NewTransaction, Plan]) -> Plan:
        return item[1]

    async def _group(
        self, conn: store.Conn, community: str, items: list[tuple[NewTransaction, Plan]]
    ) -> list[store.Created]:
        return await store.create_batch(conn, community, items, skip_locked=True)

    async def _one(
        self, conn: store.Conn, community: str, item: tuple[NewTransaction, Plan]
    ) -> store.Created:
        [result] = await store.create_batch(conn, community, [item])
        return result

    def _busy(self, result: store.Created) -> bool:
        return result.outcome == "busy"


class Finishes(Coalescer[store.Finish, store.Finished]):
    """Pending transactions posted or voided by the process's requests (POST
    …/post and …/void)."""

    def _plan(self, item: store.Finish) -> Plan:
        return item.plan

    async def _group(
        self, conn: store.Conn, community: str, items: list[store.Finish]
    ) -> list[store.Finished]:
        return await store.finish_batch(conn, community, items)

    async def _one(self, conn: store.Conn, community: str, item: store.Finish) -> store.Finished:
        return await store.finish_tx(conn, community, item)

    def _busy(self, result: store.Finished) -> bool:
        return result.outcome == "busy"
