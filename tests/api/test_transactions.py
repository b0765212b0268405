"""Transactions through the HTTP API: posting, pending, idempotency, reversal."""

from __future__ import annotations

from tests.helpers import C, Client, award, balance, community, transfer


async def test_transfer_moves_points_and_statement_explains(client: Client) -> None:
    await community(client)
    await award(client, "a1", "m0", 30)
    r = await client.post(
        f"{C}/transactions",
        json=transfer("t1", "member:m0:points", "store:s1:redemptions", 10, memo="soap"),
    )
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "posted"
    assert await balance(client, "m0") == {
        "points": {"score": 120, "held": 0, "baseline": 100, "redeemable": 20, "expiring": []},
        "minutes": {"balance": 0, "held": 0, "expiring": []},
    }
    page = (await client.get(f"{C}/members/m0/statement")).json()
    assert [(e["transaction_id"], e["amount"], e["balance_after"]) for e in page["entries"]] == [
        ("t1", -10, 120),
        ("a1", 30, 130),
        ("m0:opening", 100, 100),
    ]
    assert page["entries"][0]["counterparty"] == "store:s1:redemptions"
    assert page["entries"][0]["memo"] == "soap"


async def test_overspend_is_refused_whole(client: Client) -> None:
    await community(client)
    await award(client, "a1", "m0", 5)
    body = {
        "id": "t1",
        "postings": [
            {
                "source": "member:m0:points",
                "destination": "store:s1:redemptions",
                "asset": "points",
                "amount": 3,
            },
            {
                "source": "member:m0:points",
                "destination": "store:s2:redemptions",
                "asset": "points",
                "amount": 3,
            },
        ],
    }
    r = await client.post(f"{C}/transactions", json=body)
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "insufficient_points"
    assert (await balance(client, "m0"))["points"]["score"] == 105
    assert (await client.get(f"{C}/transactions/t1")).status_code == 404


async def test_replay_returns_original_and_conflict_is_409(client: Client) -> None:
    await community(client)
    await award(client, "a1", "m0", 50)
    body = transfer("t1", "member:m0:points", "store:s1:redemptions", 10)
    first = await client.post(f"{C}/transactions", json=body)
    again = await client.post(f"{C}/transactions", json=body)
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    other = await client.post(f"{C}/transactions", json={**body, "memo": "different"})
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_conflict"
    assert (await balance(client, "m0"))["points"]["score"] == 140


async def test_pending_post_partial_then_void_refused(client: Client) -> None:
    await community(client)
    await award(client, "a1", "m0", 50)
    body = transfer("h1", "member:m0:points", "property:acme:offsets", 40, pending={"ttl_s": 60})
    r = await client.post(f"{C}/transactions", json=body)
    assert r.status_code == 201 and r.json()["status"] == "pending"
    assert (await balance(client, "m0"))["points"] == {
        "score": 150,
        "held": 40,
        "baseline": 100,
        "redeemable": 10,
        "expiring": [],
    }
    r = await client.post(f"{C}/transactions/h1/post", json={"amount": 25})
    assert r.status_code == 200 and r.json()["status"] == "posted"
    assert r.json()["postings"][0]["amount"] == 25
    assert (await balance(client, "m0"))["points"] == {
        "score": 125,
        "held": 0,
        "baseline": 100,
        "redeemable": 25,
        "expiring": [],
    }
    r = await client.post(f"{C}/transactions/h1/void")
    assert r.status_code == 409 and r.json()["code"] == "invalid_state"
    replay = await client.post(f"{C}/transactions/h1/post", json={"amount": 25})
    assert replay.status_code == 200 and replay.headers["idempotent-replayed"] == "true"


async def test_void_releases_hold(client: Client) -> None:
    await community(client)
    await award(client, "a1", "m0", 50)
    body = transfer("h1", "member:m0:points", "property:acme:offsets", 40, pending={})
    assert (await client.post(f"{C}/transactions", json=body)).status_code == 201
    r = await client.post(f"{C}/transactions/h1/void")
    assert r.status_code == 200 and r.json()["status"] == "voided"
    assert (await balance(client, "m0"))["points"]["held"] == 0
    r = await client.post(f"{C}/transactions/h1/post")
    assert r.status_code == 409 and r.json()["code"] == "invalid_state"


async def test_reverse_once_and_may_go_below_baseline(client: Client) -> None:
    await community(client)
    await award(client, "a1", "m0", 30)
    spend = transfer("t1", "member:m0:points", "store:s1:redemptions", 30)
    assert (await client.post(f"{C}/transactions", json=spend)).status_code == 201
    # Reversing the award takes the member below the baseline, not below the floor.
    r = await client.post(f"{C}/transactions/a1/reverse")
    assert r.status_code == 201, r.text
    assert r.json()["reversal_of"] == "a1" and r.json()["kind"] == "reversal"
    assert (await balance(client, "m0"))["points"]["score"] == 70
    again = await client.post(f"{C}/transactions/a1/reverse")
    assert again.status_code == 200 and again.json()["id"] == r.json()["id"]
    got = (await client.get(f"{C}/transactions/a1")).json()
    assert got["reversed_by"] == r.json()["id"]


async def test_account_entries_page_through_and_unknown_accounts(client: Client) -> None:
    await community(client)
    for i in range(5):
        await award(client, f"a{i}", "m0", i + 1)
    url = f"{C}/accounts/member:m0:points/entries"
    first = (await client.get(url, params={"limit": 4})).json()
    assert [e["transaction_id"] for e in first["entries"]] == ["a4", "a3", "a2", "a1"]
    assert first["next_cursor"]
    rest = (await client.get(url, params={"limit": 4, "cursor": first["next_cursor"]})).json()
    assert [e["transaction_id"] for e in rest["entries"]] == ["a0", "m0:opening"]
    assert rest["next_cursor"] is None
    # A system account's side of the same postings.
    issued = (await client.get(f"{C}/accounts/system:issuance:points/entries")).json()
    assert [e["amount"] for e in issued["entries"]][:2] == [-5, -4]
    # An account with no entries is an empty page; no account at all is a 404.
    empty = await client.get(f"{C}/accounts/member:m1:minutes/entries")
    assert empty.status_code == 200 and empty.json()["entries"] == []
    missing = await client.get(f"{C}/accounts/store:nowhere:redemptions/entries")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    bad = await client.get(f"{C}/accounts/not-an-address/entries")
    assert bad.status_code == 422 and bad.json()["code"] == "validation_error"


async def test_statement_of_an_unknown_member_is_404_and_an_empty_one_is_a_page(
    client: Client,
) -> None:
    """The statement reads the member's account directly (no separate member lookup):
    a member without minutes entries still gets an empty page, a member who does not
    exist a 404, whichever asset is asked for."""
    await community(client)
    empty = await client.get(f"{C}/members/m1/statement", params={"asset": "minutes"})
    assert empty.status_code == 200 and empty.json()["entries"] == []
    for asset in ("points", "minutes"):
        r = await client.get(f"{C}/members/nobody/statement", params={"asset": asset})
        assert r.status_code == 404 and r.json()["code"] == "not_found", r.text
        assert "member:nobody:" + asset in r.json()["detail"]
    balance_of_nobody = await client.get(f"{C}/members/nobody/balance")
    assert balance_of_nobody.status_code == 404
