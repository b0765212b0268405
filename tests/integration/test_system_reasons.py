"""Reasons the service writes itself are in the community's language (SPEC section 9).

The opening balance, an offset and its cancel, a love-supermarket redemption and its
return, a conversion and a reversal: each statement entry reads in zh-CN for a
community that did not choose (the default) and in English for one created with
`"language": "en"`, through the real API and database. Each test ends with the audit.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import OFFSETS, C, Client, award, transfer

EXPECTED: dict[str | None, dict[str, str]] = {
    None: {
        "opening": "基础分",
        "offset": "物业费抵扣：h0 户抵扣 3.00 元（抵扣单 o1）",
        "offset_cancel": "撤销物业费抵扣，积分退回（抵扣单 o1）",
        "redemption": "爱心超市兑换（s1）：食用油×1、大米×2",
        "redemption_return": "爱心超市退货（s1），积分退回（兑换单 r1）",
        "conversion": "时间银行兑换积分：30 分钟，每小时 10 分",
        "reversal": "冲正：撤销交易 a1",
    },
    "en": {
        "opening": "opening balance: the baseline score",
        "offset": "property-fee offset o1: ¥3.00 off the bill of household h0",
        "offset_cancel": "property-fee offset o1 cancelled: the points are returned",
        "redemption": "love supermarket s1: 1 × 食用油, 2 × 大米",
        "redemption_return": "love supermarket s1: return of redemption r1",
        "conversion": "time bank: 30 minutes at 10 points an hour",
        "reversal": "reversal of a1",
    },
}
LANGUAGES = pytest.mark.parametrize("language", [None, "en"], ids=["default", "en"])


async def green(client: Client, language: str | None) -> None:
    """Community `green` in `language` (None: not given), household h0, member m0."""
    body = {"id": "green", "name": "Green Court"}
    if language is not None:
        body["language"] = language
    r = await client.post("/v1/communities", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["language"] == (language or "zh-CN")
    r = await client.post(f"{C}/households", json={"id": "h0", "property_company": "acme"})
    assert r.status_code == 201, r.text
    r = await client.post(f"{C}/members", json={"id": "m0", "household": "h0"})
    assert r.status_code == 201, r.text


async def entries(client: Client, asset: str = "points") -> list[dict[str, Any]]:
    """m0's statement, oldest first."""
    r = await client.get(f"{C}/members/m0/statement", params={"asset": asset})
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()["entries"]
    return found[::-1]


async def audited(client: Client) -> None:
    r = await client.get(f"{C}/audit/verify")
    assert r.status_code == 200 and r.json()["ok"], r.text


@LANGUAGES
async def test_a_new_members_opening_balance(client: Client, language: str | None) -> None:
    await green(client, language)
    [opening] = await entries(client)
    assert (opening["kind"], opening["amount"]) == ("opening", 100)
    assert opening["reason"] == EXPECTED[language]["opening"]
    await audited(client)


@LANGUAGES
async def test_an_offset_and_its_cancel(client: Client, language: str | None) -> None:
    await green(client, language)
    r = await client.put(f"{C}/rules", json={"baseline": 100, "fen_per_point": 10})
    assert r.status_code in (200, 201), r.text
    await award(client, "a1", "m0", 50)
    body = {"id": "o1", "member": "m0", "household": "h0", "bill_amount_fen": 10_000, "points": 30}
    r = await client.post(OFFSETS, json=body)
    assert r.status_code == 201, r.text
    r = await client.post(f"{OFFSETS}/o1/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    *_, offset, cancel = await entries(client)
    assert (offset["kind"], offset["amount"]) == ("offset", -30)
    assert offset["reason"] == EXPECTED[language]["offset"]
    assert (cancel["kind"], cancel["amount"]) == ("reversal", 30)
    assert cancel["reason"] == EXPECTED[language]["offset_cancel"]
    await audited(client)


@LANGUAGES
async def test_a_redemption_and_its_return(client: Client, language: str | None) -> None:
    """Goods keep the names the store gave them; the words around them are the community's."""
    await green(client, language)
    await award(client, "a1", "m0", 50)
    for sku, name, points in (("rice", "大米", 5), ("oil", "食用油", 10)):
        item = {"name": name, "points": points, "stock": 10}
        r = await client.put(f"{C}/stores/s1/items/{sku}", json=item)
        assert r.status_code == 201, r.text
    items = [{"sku": "rice", "qty": 2}, {"sku": "oil", "qty": 1}]
    body = {"id": "r1", "store": "s1", "member": "m0", "items": items}
    r = await client.post(f"{C}/redemptions", json=body)
    assert r.status_code == 201, r.text
    r = await client.post(f"{C}/redemptions/r1/return")
    assert r.status_code == 201, r.text
    *_, redemption, returned = await entries(client)
    assert (redemption["kind"], redemption["amount"]) == ("redemption", -20)
    assert redemption["reason"] == EXPECTED[language]["redemption"]
    assert (returned["kind"], returned["amount"]) == ("redemption_return", 20)
    assert returned["reason"] == EXPECTED[language]["redemption_return"]
    await audited(client)


@LANGUAGES
async def test_a_conversion_of_minutes(client: Client, language: str | None) -> None:
    await green(client, language)
    minutes = transfer("b1", "system:timebank:minutes", "member:m0:minutes", 60, asset="minutes")
    r = await client.post(f"{C}/transactions", json=minutes)
    assert r.status_code == 201, r.text
    r = await client.post(f"{C}/conversions", json={"id": "cv1", "member": "m0", "minutes": 30})
    assert r.status_code == 201, r.text
    *_, points = await entries(client)
    [*_, spent] = await entries(client, "minutes")
    assert (points["kind"], points["amount"]) == ("conversion", 5)
    assert points["reason"] == spent["reason"] == EXPECTED[language]["conversion"]
    await audited(client)


@LANGUAGES
async def test_a_reversal_names_what_it_undoes(client: Client, language: str | None) -> None:
    await green(client, language)
    await award(client, "a1", "m0", 50)
    r = await client.post(f"{C}/transactions/a1/reverse")
    assert r.status_code == 201, r.text
    assert r.json()["reason"] == EXPECTED[language]["reversal"]
    *_, reversal = await entries(client)
    assert (reversal["kind"], reversal["amount"]) == ("reversal", -50)
    assert reversal["reason"] == EXPECTED[language]["reversal"]
    await audited(client)


async def test_the_language_is_the_communitys_and_fixed_when_it_is_created(
    client: Client,
) -> None:
    """Omitting the language and giving the default are the same request; another
    language for the same id is a different one; only the catalogue's are accepted."""
    await green(client, None)
    same = await client.post(
        "/v1/communities", json={"id": "green", "name": "Green Court", "language": "zh-CN"}
    )
    assert same.status_code == 200 and same.headers["idempotent-replayed"] == "true", same.text
    other = await client.post(
        "/v1/communities", json={"id": "green", "name": "Green Court", "language": "en"}
    )
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"
    r = await client.post("/v1/communities", json={"id": "x", "name": "X", "language": "fr"})
    assert r.status_code == 422, r.text
    assert (await client.get(C)).json()["language"] == "zh-CN"
    await audited(client)
