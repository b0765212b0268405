"""Rate limits (issue 12, finding 3): failed authentication per client address
and per key id, writes per key; 429 `rate_limited` with `Retry-After`, and a
refused request changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.config import Rate, RateLimits, load_settings
from tests.helpers import ADMIN_KEY, C, bearer, community, transfer

LIMITS = RateLimits(
    enabled=True,
    auth_failures_per_address=Rate(count=5, per_s=60),
    auth_failures_per_key=Rate(count=3, per_s=60),
    writes_per_key=Rate(count=4, per_s=60),
)


@pytest.fixture
async def limited(dsn: str) -> AsyncIterator[AsyncTestClient[Any]]:
    settings = msgspec.structs.replace(load_settings(), admin_key=ADMIN_KEY, rate_limits=LIMITS)
    app = create_app(settings, dsn=dsn, scheduler=False)
    async with AsyncTestClient(app) as c:
        yield c


def assert_limited(r: Any) -> None:
    assert r.status_code == 429, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "rate_limited"
    assert int(r.headers["retry-after"]) >= 1


async def test_wrong_keys_from_one_address_are_refused_before_the_database(
    limited: AsyncTestClient[Any],
) -> None:
    guesses = [f"Bearer plk_{n:016x}_{'x' * 43}" for n in range(5)]
    for guess in guesses:
        r = await limited.get("/v1/communities/x", headers={"Authorization": guess})
        assert r.status_code == 401, r.text
    r = await limited.get("/v1/communities/x", headers={"Authorization": guesses[0]})
    assert_limited(r)
    # Even the right key is refused from that address until the bucket refills.
    admin = bearer(ADMIN_KEY)
    assert_limited(await limited.get("/v1/communities/x", headers=admin))


async def test_wrong_secrets_for_one_key_id_are_refused(
    limited: AsyncTestClient[Any],
) -> None:
    r = await limited.post("/v1/api-keys", json={"role": "admin"}, headers=bearer(ADMIN_KEY))
    assert r.status_code == 201, r.text
    key_id = r.json()["id"]
    wrong = f"Bearer plk_{key_id}_{'y' * 43}"
    for _ in range(3):
        r = await limited.get("/v1/communities/x", headers={"Authorization": wrong})
        assert r.status_code == 401
    assert_limited(await limited.get("/v1/communities/x", headers={"Authorization": wrong}))


async def test_writes_past_a_keys_rate_are_refused_and_change_nothing(
    limited: AsyncTestClient[Any],
) -> None:
    limited.headers.update(bearer(ADMIN_KEY))
    await community(limited, members=1)  # 3 writes: community, household, member
    award = transfer("t1", "system:issuance:points", "member:m0:points", 5)
    assert (await limited.post(f"{C}/transactions", json=award)).status_code == 201
    refused = transfer("t2", "system:issuance:points", "member:m0:points", 5)
    assert_limited(await limited.post(f"{C}/transactions", json=refused))
    assert (await limited.get(f"{C}/transactions/t2")).status_code == 404  # reads still pass
    r = await limited.get(f"{C}/members/m0/balance")
    assert r.json()["points"]["score"] == 105


async def test_limits_off_refuse_nothing(dsn: str) -> None:
    off = msgspec.structs.replace(LIMITS, enabled=False)
    settings = msgspec.structs.replace(load_settings(), admin_key=ADMIN_KEY, rate_limits=off)
    async with AsyncTestClient(create_app(settings, dsn=dsn, scheduler=False)) as c:
        for n in range(12):
            r = await c.get("/v1/communities/x", headers={"Authorization": f"Bearer plk_{n}_z"})
            assert r.status_code == 401
