"""Concurrent writes share group commits, but each request keeps its own outcome."""

from __future__ import annotations

import httpx

from tests.concurrency.common import post_all
from tests.helpers import ISSUANCE, balance, community, transfer


async def test_a_value_the_database_refuses_fails_only_its_own_request(
    api: httpx.AsyncClient,
) -> None:
    """One request whose memo PostgreSQL refuses (a NUL character) sent among 30 valid ones:
    it alone is 422, and every valid request is written (201)."""
    await community(api, members=1)
    bodies = [transfer(f"ok{i}", ISSUANCE, "member:m0:points", 1) for i in range(30)]
    bodies.insert(15, transfer("bad", ISSUANCE, "member:m0:points", 1, memo="a\u0000b"))
    responses = await post_all(api, bodies)
    statuses = {b["id"]: r.status_code for b, r in zip(bodies, responses, strict=True)}
    assert statuses.pop("bad") == 422
    failed = sorted(tx_id for tx_id, status in statuses.items() if status != 201)
    assert failed == [], f"valid requests failed with another request's error: {failed}"
    assert (await balance(api, "m0"))["points"]["score"] == 130
