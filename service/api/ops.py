"""Liveness and readiness: no key needed."""

from __future__ import annotations

import asyncio
from typing import Any, Final

from litestar import Request, Response, get

from service.api.deps import pool_of
from service.db import ping
from service.outage import fault_of

# Kubernetes' default probe timeout is 1 s and the contract is 2 s: answer before
# either, whatever the database does (refuses, hangs, or is frozen mid-statement).
READY_WITHIN_S: Final = 0.9
# Probes given up on, still cleaning up (a connection frozen mid-statement takes
# asyncpg a while to let go of): kept referenced until they end.
_abandoned: set[asyncio.Task[None]] = set()


@get("/health", opt={"public": True})
async def health() -> dict[str, str]:
    return {"status": "ok"}


@get("/ready", opt={"public": True})
async def ready(request: Request[Any, Any, Any]) -> Response[dict[str, str]]:
    """200 when the database answers `SELECT 1` within `READY_WITHIN_S`, else 503.
    The probe runs as a task of its own so that the answer never waits for its
    cleanup: a cancelled statement on a frozen server holds its connection."""
    probe = asyncio.ensure_future(ping(pool_of(request)))
    done, _ = await asyncio.wait({probe}, timeout=READY_WITHIN_S)
    if not done:
        probe.cancel()
        _abandoned.add(probe)
        probe.add_done_callback(_abandoned.discard)
        return _unready("TimeoutError")
    error = probe.exception()
    if error is None:
        return Response({"status": "ready"})
    if fault_of(error) is None:
        raise error  # not an outage: a bug, answered and logged as one
    return _unready(type(error).__name__)


def _unready(error: str) -> Response[dict[str, str]]:
    body = {"status": "unavailable", "error": error}
    return Response(body, status_code=503, headers={"Retry-After": "1"})
