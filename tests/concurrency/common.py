"""What the concurrency tests share: account names and firing many requests at once."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.helpers import C

ISSUANCE = "system:issuance:points"
OFFSETS = "property:acme:offsets"
STORE = "store:s1:redemptions"


async def post_all(api: httpx.AsyncClient, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """POSTs every body to /transactions at once; responses in the order of `bodies`."""
    return list(await asyncio.gather(*(api.post(f"{C}/transactions", json=b) for b in bodies)))


def send(api: httpx.AsyncClient, body: dict[str, Any]) -> asyncio.Task[httpx.Response]:
    """Starts one POST to /transactions without waiting for it."""
    return asyncio.create_task(api.post(f"{C}/transactions", json=body))
