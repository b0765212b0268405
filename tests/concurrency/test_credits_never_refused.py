"""Credits through the group commit are never refused, however busy their member is."""

from __future__ import annotations

import random

import httpx

from tests.concurrency.common import post_all
from tests.helpers import ISSUANCE, STORE, balance, community, transfer


async def test_credits_racing_spends_on_few_members_all_succeed(api: httpx.AsyncClient) -> None:
    """Many groups touch the same five members at once, so member rows are often
    locked by another group: credits must be written (alone if need be), never 409."""
    await community(api, members=5)  # type: ignore[arg-type]
    credits = [transfer(f"c{i}", ISSUANCE, f"member:m{i % 5}:points", 1) for i in range(300)]
    spends = [transfer(f"s{i}", f"member:m{i % 5}:points", STORE, 1) for i in range(150)]
    bodies = credits + spends
    random.Random(7).shuffle(bodies)
    responses = await post_all(api, bodies)
    by_id = {b["id"]: r for b, r in zip(bodies, responses, strict=True)}
    assert all(by_id[c["id"]].status_code in (200, 201) for c in credits), [
        by_id[c["id"]].text for c in credits if by_id[c["id"]].status_code >= 400
    ][:3]
    assert all(by_id[s["id"]].status_code in (201, 409) for s in spends)
    spent = sum(by_id[s["id"]].status_code == 201 for s in spends)
    scores = [(await balance(api, f"m{i}"))["points"]["score"] for i in range(5)]  # type: ignore[arg-type]
    assert sum(scores) == 500 + 300 - spent
