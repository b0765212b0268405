"""Reports: the summary reconciles with the ledger's entries; the leaderboard and opt-out."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import asyncpg

from tests.helpers import C, Client, award, community, transfer

_FLOWS = (
    ("system:issuance:", "issued", 1),
    ("system:opening:", "issued", 1),
    ("system:timebank:", "issued", 1),
    ("system:penalties:", "deducted", -1),
    ("property:", "offset", -1),
    ("store:", "redeemed", -1),
    ("system:expired:", "expired", -1),
)


def _flow(counterparty: str) -> tuple[str, int]:
    for prefix, flow, sign in _FLOWS:
        if counterparty.startswith(prefix):
            return flow, sign
    return "adjusted", 1


async def _recomputed(dsn: str) -> dict[str, dict[str, int]]:
    """The summary's numbers from the raw postings, in Python. (Every join includes
    `community_id`, so that on Citus each one stays inside a community's shards.)"""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """SELECT s.tx_id, sa.address AS src, sa.member_id IS NOT NULL AS src_member,
                      da.address AS dst, da.member_id IS NOT NULL AS dst_member,
                      sa.asset, d.amount
                 FROM entries s
                 JOIN entries d
                   ON d.community_id = s.community_id AND d.tx_id = s.tx_id
                  AND d.leg = s.leg + 1
                 JOIN accounts sa ON sa.community_id = s.community_id AND sa.id = s.account_id
                 JOIN accounts da ON da.community_id = d.community_id AND da.id = d.account_id
                WHERE s.leg % 2 = 0"""
        )
    finally:
        await conn.close()
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        asset = out[r["asset"]]
        if r["src_member"]:
            asset["outstanding"] -= r["amount"]
        if r["dst_member"]:
            asset["outstanding"] += r["amount"]
        if r["src_member"] == r["dst_member"]:
            continue
        member_gets = r["amount"] if r["dst_member"] else -r["amount"]
        flow, sign = _flow(r["src"] if r["dst_member"] else r["dst"])
        asset[flow] += sign * member_gets
    return out


async def _random_mix(client: Client, rng: random.Random) -> None:
    await client.put(f"{C}/stores/s1/items/soap", json={"name": "Soap", "points": 3, "stock": 50})
    for i in range(60):
        m = f"m{rng.randrange(4)}"
        op = rng.choice(
            ["award", "penalty", "offset", "hold", "redeem", "return", "cancel", "xfer"]
        )
        if op == "award":
            await award(client, f"a{i}", m, rng.randint(1, 40))
        elif op == "penalty":
            body = transfer(
                f"p{i}", f"member:{m}:points", "system:penalties:points", rng.randint(1, 5)
            )
            await client.post(f"{C}/transactions", json=body)
        elif op in ("offset", "hold"):
            household = f"h{int(m[1:]) % 2}"
            body = {
                "id": f"o{i}",
                "member": m,
                "household": household,
                "bill_amount_fen": 10_000,
                "points": rng.randint(1, 10),
                "hold": op == "hold",
            }
            await client.post(f"{C}/offsets", json=body)
        elif op == "redeem":
            body = {
                "id": f"r{i}",
                "store": "s1",
                "member": m,
                "items": [{"sku": "soap", "qty": rng.randint(1, 3)}],
            }
            await client.post(f"{C}/redemptions", json=body)
        elif op == "return":
            await client.post(f"{C}/redemptions/r{rng.randrange(i + 1)}/return")
        elif op == "cancel":
            await client.post(f"{C}/offsets/o{rng.randrange(i + 1)}/cancel")
        else:
            body = transfer(f"x{i}", f"member:{m}:points", "member:m0:points", rng.randint(1, 5))
            await client.post(f"{C}/transactions", json=body)


async def test_summary_reconciles_with_entries_after_a_random_mix(client: Client, dsn: str) -> None:
    await community(client, members=4, households=2)
    await _random_mix(client, random.Random(5))
    r = await client.get(f"{C}/reports/summary")
    assert r.status_code == 200, r.text
    summary = {a["asset"]: a for a in r.json()["assets"]}
    expected = await _recomputed(dsn)
    for asset in ("points", "minutes"):
        got = summary[asset]
        for key in (
            "issued",
            "deducted",
            "offset",
            "redeemed",
            "expired",
            "adjusted",
            "outstanding",
        ):
            assert got[key] == expected[asset][key], (asset, key, got)
        assert got["opening_outstanding"] == 0 and got["transferred"] == 0
        assert got["outstanding"] == (
            got["opening_outstanding"]
            + got["issued"]
            + got["adjusted"]
            + got["converted"]
            - got["deducted"]
            - got["offset"]
            - got["redeemed"]
            - got["expired"]
        )
    assert summary["points"]["offset"] > 0 and summary["points"]["redeemed"] > 0


async def test_summary_windows_split_exactly(client: Client) -> None:
    await community(client, members=2)
    await award(client, "a1", "m0", 30)
    middle = (await client.get(f"{C}/transactions/a1")).json()["finalized_at"]
    await client.post(
        f"{C}/transactions", json=transfer("s1", "member:m0:points", "store:s1:redemptions", 7)
    )
    before = (await client.get(f"{C}/reports/summary", params={"to": middle})).json()["assets"][0]
    after = (await client.get(f"{C}/reports/summary", params={"from": middle})).json()["assets"][0]
    whole = (await client.get(f"{C}/reports/summary")).json()["assets"][0]
    assert before["outstanding"] == after["opening_outstanding"] == 200
    assert after["issued"] == 30 and after["redeemed"] == 7 and after["outstanding"] == 223
    assert whole["issued"] == before["issued"] + after["issued"]
    bad = await client.get(f"{C}/reports/summary", params={"from": middle, "to": middle})
    assert bad.status_code == 422


async def test_leaderboard_ranks_earners_and_respects_opt_out(client: Client) -> None:
    await community(client, members=3)
    doc: dict[str, Any] = {
        "rules": [{"id": "help", "on": "helped", "award": "event.points", "reason": "helped"}]
    }
    assert (await client.put(f"{C}/rules", json=doc)).status_code in (200, 201)
    for i, (m, points) in enumerate([("m0", 5), ("m1", 9), ("m2", 7), ("m0", 3)]):
        body = {
            "id": f"e{i}",
            "type": "helped",
            "member": m,
            "occurred_at": "2026-11-10T10:00:00+08:00",
            "attributes": {"points": points},
        }
        r = await client.post(f"{C}/events", json=body)
        assert r.status_code == 201, r.text
    board = (await client.get(f"{C}/reports/leaderboard", params={"period": "2026-11"})).json()
    assert [(x["rank"], x["member"], x["earned"]) for x in board["leaders"]] == [
        (1, "m1", 9),
        (2, "m0", 8),
        (3, "m2", 7),
    ]
    r = await client.patch(f"{C}/members/m1", json={"leaderboard_opt_out": True})
    assert r.status_code == 200 and r.json() == {"member": "m1", "leaderboard_opt_out": True}
    board = (
        await client.get(f"{C}/reports/leaderboard", params={"period": "2026-11", "limit": 1})
    ).json()
    assert [x["member"] for x in board["leaders"]] == ["m0"]
    assert (
        await client.get(f"{C}/reports/leaderboard", params={"period": "2026-13"})
    ).status_code == 422
    assert (await client.get(f"{C}/reports/leaderboard", params={"period": "2026-10"})).json()[
        "leaders"
    ] == []
    assert (
        await client.patch(f"{C}/members/nobody", json={"leaderboard_opt_out": True})
    ).status_code == 404
    assert (
        await client.patch(f"{C}/members/m0", json={"leaderboard_opt_out": 1})
    ).status_code == 422
