"""The summary's liability and `expiring_next_90_days` (SPEC section 9), through the API.

Both are of now, whatever the report's window: what members who have not moved out
could redeem (points above the baseline and not held, valued at the active rule set's
`fen_per_point`; minutes not held), and what of their open lots, less what is held,
expires in (now, now + 90 days].
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.api.test_rules import YAML
from tests.helpers import ACME_OFFSETS, C, Client, award, balance, community, transfer

TIMEBANK = "system:timebank:minutes"


async def summary(client: Client, **params: str) -> dict[str, dict[str, Any]]:
    r = await client.get(f"{C}/reports/summary", params=params)
    assert r.status_code == 200, r.text
    return {a["asset"]: a for a in r.json()["assets"]}


async def post(client: Client, body: dict[str, Any], status: int = 201) -> None:
    r = await client.post(f"{C}/transactions", json=body)
    assert r.status_code == status, r.text


async def publish(client: Client, text: str) -> None:
    r = await client.put(f"{C}/rules", content=text.encode(), headers=YAML)
    assert r.status_code == 201, r.text


async def audit_passes(client: Client) -> None:
    r = await client.get(f"{C}/audit/verify")
    assert r.status_code == 200 and r.json()["ok"], r.text


async def test_liability_is_what_members_could_redeem_at_fen_per_point(client: Client) -> None:
    await community(client, members=3)
    await award(client, "a0", "m0", 50)
    await award(client, "a1", "m1", 30)
    await post(client, transfer("h1", "member:m1:points", ACME_OFFSETS, 10, pending={}))
    await post(client, transfer("t0", TIMEBANK, "member:m0:minutes", 15, asset="minutes"))
    shown = await summary(client)
    assert shown["points"]["liability"] == {"points": 50 + 20, "fen": 700}
    assert shown["minutes"]["liability"] == {"minutes": 15}
    # The window does not move it: the liability is of now.
    assert (await summary(client, to="2026-01-01T00:00:00Z"))["points"]["liability"]["points"] == 70

    await publish(client, "baseline: 120\nfen_per_point: 5\n")
    assert (await summary(client))["points"]["liability"] == {"points": 30, "fen": 150}

    # m0 moves out: its 30 above the baseline and its minutes go, and it no longer
    # counts, even once a lower baseline would leave some of its 120 redeemable.
    assert (await client.post(f"{C}/transactions/h1/void")).status_code == 200
    r = await client.post(f"{C}/members/m0/close", json={})
    assert r.status_code == 200, r.text
    await publish(client, "baseline: 50\nfen_per_point: 5\n")
    shown = await summary(client)
    assert shown["points"]["liability"] == {"points": 80 + 50, "fen": 650}
    assert shown["minutes"]["liability"] == {"minutes": 0}
    await audit_passes(client)


async def test_expiring_next_90_days_counts_open_lots_less_what_is_held(client: Client) -> None:
    """Lots given their expiry by an operator's credit (`lot.expires_at`): those within
    90 days count, less what a pending debit holds of them; later ones, past ones
    (they go at the next expiry run) and those that never expire do not."""
    await community(client, members=2)
    now = datetime.now(UTC).replace(microsecond=0)

    async def credit(tx: str, member: str, amount: int, expires: timedelta | None, **kw: Any):
        lot = {} if expires is None else {"expires_at": (now + expires).isoformat()}
        lot["earned_at"] = (now - timedelta(days=2)).isoformat()
        source = TIMEBANK if kw.get("asset") == "minutes" else "system:issuance:points"
        address = f"member:{member}:{kw.get('asset', 'points')}"
        await post(client, transfer(tx, source, address, amount, lot=lot, **kw))

    await credit("c1", "m0", 30, timedelta(days=10))
    await credit("c2", "m0", 7, timedelta(days=89))
    await credit("c3", "m0", 40, timedelta(days=100))
    await credit("c4", "m1", 9, timedelta(hours=-1))
    await credit("c5", "m1", 5, None)
    await credit("c6", "m0", 12, timedelta(days=30), asset="minutes")
    await post(client, transfer("h1", "member:m0:points", ACME_OFFSETS, 5, pending={}))
    shown = await summary(client)
    assert shown["points"]["expiring_next_90_days"] == 25 + 7
    assert shown["minutes"]["expiring_next_90_days"] == 12
    assert [
        (datetime.fromisoformat(e["expires_at"]), e["amount"])
        for e in (await balance(client, "m0"))["points"]["expiring"]
    ] == [
        (now + timedelta(days=10), 25),
        (now + timedelta(days=89), 7),
        (now + timedelta(days=100), 40),
    ]
    assert (await client.post(f"{C}/transactions/h1/post")).status_code == 200
    assert (await summary(client))["points"]["expiring_next_90_days"] == 25 + 7
    await post(client, transfer("s1", "member:m0:points", "store:s1:redemptions", 27))
    assert (await summary(client))["points"]["expiring_next_90_days"] == 5
    await audit_passes(client)
