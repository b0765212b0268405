"""Browser tests: the real service under uvicorn on a fresh database, driven by
Playwright in Debian's Chromium (STACK.md: Playwright cannot download its own
browser here). Without `chromium` on PATH the tests are skipped, saying why;
`.ci/run` installs it.

`pages` opens pages at the two sizes the app is built for and fails the test on
any console error (a CSP violation among them), uncaught page error, or script,
style sheet, image or fetch of the app's that fails or answers 4xx/5xx; `Shots`
saves a screenshot of each page into docs/app/ when LEDGER_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from service.app import create_app
from service.config import load_settings
from tests.helpers import ADMIN_KEY, bearer, served

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
try:
    from playwright.async_api import (
        Browser,
        BrowserContext,
        ConsoleMessage,
        Page,
        Request,
        Response,
        async_playwright,
    )
except ImportError:  # pragma: no cover - playwright is a dev dependency
    async_playwright = None

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or async_playwright is None,
    reason="browser tests need Debian's chromium (apt-get install chromium; .ci/run does)",
)

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
SHOTS_DIR = Path(__file__).resolve().parents[2] / "docs" / "app"
# What Chromium must not do here: the probe's flags (no background networking).
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def app_url(dsn: str) -> Iterator[str]:
    """The app under uvicorn (scheduler on, as in production) on this test's database."""
    settings = msgspec.structs.replace(
        load_settings(), admin_key=ADMIN_KEY, pool_min_size=1, pool_max_size=6
    )
    with served(create_app(settings, dsn=dsn, scheduler=True)) as url:
        yield url


@pytest.fixture
async def api(app_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The API of the same server, with the admin key, to set up and to compare."""
    async with httpx.AsyncClient(base_url=app_url, headers=bearer(ADMIN_KEY), timeout=30) as c:
        yield c


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert async_playwright is not None
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            await b.close()


class Pages:
    """Opens browser contexts (one per person: each has its own cookies) and
    collects every console error and page error they see."""

    def __init__(self, browser: Browser, base_url: str) -> None:
        self.browser = browser
        self.base_url = base_url
        self.errors: list[str] = []
        self._contexts: list[BrowserContext] = []

    async def person(self, viewport: dict[str, int] = PHONE, **options: Any) -> Page:
        context = await self.browser.new_context(
            base_url=self.base_url, viewport=viewport, locale="zh-CN", **options
        )
        self._contexts.append(context)
        page = await context.new_page()
        page.set_default_timeout(10_000)

        def console(message: ConsoleMessage) -> None:
            # A page's own status (a 401 sign-in form, a 409 refusal) is what the
            # test asserts on; Chromium also logs it as "Failed to load resource".
            # Subresources that fail are caught by `response` below instead.
            if message.type == "error" and not message.text.startswith("Failed to load resource"):
                self.errors.append(f"console: {message.text} at {page.url}")

        def response(r: Response) -> None:
            if r.status >= 400 and r.request.resource_type != "document":
                self.errors.append(f"{r.status} for {r.request.resource_type} {r.url}")

        page.on("console", console)
        page.on("response", response)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc} at {page.url}"))

        def failed(r: Request) -> None:
            # A navigation cancels what the previous page still loaded (its icon,
            # say): net::ERR_ABORTED is the browser leaving, not the app failing.
            if r.url.startswith(self.base_url) and "ERR_ABORTED" not in (r.failure or ""):
                self.errors.append(f"requestfailed: {r.url} {r.failure}")

        page.on("requestfailed", failed)
        return page

    async def close(self) -> None:
        for context in self._contexts:
            await context.close()


@pytest.fixture
async def pages(browser: Browser, app_url: str) -> AsyncIterator[Pages]:
    opened = Pages(browser, app_url)
    yield opened
    await opened.close()
    assert not opened.errors, "\n".join(opened.errors)


class Shots:
    """`await shots.take(page, "resident-balance")`: docs/app/<name>.png when
    LEDGER_SCREENSHOTS=1 (how docs/app.md's pictures are made), else nothing."""

    enabled = os.environ.get("LEDGER_SCREENSHOTS") == "1"

    async def take(self, page: Page, name: str, full_page: bool = True) -> None:
        if self.enabled:
            SHOTS_DIR.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(SHOTS_DIR / f"{name}.png"), full_page=full_page)


@pytest.fixture
def shots() -> Shots:
    return Shots()


# axe-core (npm, MPL-2.0), for the tests only: the WCAG 2 A and AA rules a page
# must pass. Evaluated through the DevTools protocol, so the page's CSP is untouched.
AXE = (Path(__file__).parent / "vendor" / "axe-core-4.14.1.min.js").read_text(encoding="utf-8")
AXE_RUN = """async () => {
  const r = await axe.run(document, {runOnly: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]});
  return r.violations.map(v => `${v.id} (${v.impact}): ${v.help}: ` +
    v.nodes.slice(0, 3).map(n => n.target.join(" ")).join(", "));
}"""


async def accessibility_problems(page: Page) -> list[str]:
    """What axe-core finds wrong on the page as it is now (WCAG 2.1 A and AA)."""
    if not await page.evaluate("typeof axe !== 'undefined'"):
        await page.evaluate(f"() => {{ {AXE}\n; window.axe = axe; }}")
    problems: list[str] = await page.evaluate(AXE_RUN)
    return problems


async def both_sizes(page: Page, path: str) -> None:
    """Loads `path` at the desktop's and the phone's size (console errors of
    either are collected by `pages`), checks it against WCAG 2.1 AA with axe-core
    at both, and ends at the phone's."""
    for viewport in (DESKTOP, PHONE):
        await page.set_viewport_size(viewport)
        await page.goto(path)
        await page.wait_for_load_state("networkidle")
        problems = await accessibility_problems(page)
        assert not problems, f"{path} at {viewport}: " + "; ".join(problems)
