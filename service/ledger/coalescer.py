"""Group commit for the ledger: concurrent single-transaction writes of one process
share one database round trip and one commit.

Every transaction in a group is still applied or refused on its own (the batch
function gives each its own outcome and undoes a refused one), and each keeps its
own idempotency key. A group is flushed as soon as a flush slot is free, so an idle
service adds no wait; under load, requests that arrive while the slots are busy
form the next groups. Items are sorted by the member accounts they lock, so groups
flushed at the same time take member locks in the same order.

A group never waits for a member account another transaction holds: such an item
comes back `busy` and is written on its own, where only it waits. And if a group
fails as a whole, its items are written one by one, so one bad item cannot fail
the requests it was grouped with.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import asyncpg

from service.db import unit_of_work
from service.ledger import store
from service.ledger.model import NewTransaction, Outcome
from service.ledger.posting import Plan
from service.outage import fault_of

_Item = tuple[str, NewTransaction, Plan, "asyncio.Future[store.Written]"]


def _lock_key(plan: Plan) -> list[str]:
    return plan.locks


class Coalescer:
    def __init__(self, pool: asyncpg.Pool, *, max_group: int = 200, max_inflight: int = 8) -> None:
        self._pool = pool
        self._max_group = max_group
        self._max_inflight = max_inflight
        self._waiting: list[_Item] = []
        self._inflight = 0
        self._kick_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, community: str, tx: NewTransaction, plan: Plan) -> store.Written:
        """Writes `tx` as part of the next group; returns its own outcome."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[store.Written] = loop.create_future()
        self._waiting.append((community, tx, plan, future))
        if not self._kick_scheduled and self._inflight < self._max_inflight:
            # Let the requests already runnable in this loop tick join the group.
            self._kick_scheduled = True
            loop.call_soon(self._kick)
        return await future

    def _kick(self) -> None:
        self._kick_scheduled = False
        while self._waiting and self._inflight < self._max_inflight:
            group = self._waiting[: self._max_group]
            del self._waiting[: self._max_group]
            self._inflight += 1
            task = asyncio.create_task(self._flush(group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _flush(self, group: list[_Item]) -> None:
        try:
            by_community: dict[str, list[_Item]] = defaultdict(list)
            for item in group:
                by_community[item[0]].append(item)
            for community, items in by_community.items():
                await self._write(community, sorted(items, key=lambda i: _lock_key(i[2])))
        finally:
            self._inflight -= 1
            if self._waiting:
                self._kick()

    async def _write(self, community: str, items: list[_Item]) -> None:
        writes = [store.create_write(tx, plan) for _, tx, plan, _ in items]
        try:
            async with self._pool.acquire() as conn:
                results = await unit_of_work(  # a group is one statement: its own transaction
                    conn,
                    lambda: store.write(conn, community, writes, skip_locked=True),
                    atomic=False,
                )
        except Exception as err:
            if fault_of(err) is not None:
                # The database is down or silent: alone, each would wait as long again.
                for item in items:
                    if not item[3].done():
                        item[3].set_exception(err)
                return
            # Something in the group broke the whole round trip: write each on its own,
            # so only the item at fault hears of it.
            for item in items:
                self._alone(item)
            return
        for item, result in zip(items, results, strict=True):
            if result.outcome == Outcome.BUSY:
                self._alone(item)
            elif not item[3].done():
                item[3].set_result(result)

    def _alone(self, item: _Item) -> None:
        """Writes one item in its own transaction, outside the flush slots, where it
        may wait for a member locked elsewhere without holding up anyone else."""
        task = asyncio.create_task(self._write_alone(item))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write_alone(self, item: _Item) -> None:
        community, tx, plan, future = item
        try:
            async with self._pool.acquire() as conn:
                writes = [store.create_write(tx, plan)]
                [result] = await unit_of_work(
                    conn, lambda: store.write(conn, community, writes), atomic=False
                )
        except Exception as err:  # the caller's request fails with it
            if not future.done():
                future.set_exception(err)
            return
        if not future.done():
            future.set_result(result)
