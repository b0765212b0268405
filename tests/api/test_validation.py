"""Bad input is a clear 4xx problem with a stable code, and changes nothing."""

from __future__ import annotations

import pytest

from tests.helpers import C, Client, balance, community, transfer

BAD_AMOUNTS = [0, -1, 1.5, 1.0, 10**12 + 1, "5", True, None]


@pytest.mark.parametrize("amount", BAD_AMOUNTS)
async def test_amount_must_be_integer_in_range(client: Client, amount: object) -> None:
    await community(client)
    body = transfer("t1", "system:issuance:points", "member:m0:points", 1)
    body["postings"][0]["amount"] = amount
    r = await client.post(f"{C}/transactions", json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "validation_error"
    assert (await balance(client, "m0"))["points"]["score"] == 100


@pytest.mark.parametrize(
    ("source", "destination", "asset"),
    [
        ("system:issuance:points", "member:m0:points", "stars"),
        ("system:issuance:points", "member:m0:minutes", "points"),
        ("system:nowhere:points", "member:m0:points", "points"),
        ("bank:x:points", "member:m0:points", "points"),
        ("system", "member:m0:points", "points"),
        ("a:b:c:d:e:f:g", "member:m0:points", "points"),
        ("system:issuance:points", "member:m 0:points", "points"),
        ("system:issuance:points", "member:" + "x" * 200 + ":points", "points"),
        ("member:m0:points", "member:m0:points", "points"),
    ],
)
async def test_bad_postings_are_422(
    client: Client, source: str, destination: str, asset: str
) -> None:
    await community(client)
    body = {
        "id": "t1",
        "postings": [{"source": source, "destination": destination, "asset": asset, "amount": 5}],
    }
    r = await client.post(f"{C}/transactions", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "validation_error"


@pytest.mark.parametrize(
    "body",
    [
        {"id": "bad id", "postings": []},
        {"id": "t1", "postings": []},
        {"id": "t1"},
        {"id": "t1", "postings": [], "surprise": 1},
        {"id": "x" * 65, "postings": []},
        [],
        "text",
    ],
)
async def test_malformed_transaction_bodies(client: Client, body: object) -> None:
    await community(client)
    r = await client.post(f"{C}/transactions", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "validation_error"


async def test_invalid_json_and_oversized_body(client: Client) -> None:
    await community(client)
    r = await client.post(f"{C}/transactions", content=b"{not json")
    assert r.status_code == 422 and r.json()["code"] == "validation_error"
    huge = b'{"id":"t1","memo":"' + b"x" * 2_000_000 + b'"}'
    r = await client.post(f"{C}/transactions", content=huge)
    assert r.status_code == 413
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_unknown_member_account_is_404_and_writes_nothing(client: Client) -> None:
    await community(client)
    r = await client.post(
        f"{C}/transactions",
        json=transfer("t1", "system:issuance:points", "member:nobody:points", 5),
    )
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    assert (await client.get(f"{C}/transactions/t1")).status_code == 404


async def test_nul_character_is_refused_not_500(client: Client) -> None:
    await community(client)
    body = transfer("t1", "system:issuance:points", "member:m0:points", 5, memo="a\u0000b")
    r = await client.post(f"{C}/transactions", json=body)
    assert r.status_code == 422, r.text


async def test_unknown_community_and_bad_ids(client: Client) -> None:
    r = await client.get("/v1/communities/nope")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = await client.get("/v1/communities/Bad_Id")
    assert r.status_code == 422
    r = await client.post("/v1/communities", json={"id": "x", "name": "X", "timezone": "Mars/Base"})
    assert r.status_code == 422
    r = await client.post(
        "/v1/communities/nope/transactions",
        json=transfer("t1", "system:issuance:points", "system:penalties:points", 5),
    )
    assert r.status_code == 404


async def test_query_parameters_are_validated(client: Client) -> None:
    await community(client)
    for query in ("limit=0", "limit=501", "limit=x", "cursor=%%%", "from=yesterday", "asset=gold"):
        r = await client.get(f"{C}/members/m0/statement?{query}")
        assert r.status_code == 422, (query, r.text)
    r = await client.get(f"{C}/accounts/system:issuance:points?as_of=notatime")
    assert r.status_code == 422


async def test_setup_is_idempotent(client: Client) -> None:
    await community(client)
    r = await client.post("/v1/communities", json={"id": "green", "name": "Green Court"})
    assert r.status_code == 200 and r.headers["idempotent-replayed"] == "true"
    r = await client.post("/v1/communities", json={"id": "green", "name": "Other"})
    assert r.status_code == 409 and r.json()["code"] == "idempotency_conflict"
    r = await client.post(f"{C}/members", json={"id": "m0", "household": "h0"})
    assert r.status_code == 200
    r = await client.post(f"{C}/members", json={"id": "m0", "household": "h0", "name": "Z"})
    assert r.status_code == 409
    r = await client.post(f"{C}/members", json={"id": "m9", "household": "nope"})
    assert r.status_code == 404
    assert (await balance(client, "m0"))["points"]["score"] == 100


async def test_a_method_the_path_lacks_is_405_naming_the_allowed_ones(client: Client) -> None:
    """Found by the OpenAPI fuzz test: the problem document replaced Litestar's 405
    response and dropped its `Allow` header, which RFC 9110 requires."""
    await community(client)
    for method, path, allowed in (
        ("DELETE", "/v1/communities", "POST"),
        ("PATCH", f"{C}/transactions", "POST"),
        ("PUT", f"{C}/members/m0/balance", "GET"),
    ):
        r = await client.request(method, path)
        assert r.status_code == 405, (method, path, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "method_not_allowed"
        assert allowed in r.headers["allow"].split(", "), (path, r.headers.get("allow"))


TIMESTAMP_QUERIES = [
    ("GET", f"{C}/accounts/member:m0:points", "as_of"),
    ("GET", f"{C}/members/m0/statement", "from"),
    ("GET", f"{C}/members/m0/statement", "to"),
    ("GET", f"{C}/offsets", "from"),
    ("GET", f"{C}/offsets", "to"),
    ("GET", f"{C}/reports/summary", "from"),
    ("GET", f"{C}/reports/summary", "to"),
]


@pytest.mark.parametrize(("method", "path", "name"), TIMESTAMP_QUERIES)
async def test_timestamp_queries_are_rfc3339_with_an_offset(
    client: Client, method: str, path: str, name: str
) -> None:
    """Found by the OpenAPI fuzz test: Litestar read `0` as Unix time and a time
    without an offset as UTC (SPEC: timestamps are RFC 3339 with an offset)."""
    await community(client)
    for bad in ("0", "-5", "1.5", "2026-01-01T00:00:00", "2026-01-01", "yesterday"):
        r = await client.request(method, path, params={name: bad})
        assert r.status_code == 422, (name, bad, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "validation_error"
        assert name in r.json()["detail"]
    for good in ("2026-01-01T00:00:00Z", "2026-01-01T08:00:00+08:00"):
        r = await client.request(method, path, params={name: good})
        assert r.status_code == 200, (name, good, r.text)


async def test_a_rule_set_start_without_an_offset_is_refused(client: Client) -> None:
    await community(client)
    r = await client.put(
        f"{C}/rules", params={"effective_from": "2027-01-01T00:00:00"}, json={"baseline": 90}
    )
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "validation_error"
    assert [v["version"] for v in (await client.get(f"{C}/rules/versions")).json()] == []
    r = await client.put(
        f"{C}/rules", params={"effective_from": "2027-01-01T00:00:00+08:00"}, json={"baseline": 90}
    )
    assert r.status_code == 201, r.text
    assert r.json()["effective_from"] == "2026-12-31T16:00:00Z"
