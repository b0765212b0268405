"""Signing in to the web app: keys and one-time links become server-side sessions;
attacks first (guessing, replaying a link, forging a form from another site,
a revoked key, an expired session, another community)."""

from __future__ import annotations

import hashlib
from typing import Any

import asyncpg
import msgspec
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.config import load_settings
from tests.helpers import ADMIN_KEY, C, bearer, community
from tests.web.conftest import csrf_of, sign_in_with_key, sign_in_with_link

Client = AsyncTestClient[Any]
SAME = {"Sec-Fetch-Site": "same-origin"}


async def _key(client: Client, **scope: Any) -> dict[str, Any]:
    r = await client.post("/v1/api-keys", json={"community": "green", **scope})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def _link(client: Client, member: str = "m0", **body: Any) -> dict[str, Any]:
    r = await client.post(f"{C}/members/{member}/sign-in-links", json=body)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def test_a_browser_opening_the_service_gets_the_sign_in_page(browser_client: Client) -> None:
    r = await browser_client.get("/")
    assert (r.status_code, r.headers["location"]) == (303, "/app/")
    r = await browser_client.get("/app/")
    assert (r.status_code, r.headers["location"]) == (303, "/app/sign-in")
    r = await browser_client.get("/app/sign-in")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert 'type="password"' in r.text and "登录" in r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"
    r = await browser_client.get("/app/sign-in?lang=en")
    assert "Sign in" in r.text and 'lang="en"' in r.text
    r = await browser_client.get("/app/no-such-page")
    assert r.status_code == 404 and "text/html" in r.headers["content-type"]


async def test_a_key_becomes_a_session_cookie_and_is_never_shown_again(
    client: Client, browser_client: Client, dsn: str
) -> None:
    await community(client)
    operator = await _key(client, role="operator")
    r = await browser_client.post("/app/sign-in", data={"key": operator["key"]}, headers=SAME)
    assert (r.status_code, r.headers["location"]) == (303, "/app/office")
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Path=/app" in cookie
    assert "Secure" not in cookie  # plain http here; behind https it is Secure
    assert operator["key"] not in cookie
    token = browser_client.cookies["ledger_session"]
    conn = await asyncpg.connect(dsn)
    try:
        stored = await conn.fetchrow("SELECT * FROM app_sessions")
    finally:
        await conn.close()
    assert stored["id_hash"] == hashlib.sha256(token.encode()).digest()
    assert token not in str(dict(stored)) and operator["key"] not in str(dict(stored))
    r = await browser_client.get("/app/welcome")
    assert r.status_code == 200 and operator["key"] not in r.text


async def test_a_wrong_key_is_refused_and_guessing_is_rate_limited(
    client: Client, browser_client: Client
) -> None:
    await community(client)
    r = await browser_client.post(
        "/app/sign-in", data={"key": "plk_0123456789abcdef_nope"}, headers=SAME
    )
    assert r.status_code == 401 and "无效" in r.text and "nope" not in r.text
    assert "ledger_session" not in browser_client.cookies
    statuses = []
    for i in range(40):
        r = await browser_client.post(
            "/app/in", data={"token": f"green.{'x' * 40}{i:02d}"}, headers=SAME
        )
        statuses.append(r.status_code)
    # 30 failures a minute per address (LEDGER_RATE_AUTH_FAILURES_PER_ADDRESS), the
    # wrong key above included: keys and links share the address's budget.
    assert statuses.count(401) == 29 and set(statuses[29:]) == {429}


async def test_a_sign_in_link_works_once(client: Client, browser_client: Client) -> None:
    await community(client)
    link = await _link(client, ttl_s=600)
    assert "/app/in#" in link["url"] and link["expires_at"]
    assert (await sign_in_with_link(browser_client, link["url"])) == "/app/me"
    # The same link again, from another browser: refused.
    browser_client.cookies.clear()
    token = link["url"].split("#", 1)[1]
    r = await browser_client.post("/app/in", data={"token": token}, headers=SAME)
    assert r.status_code == 401 and "ledger_session" not in browser_client.cookies


async def test_who_may_issue_a_link(client: Client) -> None:
    await community(client)
    r = await client.post(f"{C}/members/nobody/sign-in-links", json={})
    assert r.status_code == 404
    r = await client.post(f"{C}/members/m0/sign-in-links", json={"ttl_s": 86401})
    assert r.status_code == 422
    resident = await _key(client, role="resident", member="m0")
    r = await client.post(f"{C}/members/m0/sign-in-links", json={}, headers=bearer(resident["key"]))
    assert r.status_code == 403
    r = await client.post("/v1/communities", json={"id": "blue", "name": "Blue"})
    assert r.status_code == 201
    r = await client.post("/v1/api-keys", json={"role": "operator", "community": "blue"})
    other = r.json()["key"]
    r = await client.post(f"{C}/members/m0/sign-in-links", json={}, headers=bearer(other))
    assert r.status_code == 403


async def test_forms_need_the_session_token_and_this_site(
    client: Client, browser_client: Client
) -> None:
    await community(client)
    operator = await _key(client, role="operator")
    await sign_in_with_key(browser_client, operator["key"])
    page = (await browser_client.get("/app/welcome")).text
    csrf = csrf_of(page)
    r = await browser_client.post("/app/sign-out", data={}, headers=SAME)
    assert r.status_code == 403
    r = await browser_client.post("/app/sign-out", data={"csrf": "x" * 32}, headers=SAME)
    assert r.status_code == 403
    r = await browser_client.post(
        "/app/sign-out", data={"csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert r.status_code == 403
    r = await browser_client.post(
        "/app/sign-out", data={"csrf": csrf}, headers={"Origin": "https://evil.example"}
    )
    assert r.status_code == 403
    assert (await browser_client.get("/app/welcome")).status_code == 200  # still signed in
    r = await browser_client.post("/app/sign-out", data={"csrf": csrf}, headers=SAME)
    assert (r.status_code, r.headers["location"]) == (303, "/app/sign-in")
    assert (await browser_client.get("/app/welcome")).status_code == 303


async def test_a_revoked_key_or_an_expired_session_signs_out(
    client: Client, browser_client: Client, dsn: str
) -> None:
    await community(client)
    operator = await _key(client, role="operator")
    await sign_in_with_key(browser_client, operator["key"])
    assert (await browser_client.get("/app/welcome")).status_code == 200
    r = await client.delete(f"/v1/api-keys/{operator['id']}")
    assert r.status_code in (200, 204), r.text
    r = await browser_client.get("/app/welcome")
    assert (r.status_code, r.headers["location"]) == (303, "/app/sign-in")

    browser_client.cookies.clear()
    await sign_in_with_link(browser_client, (await _link(client))["url"])
    assert (await browser_client.get("/app/welcome")).status_code == 200
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("UPDATE app_sessions SET expires_at = now() - interval '1 second'")
    finally:
        await conn.close()
    assert (await browser_client.get("/app/welcome")).status_code == 303


async def test_an_admin_session_is_not_a_resident_one(
    client: Client, browser_client: Client
) -> None:
    """A resident's session reaches no staff page (the role check of the API)."""
    await community(client)
    await sign_in_with_link(browser_client, (await _link(client))["url"])
    r = await browser_client.get("/app/welcome")
    assert r.status_code == 200
    page = r.text
    assert csrf_of(page)


async def test_changing_the_admin_key_ends_its_sessions(
    client: Client, browser_client: Client, dsn: str
) -> None:
    """A session opened with LEDGER_ADMIN_KEY records a digest of it, not the key;
    a process started with another admin key does not accept that session."""
    await sign_in_with_key(browser_client, ADMIN_KEY)
    assert (await browser_client.get("/app/welcome")).status_code == 200
    conn = await asyncpg.connect(dsn)
    try:
        recorded = await conn.fetchval("SELECT key_id FROM app_sessions")
    finally:
        await conn.close()
    assert recorded.startswith("env-admin:") and ADMIN_KEY not in recorded
    rotated = msgspec.structs.replace(load_settings(), admin_key="another-admin-key-" + "x" * 20)
    async with AsyncTestClient(create_app(rotated, dsn=dsn, scheduler=False)) as other:
        other.follow_redirects = False
        other.cookies.update(browser_client.cookies)
        r = await other.get("/app/welcome")
        assert (r.status_code, r.headers["location"]) == (303, "/app/sign-in")
    assert (await browser_client.get("/app/welcome")).status_code == 200  # the old process
