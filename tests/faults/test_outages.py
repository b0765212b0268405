"""PostgreSQL stopped or frozen under load: honest 503s, then recovery without a
restart, and no acknowledged write lost or doubled (issue 12, finding 4)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.faults.common import C, Ledger, community, load, settle, until_ok
from tests.faults.live import Postgres, serving

TIMEOUT_S = 1.0  # LEDGER_DB_TIMEOUT_S for these tests


def assert_unavailable(ledger_problems: list[object], log: str = "") -> None:
    """Every problem is an honest 503; on failure, the service log's end says why."""
    for r in ledger_problems:
        assert r.status_code == 503, (r.status_code, r.text, log[-3000:])  # type: ignore[attr-defined]
        assert r.headers["content-type"] == "application/problem+json"  # type: ignore[attr-defined]
        assert r.json()["code"] == "unavailable"  # type: ignore[attr-defined]
        assert int(r.headers["retry-after"]) >= 1  # type: ignore[attr-defined]


def assert_quiet_log(log: str, seconds: float) -> None:
    """No 500 and no traceback; the outage is a warning every 10 s at most."""
    assert "unhandled_error" not in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert '"status": 500' not in log
    assert log.count('"database_unavailable"') <= 2 + seconds / 10


async def test_postgres_stopped_under_load(own_postgres: Postgres, tmp_path: Path) -> None:
    log_path = tmp_path / "service.log"
    with serving(own_postgres.uri, log_path, LEDGER_DB_TIMEOUT_S=str(TIMEOUT_S)) as service:
        async with service.client(timeout=10) as api:
            await community(api)
            everything = Ledger()
            before = await load(api, seconds=1.0, name="before", into=everything)
            assert not before.problems, [r.text for r in before.problems[:3]]
            everything.problems.clear()

            async def stop_midway() -> None:
                await asyncio.sleep(0.5)
                await asyncio.to_thread(own_postgres.stop)

            started = time.monotonic()
            during, _ = await asyncio.gather(
                load(api, seconds=3.0, name="during", into=everything), stop_midway()
            )
            assert during.problems, "the writes went on while the database was down"
            assert_unavailable(during.problems, service.log())
            assert during.slowest_s < 2 * TIMEOUT_S + 2, during.slowest_s
            ready = await api.get("/ready")
            assert ready.status_code == 503

            await asyncio.to_thread(own_postgres.start)
            recovered_s = await until_ok(api, f"{C}/members/m0/balance", within_s=20)
            problems_so_far = len(everything.problems)
            await load(api, seconds=0.5, name="after", into=everything)
            late = everything.problems[problems_so_far:]
            assert not late, [r.text for r in late[:3]]
            await settle(api, everything)
        assert_quiet_log(service.log(), time.monotonic() - started)
    print(f"recovered {recovered_s:.1f} s after the restart")


async def test_postgres_frozen(own_postgres: Postgres, tmp_path: Path) -> None:
    log_path = tmp_path / "service.log"
    with serving(own_postgres.uri, log_path, LEDGER_DB_TIMEOUT_S=str(TIMEOUT_S)) as service:
        async with service.client(timeout=15) as api:
            await community(api)
            everything = await load(api, seconds=0.5, name="before")
            assert not everything.problems
            acknowledged_before = set(everything.acknowledged)
            frozen = own_postgres.freeze()
            try:
                started = time.monotonic()
                ready = await api.get("/ready")
                ready_s = time.monotonic() - started
                assert ready.status_code == 503 and ready_s < 2, (ready.status_code, ready_s)
                during = await load(api, seconds=2 * TIMEOUT_S + 1, name="during", into=everything)
                balance = await api.get(f"{C}/members/m1/balance")
            finally:
                Postgres.thaw(frozen)
            assert during.problems and during.acknowledged == acknowledged_before
            assert_unavailable([*during.problems, balance], service.log())
            # The contract: an answer within the database timeout, the pool's wait
            # and the client's one-second grace, not for as long as it is frozen.
            assert during.slowest_s < 2 * TIMEOUT_S + 1.5, during.slowest_s
            await until_ok(api, f"{C}/members/m0/balance", within_s=20)
            assert (await api.get("/ready")).status_code == 200
            await settle(api, everything)
        assert_quiet_log(service.log(), 10)
