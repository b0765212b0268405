"""Writers take a member's accounts in one order: byte-wise address order, minutes
before points. A writer that took points first and minutes later (a rule posting
minutes under the event's member lock) could deadlock with a batch holding both."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from service.rules import store as rules_store
from tests.helpers import community


async def test_the_member_lock_takes_minutes_then_points(
    client: AsyncTestClient[Any], pool: asyncpg.Pool
) -> None:
    await community(client)
    async with pool.acquire() as holder, pool.acquire() as other:
        async with holder.transaction():
            locked = await rules_store.lock_member(holder, "green", "m0", [])
            assert locked is not None and locked.posted == 100  # the points row
            for asset in ("minutes", "points"):
                with pytest.raises(asyncpg.LockNotAvailableError):
                    await other.fetchrow(
                        "SELECT 1 FROM accounts WHERE community_id = 'green' AND address = $1 "
                        "FOR UPDATE NOWAIT",
                        f"member:m0:{asset}",
                    )
        assert await rules_store.lock_member(other, "green", "nobody", []) is None


def test_lock_order_is_byte_order_in_every_lock_query() -> None:
    """The write engine locks member accounts sorted byte-wise, as Python's sorted()
    does (both of its lock statements: waiting, and skipping locked rows)."""
    from service.db import sql_dir

    ledger = (sql_dir() / "functions" / "ledger.sql").read_text()
    engine = ledger.split("CREATE OR REPLACE FUNCTION ledger_write(")[1].split("$$;")[0]
    assert engine.count('ORDER BY acc.address COLLATE "C"') == 2
    assert engine.count("FOR UPDATE SKIP LOCKED) l") == 1
    rules = (sql_dir() / "functions" / "rules.sql").read_text()
    lock = rules.split("CREATE OR REPLACE FUNCTION rules_lock_member")[1].split("$$")[1]
    assert "':minutes'" in lock.split("':points'")[0]
