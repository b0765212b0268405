"""transactions:batch: one request, a result per item; `atomic` for all or nothing."""

from __future__ import annotations

from tests.helpers import BATCH, C, Client, award, balance, community, transfer


async def test_mixed_batch_gives_a_result_per_item(client: Client) -> None:
    await community(client)
    await award(client, "a1", "m0", 10)
    items = [
        transfer("b1", "system:issuance:points", "member:m1:points", 5),
        transfer("b2", "member:m0:points", "store:s1:redemptions", 50),  # over redeemable
        transfer("b3", "member:m0:points", "store:s1:redemptions", 4),
        {
            "id": "b4",
            "postings": [{"source": "x", "destination": "y", "asset": "points", "amount": 1.5}],
        },
        transfer("b5", "system:issuance:points", "member:ghost:points", 5),
        transfer("a1", "system:issuance:points", "member:m0:points", 10),  # replay
        transfer("a1", "system:issuance:points", "member:m0:points", 11),  # conflict
        transfer("b1", "system:issuance:points", "member:m1:points", 5),  # replay within batch
    ]
    r = await client.post(BATCH, json={"transactions": items})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == [201, 409, 201, 422, 404, 200, 409, 200]
    assert [x["problem"]["code"] for x in results if x["problem"]] == [
        "insufficient_points",
        "validation_error",
        "not_found",
        "idempotency_conflict",
    ]
    assert results[0]["transaction"]["id"] == "b1"
    assert results[7]["transaction"] == results[0]["transaction"]
    assert (await balance(client, "m0"))["points"]["score"] == 106
    assert (await balance(client, "m1"))["points"]["score"] == 105


async def test_atomic_batch_is_all_or_nothing(client: Client) -> None:
    await community(client)
    await award(client, "a1", "m0", 10)
    items = [
        transfer("b1", "system:issuance:points", "member:m1:points", 5),
        transfer("b2", "member:m0:points", "store:s1:redemptions", 6),
        transfer("b3", "member:m0:points", "store:s1:redemptions", 6),  # 12 > 10 redeemable
    ]
    r = await client.post(BATCH, json={"transactions": items, "atomic": True})
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "insufficient_points" and r.json()["index"] == 2
    assert (await balance(client, "m1"))["points"]["score"] == 100
    assert (await balance(client, "m0"))["points"]["score"] == 110
    assert (await client.get(f"{C}/transactions/b1")).status_code == 404
    r = await client.post(BATCH, json={"transactions": items[:2], "atomic": True})
    assert [x["status"] for x in r.json()["results"]] == [201, 201]
    assert (await balance(client, "m0"))["points"]["score"] == 104


async def test_atomic_batch_refuses_a_malformed_item_whole(client: Client) -> None:
    await community(client)
    items = [transfer("b1", "system:issuance:points", "member:m1:points", 5), {"id": "b2"}]
    r = await client.post(BATCH, json={"transactions": items, "atomic": True})
    assert r.status_code == 422 and r.json()["index"] == 1
    assert (await balance(client, "m1"))["points"]["score"] == 100


async def test_batch_limits(client: Client) -> None:
    await community(client)
    r = await client.post(BATCH, json={"transactions": []})
    assert r.status_code == 422
    item = transfer("x", "system:issuance:points", "member:m1:points", 1)
    r = await client.post(BATCH, json={"transactions": [item] * 1001})
    assert r.status_code == 422


async def test_thousand_transfers_in_one_request(client: Client) -> None:
    await community(client, members=20)
    items = [
        transfer(f"b{i}", "system:issuance:points", f"member:m{i % 20}:points", 1)
        for i in range(1000)
    ]
    r = await client.post(BATCH, json={"transactions": items})
    assert r.status_code == 200
    assert {x["status"] for x in r.json()["results"]} == {201}
    assert (await balance(client, "m7"))["points"]["score"] == 150
