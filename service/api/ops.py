"""Liveness and readiness: no key needed."""

from __future__ import annotations

import asyncio
from typing import Any, Final

from litestar import Request, Response, get

from service.api.deps import pool_of
from service.outage import fault_of

# Kubernetes' default probe timeout is 1 s and the contract is 2 s: answer before
# either, whatever the database does (refuses, hangs, or is frozen mid-statement).
READY_WITHIN_S: Final = 0.9


@get("/health", opt={"public": True})
async def health() -> dict[str, str]:
    return {"status": "ok"}


@get("/ready", opt={"public": True})
async def ready(request: Request[Any, Any, Any]) -> Response[dict[str, str]]:
    try:
        async with asyncio.timeout(READY_WITHIN_S):
            async with pool_of(request).acquire() as conn:
                await conn.fetchval("SELECT 1")
    except Exception as err:
        if fault_of(err) is None:
            raise  # not an outage: a bug, answered and logged as one
        headers = {"Retry-After": "1"}
        body = {"status": "unavailable", "error": type(err).__name__}
        return Response(body, status_code=503, headers=headers)
    return Response({"status": "ready"})
