"""kill -9 of the service under concurrent writes: every acknowledged id is there
once, retries of the others create or replay, balances are exact, and the audit
(the `dsn` fixture's) passes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.faults.common import community, load, settle
from tests.faults.live import Service, serving


async def test_kill9_under_concurrent_writes(dsn: str, tmp_path: Path) -> None:
    first = Service(dsn, tmp_path / "first.log")
    try:
        first.wait_ready()
        async with first.client(timeout=10) as api:
            await community(api)

            async def kill_midway() -> None:
                await asyncio.sleep(1.0)
                await asyncio.to_thread(first.kill)

            ledger, _ = await asyncio.gather(
                load(api, seconds=2.0, name="w", writers=16), kill_midway()
            )
    finally:
        first.stop()
    assert len(ledger.acknowledged) > 50, "too few writes to prove anything"
    assert len(ledger.sent) > len(ledger.acknowledged), "the kill interrupted nothing"
    with serving(dsn, tmp_path / "second.log") as second:
        async with second.client(timeout=10) as api:
            await settle(api, ledger)
