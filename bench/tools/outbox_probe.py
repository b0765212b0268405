"""What the outbox's probe costs a write when nobody listens: the statement
`ledger_write` runs once per call to learn which event types the community's
webhooks listen to, timed in a PL/pgSQL loop on a fresh embedded database against
the same loop without it. `uv run python -m bench.tools.outbox_probe`."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import asyncpg

from service.db import migrate, start_embedded

LOOP = """
CREATE OR REPLACE FUNCTION pg_temp.probe_loop(n integer, probe boolean) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE v text[];
BEGIN
    FOR i IN 1 .. n LOOP
        IF probe THEN
            SELECT array_agg(DISTINCT x.type) INTO v
              FROM webhooks wh, unnest(wh.events) AS x(type)
             WHERE wh.community_id = 'probe' AND wh.deleted_at IS NULL;
        END IF;
    END LOOP;
END $$;
"""


async def main(iterations: int = 20_000) -> None:
    dsn = start_embedded(Path(tempfile.mkdtemp(prefix="outbox-probe-")))
    await migrate(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(LOOP)
        for probe in (False, True, False, True):
            start = time.perf_counter()
            await conn.execute("SELECT pg_temp.probe_loop($1, $2)", iterations, probe)
            each = (time.perf_counter() - start) / iterations * 1e6
            print(f"{'with the probe' if probe else 'empty loop'}: {each:.2f} µs per write call")
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
