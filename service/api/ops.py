"""Liveness and readiness: no key needed."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from service.api.deps import pool_of


@get("/health", opt={"public": True})
async def health() -> dict[str, str]:
    return {"status": "ok"}


@get("/ready", opt={"public": True})
async def ready(request: Request[Any, Any, Any]) -> Response[dict[str, str]]:
    try:
        async with pool_of(request).acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1")
    except Exception as err:  # readiness reports any failure to reach the database
        return Response({"status": "unavailable", "error": type(err).__name__}, status_code=503)
    return Response({"status": "ready"})
