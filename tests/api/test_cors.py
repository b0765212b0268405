"""CORS for browser apps (off unless LEDGER_CORS_ORIGINS names origins) and the
`WWW-Authenticate: Bearer` challenge of every 401."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.config import load_settings
from tests.helpers import ADMIN_KEY, C, bearer

APP = "https://app.green-court.example"
PREFLIGHT = {
    "Origin": APP,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type",
}
Client = AsyncTestClient[Any]


@pytest.fixture
async def browser_client(dsn: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Client]:
    """The app with CORS on for one origin (and one more, to parse the list)."""
    monkeypatch.setenv("LEDGER_CORS_ORIGINS", f" {APP} , https://till.example ")
    os.environ["LEDGER_ADMIN_KEY"] = ADMIN_KEY
    app = create_app(load_settings(), dsn=dsn, scheduler=False)
    async with AsyncTestClient(app) as c:
        yield c


def test_origins_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGER_CORS_ORIGINS", f" {APP} , https://till.example ,")
    assert load_settings().cors_origins == (APP, "https://till.example")
    monkeypatch.delenv("LEDGER_CORS_ORIGINS")
    assert load_settings().cors_origins == ()


async def test_a_preflight_is_answered_before_any_key_is_asked_for(browser_client: Client) -> None:
    r = await browser_client.options(f"{C}/offsets", headers=PREFLIGHT)
    assert r.status_code in (200, 204), r.text
    assert r.headers["access-control-allow-origin"] == APP
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "authorization" in r.headers["access-control-allow-headers"].lower()


async def test_answers_to_an_allowed_origin_carry_cors_headers(browser_client: Client) -> None:
    r = await browser_client.post(
        "/v1/communities", json={"id": "green", "name": "Green"}, headers={"Origin": APP}
    )
    assert r.status_code == 401
    assert r.headers["access-control-allow-origin"] == APP
    assert "idempotent-replayed" in r.headers["access-control-expose-headers"].lower()
    headers = {"Origin": APP, **bearer(ADMIN_KEY)}
    r = await browser_client.post(
        "/v1/communities", json={"id": "green", "name": "Green"}, headers=headers
    )
    assert r.status_code == 201 and r.headers["access-control-allow-origin"] == APP


async def test_another_origin_gets_no_cors_headers(browser_client: Client) -> None:
    r = await browser_client.options(
        f"{C}/offsets", headers={**PREFLIGHT, "Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in r.headers


async def test_cors_is_off_by_default(client: Client) -> None:
    r = await client.get(f"{C}", headers={"Origin": APP})
    assert "access-control-allow-origin" not in r.headers
    r = await client.options(f"{C}/offsets", headers=PREFLIGHT)
    assert "access-control-allow-origin" not in r.headers


async def test_every_401_challenges_for_a_bearer_key(client: Client) -> None:
    for headers in ({"Authorization": ""}, bearer("not-a-key-0123456789abcdefghijklmn")):
        r = await client.get(f"{C}/members/m0/balance", headers=headers)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.headers["content-type"].startswith("application/problem+json")
    assert "www-authenticate" not in (await client.get(f"{C}/nothing")).headers
