"""Page tests over HTTP (no browser): the real app on the test database, a person
signed in with a session cookie as a browser would be."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.config import load_settings
from tests.helpers import ADMIN_KEY

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: str) -> str:
    """The CSRF token a page's forms carry."""
    found = CSRF.search(page)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


async def sign_in_with_key(browser: AsyncTestClient[Any], key: str) -> str:
    """Signs in as a browser would (same-origin form post); returns the home path."""
    r = await browser.post(
        "/app/sign-in", data={"key": key}, headers={"Sec-Fetch-Site": "same-origin"}
    )
    assert r.status_code == 303, r.text
    return str(r.headers["location"])


async def sign_in_with_link(browser: AsyncTestClient[Any], url: str) -> str:
    token = url.split("#", 1)[1]
    r = await browser.post(
        "/app/in", data={"token": token}, headers={"Sec-Fetch-Site": "same-origin"}
    )
    assert r.status_code == 303, r.text
    return str(r.headers["location"])


@pytest.fixture
async def browser_client(dsn: str) -> AsyncIterator[AsyncTestClient[Any]]:
    """A second client on the same app as `client`'s database, without the admin
    header: it only has the cookies the app gives it."""
    settings = msgspec.structs.replace(load_settings(), admin_key=ADMIN_KEY)
    app = create_app(settings, dsn=dsn, scheduler=False)
    async with AsyncTestClient(app) as c:
        c.follow_redirects = False  # the tests look at each redirect
        yield c
