"""Exports (SPEC section 13): the settlement sheet of offsets, a store's redemptions
and the summary, as CSV (parsed back) and XLSX (opened back with openpyxl)."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from datetime import UTC, datetime, timedelta
from typing import Any

import openpyxl
import pytest

from service.api import exports as api_exports
from service.exports import sheet
from service.exports import store as export_store
from tests.helpers import OFFSETS, C, Client, award, bearer, community

EXPORT = f"{OFFSETS}/export"
REDEMPTIONS = f"{C}/redemptions/export"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
NOW = datetime.now(UTC)
SPAN = {
    "from": (NOW - timedelta(days=1)).isoformat(),
    "to": (NOW + timedelta(days=1)).isoformat(),
}


def offset(oid: str, points: int, member: str = "m0", household: str = "h0", **extra: Any) -> Any:
    body = {"id": oid, "member": member, "household": household, "bill_amount_fen": 100_000}
    return {**body, "points": points, **extra}


async def key(client: Client, **scope: str) -> dict[str, str]:
    r = await client.post("/v1/api-keys", json={"community": "green", **scope})
    assert r.status_code == 201, r.text
    return bearer(r.json()["key"])


async def offsets_made(client: Client) -> None:
    """h0 (acme): b0 applied, b1 held, b2 applied then cancelled, -b3 held then
    cancelled; h1 (other): b4 applied."""
    await community(client, members=2, households=2)
    await award(client, "a0", "m0", 200)
    await award(client, "a1", "m1", 200)
    for body in (
        offset("b0", 10),
        offset("b1", 11, hold=True),
        offset("b2", 12),
        offset("-b3", 13, hold=True),
        offset("b4", 14, "m1", "h1"),
    ):
        r = await client.post(OFFSETS, json=body)
        assert r.status_code == 201, r.text
    for oid in ("b2", "-b3"):
        assert (await client.post(f"{OFFSETS}/{oid}/cancel")).status_code == 200


def parsed_csv(raw: bytes) -> list[list[str]]:
    assert raw.startswith(b"\xef\xbb\xbf"), "a BOM, so that Excel reads UTF-8"
    return list(csv.reader(io.StringIO(raw[3:].decode("utf-8"), newline="")))


def opened_xlsx(raw: bytes, *, values: bool = False) -> list[list[Any]]:
    book = openpyxl.load_workbook(io.BytesIO(raw), data_only=values)
    return [list(row) for row in book.worksheets[0].iter_rows(values_only=True)]


async def test_settlement_csv_has_the_lists_rows_and_totals(client: Client) -> None:
    await offsets_made(client)
    selection = {**SPAN, "property_company": "acme"}
    listed = (await client.get(OFFSETS, params=selection)).json()
    r = await client.get(EXPORT, params=selection)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"].startswith('attachment; filename="settlement-green-')
    rows = parsed_csv(r.content)
    assert rows[0][:3] == ["账单号", "房号", "居民"] and rows[0][7] == "抵扣金额（元）"
    body, totals = rows[1:5], rows[6:]
    # The list's rows, in the list's order (newest first); ids the billing system sent.
    assert [row[0] for row in body] == ["'-b3", "b2", "b1", "b0"]  # guarded: it begins with -
    assert [o["id"] for o in listed["offsets"]] == ["-b3", "b2", "b1", "b0"]
    assert [row[8] for row in body] == ["已撤销", "已撤销", "冻结中", "已抵扣"]
    assert body[3][4:8] == ["100000", "10", "100", "1.00"]
    assert body[3][9].endswith("+08:00") and body[3][10] and not body[3][11]
    assert body[0][11], "a cancelled offset says when"
    assert rows[5] == []
    t = listed["totals"]
    assert totals[0] == ["合计", "笔数", "积分", "金额（分）", "金额（元）"]
    assert totals[1][1:4] == [str(t["applied_count"]), str(t["applied_points"]), "100"]
    assert totals[2][1:] == [str(t["held_count"]), str(t["held_points"]), "110", "1.10"]
    assert (t["applied_points"], t["held_points"]) == (10, 11)


async def test_settlement_xlsx_opens_with_numbers_and_yuan_formulas(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_exports, "_CHUNK", 1024)  # streamed from its file, in chunks
    await offsets_made(client)
    listed = (await client.get(OFFSETS, params=SPAN)).json()  # every company
    r = await client.get(EXPORT, params={**SPAN, "format": "xlsx"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == XLSX
    assert int(r.headers["content-length"]) == len(r.content) > 1024
    assert r.headers["content-disposition"].endswith('.xlsx"')
    rows = opened_xlsx(r.content)
    assert rows[0][0] == "账单号" and len(rows) == 1 + 5 + 1 + 3
    b4 = rows[1]
    assert b4[0] == "b4" and b4[3] == "other"
    assert [b4[4], b4[5], b4[6]] == [100_000, 14, 140]
    assert all(isinstance(v, int) for v in b4[4:7])
    assert b4[7] == "=G2/100"
    assert rows[2][0] == "-b3", "text stays text in XLSX, no apostrophe"
    shown = opened_xlsx(r.content, values=True)
    assert str(shown[1][7]) == "1.4"  # the cached result, exact without recalculation
    t = listed["totals"]
    applied, held = rows[-2], rows[-1]
    assert applied[1:4] == [t["applied_count"], t["applied_points"], t["applied_fen"]]
    assert held[1:4] == [t["held_count"], t["held_points"], t["held_fen"]]
    assert applied[4] == "=D9/100"


async def test_totals_match_the_list_for_every_selection(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export_store, "PAGE_ROWS", 2)  # several pages per sheet
    await offsets_made(client)
    later = {"from": (NOW - timedelta(hours=1)).isoformat(), "to": SPAN["to"]}
    empty = {"from": "2020-01-01T00:00:00+08:00", "to": "2020-02-01T00:00:00+08:00"}
    for selection in (SPAN, later, empty, {**SPAN, "property_company": "other"}):
        listed = (await client.get(OFFSETS, params={**selection, "limit": 500})).json()
        rows = parsed_csv((await client.get(EXPORT, params=selection)).content)
        count = len(listed["offsets"])
        assert [row[0].lstrip("'") for row in rows[1 : 1 + count]] == [
            o["id"] for o in listed["offsets"]
        ]
        t = listed["totals"]
        applied, held = rows[-2], rows[-1]
        assert applied[1:4] == [str(t[f"applied_{k}"]) for k in ("count", "points", "fen")]
        assert held[1:4] == [str(t[f"held_{k}"]) for k in ("count", "points", "fen")]
    rows = parsed_csv((await client.get(EXPORT, params=empty)).content)
    assert len(rows) == 1 + 1 + 3 and rows[-1][1:] == ["0", "0", "0", "0.00"]


async def test_scoping_as_the_list(client: Client) -> None:
    await offsets_made(client)
    acme = await key(client, role="property", property_company="acme")
    s1 = await key(client, role="store", store="s1")
    r = await client.get(EXPORT, params=SPAN, headers=acme)
    assert r.status_code == 200
    assert {row[3] for row in parsed_csv(r.content)[1:5]} == {"acme"}
    r = await client.get(EXPORT, params={**SPAN, "property_company": "other"}, headers=acme)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    assert (await client.get(EXPORT, params=SPAN, headers=s1)).status_code == 403
    assert (await client.get(REDEMPTIONS, params=SPAN, headers=acme)).status_code == 403
    r = await client.get(f"{C}/reports/summary", params={"format": "csv"}, headers=acme)
    assert r.status_code == 403
    r = await client.get(EXPORT, params=SPAN, headers=bearer("not-a-key"))
    assert r.status_code == 401


async def test_bad_parameters_are_422_and_leave_no_files(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    await offsets_made(client)
    before = set(os.listdir(tempfile.gettempdir()))
    year_and_more = {"from": "2025-01-01T00:00:00+08:00", "to": "2026-01-03T00:00:00+08:00"}
    for params in (
        {**SPAN, "format": "pdf"},
        {"from": SPAN["from"]},
        {"to": SPAN["to"]},
        {"from": SPAN["to"], "to": SPAN["from"]},
        {"from": "2026-11-01T00:00:00", "to": SPAN["to"]},  # no offset
        year_and_more,
        {**SPAN, "property_company": "a b"},
    ):
        r = await client.get(EXPORT, params=params)
        assert r.status_code == 422, (params, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "validation_error"
    assert "366 days" in (await client.get(EXPORT, params=year_and_more)).json()["detail"]
    monkeypatch.setattr(sheet, "MAX_ROWS", 3)
    for fmt in ("csv", "xlsx"):
        r = await client.get(EXPORT, params={**SPAN, "format": fmt})
        assert r.status_code == 422 and "more than 3 rows" in r.json()["detail"]
    r = await client.get(f"{C}/reports/summary", params={"format": "xlsx"})
    assert r.status_code == 422
    assert {f for f in os.listdir(tempfile.gettempdir()) if f.startswith("export-")} <= before


async def test_export_is_not_taken_for_an_offset_id(client: Client) -> None:
    """`/offsets/export` is the sheet, not the offset `export`; the offsets'
    own routes still answer around it."""
    await offsets_made(client)
    assert (await client.get(EXPORT)).json()["code"] == "validation_error"
    assert (await client.get(f"{OFFSETS}/b0")).json()["status"] == "applied"
    assert (await client.get(f"{C}/redemptions/export")).json()["code"] == "validation_error"
    assert (await client.get(f"{C}/redemptions/nope")).status_code == 404


async def shop(client: Client, language: str = "zh-CN") -> None:
    """s1 sells an item whose name would be a formula; m0 buys two, returns one;
    s2 sells soap."""
    r = await client.post(
        "/v1/communities", json={"id": "green", "name": "Green", "language": language}
    )
    assert r.status_code == 201, r.text
    r = await client.post(f"{C}/households", json={"id": "h0", "property_company": "acme"})
    assert r.status_code == 201, r.text
    r = await client.post(f"{C}/members", json={"id": "m0", "household": "h0"})
    assert r.status_code == 201
    await award(client, "a0", "m0", 500)
    for store, sku, name in (
        ("s1", "aa", "=HYPERLINK(1)"),
        ("s1", "rice", "大米"),
        ("s2", "soap", "Soap"),
    ):
        item = {"name": name, "points": 10, "stock": 10}
        r = await client.put(f"{C}/stores/{store}/items/{sku}", json=item)
        assert r.status_code == 201, r.text
    for rid, store, items in (
        ("r1", "s1", [{"sku": "aa", "qty": 1}, {"sku": "rice", "qty": 2}]),
        ("r2", "s2", [{"sku": "soap", "qty": 1}]),
    ):
        body = {"id": rid, "store": store, "member": "m0", "items": items}
        assert (await client.post(f"{C}/redemptions", json=body)).status_code == 201
    back = {"id": "ret1", "items": [{"sku": "rice", "qty": 1}]}
    assert (await client.post(f"{C}/redemptions/r1/return", json=back)).status_code == 201


async def test_redemptions_csv_rows_returns_totals_and_guard(client: Client) -> None:
    await shop(client)
    r = await client.get(REDEMPTIONS, params={**SPAN, "store": "s1"})
    assert r.status_code == 200, r.text
    rows = parsed_csv(r.content)
    assert rows[0] == ["类型", "兑换单号", "退货单号", "门店", "居民", "商品", "积分", "时间"]
    assert rows[1][:5] == ["兑换", "r1", "", "s1", "m0"]
    assert rows[1][5] == "'=HYPERLINK(1)×1、大米×2"  # guarded: it begins with =
    assert rows[1][6] == "30"
    assert rows[2][:3] == ["退货", "r1", "ret1"] and rows[2][5:7] == ["大米×1", "-10"]
    assert rows[3] == []
    assert rows[4:] == [
        ["合计", "笔数", "积分"],
        ["兑换", "1", "30"],
        ["退货", "1", "-10"],
        ["净额", "", "20"],
    ]


async def test_redemptions_scoping_and_xlsx(client: Client) -> None:
    await shop(client, language="en")
    s1 = await key(client, role="store", store="s1")
    r = await client.get(REDEMPTIONS, params=SPAN, headers=s1)  # its own store
    rows = parsed_csv(r.content)
    assert rows[0][0] == "kind" and {row[3] for row in rows[1:3]} == {"s1"}
    assert rows[1][0] == "redemption" and rows[1][5] == "1 × =HYPERLINK(1), 2 × 大米"
    r = await client.get(REDEMPTIONS, params={**SPAN, "store": "s2"}, headers=s1)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = await client.get(REDEMPTIONS, params={**SPAN, "format": "xlsx"})  # every store
    assert r.status_code == 200 and r.headers["content-type"] == XLSX
    rows = opened_xlsx(r.content)
    assert [row[1] for row in rows[1:4]] == ["r1", "r2", "r1"]  # oldest first
    assert [row[6] for row in rows[1:4]] == [30, 10, -10]
    assert rows[-1][:3] == ["net", None, 30]


async def test_summary_csv_has_the_json_numbers(client: Client) -> None:
    await offsets_made(client)
    summary = (await client.get(f"{C}/reports/summary")).json()
    r = await client.get(f"{C}/reports/summary", params={"format": "csv"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8", r.text[:300]
    assert r.headers["content-disposition"] == 'attachment; filename="summary-green.csv"'
    rows = parsed_csv(r.content)
    assert rows[0][2:5] == ["资产", "期初余额", "发放"]
    points = next(a for a in summary["assets"] if a["asset"] == "points")
    row = next(row for row in rows[1:] if row[2] == "积分")
    assert row[3:14] == [
        str(points[k])
        for k in (
            "opening_outstanding",
            "issued",
            "deducted",
            "offset",
            "redeemed",
            "expired",
            "converted",
            "adjusted",
            "transferred",
            "outstanding",
            "held_now",
        )
    ]
    assert row[15] == str(points["liability"]["fen"])


async def test_ranges_at_the_ends_of_time_are_refused_not_crashed(client: Client) -> None:
    await community(client)
    for path in ("offsets/export", "redemptions/export"):
        for start, end in (
            ("9999-12-31T23:59:59Z", "9999-12-31T23:59:59Z"),
            ("0001-01-01T00:00:00Z", "0001-01-02T00:00:00Z"),
        ):
            r = await client.get(f"{C}/{path}", params={"from": start, "to": end})
            assert r.status_code == 422, r.text
