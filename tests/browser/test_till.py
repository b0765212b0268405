"""The till in a real browser (issue 17): a store key signs in, takes a resident's
spend code, redeems two items, sees the receipt, returns one, and the API's
balance shows the points back; a used code is refused in words. Every till page
at both sizes, with screenshots. And a real scan: Chromium's fake camera plays a
video of the QR code the resident's phone would show, and jsQR reads it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import segno

from tests.browser.conftest import ARGS, CHROMIUM, DESKTOP, PHONE, Pages, Shots, both_sizes
from tests.helpers import bearer

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="browser tests need Debian's chromium")

C = "/v1/communities/green"


async def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def shop(api: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    """Community green, member m0 with 100 points, store s1 with soap (5), oil (20)
    and rice (30, sold out). The store's key, and a resident key's header for m0."""
    await _ok(await api.post("/v1/communities", json={"id": "green", "name": "Green Court"}))
    await _ok(await api.post(f"{C}/households", json={"id": "h0", "property_company": "acme"}))
    await _ok(await api.post(f"{C}/members", json={"id": "m0", "household": "h0"}))
    award = {
        "id": "a-m0",
        "postings": [
            {
                "source": "system:issuance:points",
                "destination": "member:m0:points",
                "asset": "points",
                "amount": 100,
            }
        ],
    }
    await _ok(await api.post(f"{C}/transactions", json=award))
    for sku, name, points, stock in (
        ("soap", "肥皂", 5, 10),
        ("oil", "食用油", 20, 10),
        ("rice", "大米", 30, 0),
    ):
        item = {"name": name, "points": points, "stock": stock}
        await _ok(await api.put(f"{C}/stores/s1/items/{sku}", json=item))
    store = await _ok(
        await api.post("/v1/api-keys", json={"role": "store", "community": "green", "store": "s1"})
    )
    resident = await _ok(
        await api.post(
            "/v1/api-keys", json={"role": "resident", "community": "green", "member": "m0"}
        )
    )
    return store["key"], bearer(resident["key"])


async def spend_code(api: httpx.AsyncClient, resident: dict[str, str], ttl_s: int = 120) -> str:
    """The code the resident's phone would show (the test needs no resident page)."""
    body = {"max_points": 100, "ttl_s": ttl_s}
    code = await _ok(await api.post(f"{C}/members/m0/spend-codes", json=body, headers=resident))
    return str(code["code"])


async def redeemable(api: httpx.AsyncClient) -> int:
    points: int = (await _ok(await api.get(f"{C}/members/m0/balance")))["points"]["redeemable"]
    return points


async def sign_in(page: Any, key: str) -> None:
    await page.goto("/app/sign-in")
    await page.fill("#key", key)
    await page.click("form[action='/app/sign-in'] button[type=submit]")
    await page.wait_for_url("**/app/till")


async def test_a_sale_at_the_till_its_receipt_a_return_and_a_refusal(
    api: httpx.AsyncClient, pages: Pages, shots: Shots
) -> None:
    key, resident = await shop(api)
    code = await spend_code(api, resident)
    page = await pages.person(DESKTOP)  # a tablet on the counter
    page.on("dialog", lambda dialog: dialog.accept())
    await sign_in(page, key)

    await both_sizes(page, "/app/till")
    await shots.take(page, "till-scan-phone")
    await page.set_viewport_size(DESKTOP)
    await shots.take(page, "till-scan")
    assert await page.locator("#scan-start").is_visible()

    # Step 1: the volunteer types the code (the camera's fallback).
    await page.fill("#code", code)
    await page.click("#code-form button[type=submit]")
    await page.wait_for_selector("#basket-form")
    assert "m0" in await page.locator("#member-heading").inner_text()
    assert await page.locator("#qty-rice").is_disabled(), "a sold-out item can be chosen"
    assert code not in page.url

    # Step 2: two soaps and one oil; the running total follows.
    await page.click("button[data-for='qty-soap'][data-step='1']")
    await page.click("button[data-for='qty-soap'][data-step='1']")
    await page.click("button[data-for='qty-oil'][data-step='1']")
    assert await page.locator("#basket-total").inner_text() == "30"
    await shots.take(page, "till-basket")
    await page.set_viewport_size(PHONE)
    await shots.take(page, "till-basket-phone")
    await page.set_viewport_size(DESKTOP)

    # Step 3: redeem; the receipt.
    await page.click("#basket-form button[type=submit]")
    await page.wait_for_url("**/app/till/receipts/*")
    receipt = page.url.split("/app/till/receipts/", 1)[1]
    assert await page.locator("#receipt-total").inner_text() == "30"
    assert await redeemable(api) == 70
    sale = await _ok(await api.get(f"{C}/redemptions/{receipt}"))
    assert (sale["member"], sale["points"]) == ("m0", 30)
    assert await page.locator("[data-print]").is_visible()
    path = f"/app/till/receipts/{receipt}"
    await both_sizes(page, path)
    await shots.take(page, "till-receipt-phone")
    await page.set_viewport_size(DESKTOP)
    await shots.take(page, "till-receipt")

    # A return of the oil: the points come back.
    await page.fill("#back-oil", "1")
    await page.click("form[action$='/return'] button[type=submit]")
    await page.wait_for_url("**?done=return")
    assert await page.locator("#receipt-returned").inner_text() == "20"
    assert await page.locator("#receipt-net").inner_text() == "10"
    assert await redeemable(api) == 90
    assert (await _ok(await api.get(f"{C}/redemptions/{receipt}")))["returned_points"] == 20
    await shots.take(page, "till-return")

    # A second sale with the used code is refused in words, and changes nothing.
    await page.goto("/app/till")
    await page.fill("#code", code)
    await page.click("#code-form button[type=submit]")
    alert = page.locator(".till-refusal")
    await alert.wait_for()
    assert "请居民重新出示消费码" in await alert.inner_text()
    await shots.take(page, "till-refused")
    assert await redeemable(api) == 90

    await both_sizes(page, "/app/till/today")
    assert receipt in await page.locator("table").inner_text()
    await shots.take(page, "till-today-phone")
    await page.set_viewport_size(DESKTOP)
    await shots.take(page, "till-today")


def qr_video(text: str, path: Path, width: int = 640, height: int = 480, frames: int = 3) -> None:
    """A y4m video (what Chromium's fake camera plays) of `text` as a QR code, black
    on white in the middle of the picture: the resident's phone held to the camera."""
    qr = segno.make(text, error="m")
    rows = [bytes(row) for row in qr.matrix_iter(scale=1, border=4)]
    scale = min(width, height) * 3 // 4 // len(rows)
    side = len(rows) * scale
    left, top = (width - side) // 2, (height - side) // 2
    white = b"\xeb" * width
    picture = bytearray()
    for y in range(height):
        if top <= y < top + side:
            row = rows[(y - top) // scale]
            line = bytearray(white)
            for x, dark in enumerate(row):
                if dark:
                    start = left + x * scale
                    line[start : start + scale] = b"\x10" * scale
            picture += line
        else:
            picture += white
    chroma = b"\x80" * (width // 2 * height // 2)
    frame = b"FRAME\n" + bytes(picture) + chroma + chroma
    header = f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode()
    path.write_bytes(header + frame * frames)


async def test_a_spend_code_scanned_with_the_camera(
    api: httpx.AsyncClient, app_url: str, tmp_path: Path, shots: Shots
) -> None:
    from playwright.async_api import async_playwright

    key, resident = await shop(api)
    code = await spend_code(api, resident, ttl_s=600)
    started = time.monotonic()
    video = tmp_path / "qr.y4m"
    qr_video(code, video)
    made_s = time.monotonic() - started
    errors: list[str] = []
    camera = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={video}",
    ]
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS + camera)
        try:
            context = await browser.new_context(
                base_url=app_url, viewport=DESKTOP, locale="zh-CN", permissions=["camera"]
            )
            page = await context.new_page()
            page.set_default_timeout(15_000)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await sign_in(page, key)
            scan_started = time.monotonic()
            await page.click("#scan-start")
            # jsQR (or BarcodeDetector) reads the code, stops the camera and sends the form.
            await page.wait_for_selector("#basket-form")
            read_s = time.monotonic() - scan_started
            assert "m0" in await page.locator("#member-heading").inner_text()
            assert await page.locator("input[name=code]").get_attribute("value") == code
            await shots.take(page, "till-scanned")
        finally:
            await browser.close()
    assert not errors, errors
    print(f"y4m of the QR code made in {made_s:.3f} s; read by the till in {read_s:.2f} s")
