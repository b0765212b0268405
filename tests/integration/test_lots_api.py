"""A member's lots and the balance's `expiring` through the HTTP API (SPEC section 9).

Two kinds of test. The first write through the API and read back the lots the write
engine made: an opening credit's lot never expires, a rule's award expires by the
rule set's policy, a spend takes the soonest-expiring lots first. The others show an
account lots given row by row (`shown_lots`), to pin down the read paths (order,
keyset pages, what counts as expiring); the engine's own lots are put back before
the test ends, so the audit checks what the engine wrote.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.api.test_rules import YAML, event
from tests.helpers import STORE, C, Client, award, balance, bearer, community, transfer

RULES = """\
baseline: 100
expiry:
  points: year_end_plus_one
rules:
  - id: help
    on: helped
    award: event.points
    reason: 帮助邻居
"""
NOW = datetime.now(UTC).replace(microsecond=0)
LOT_FIELDS = ("id", "transaction_id", "earned_at", "amount", "remaining", "expires_at")


@dataclass(frozen=True)
class Lot:
    """A lot to show: the transaction (client id) it came from, and its numbers."""

    tx: str
    earned_at: datetime
    expires_at: datetime | None
    amount: int
    remaining: int
    held: int = 0


@asynccontextmanager
async def shown_lots(dsn: str, address: str, lots: Sequence[Lot]) -> AsyncIterator[list[int]]:
    """The account's lots replaced by `lots` (their ids, in the order given) while the
    block runs; the engine's own rows, ids and all, put back afterwards."""
    conn = await asyncpg.connect(dsn)
    account = await conn.fetchval(
        "SELECT id FROM accounts WHERE community_id = 'green' AND address = $1", address
    )
    try:
        async with conn.transaction():
            saved = await conn.fetch(
                "DELETE FROM lots WHERE community_id = 'green' AND account_id = $1 RETURNING *",
                account,
            )
            ids = [await _insert(conn, account, lot) for lot in lots]
        yield ids
    finally:
        async with conn.transaction():
            await conn.execute(
                "DELETE FROM lots WHERE community_id = 'green' AND account_id = $1", account
            )
            if saved:
                columns = list(saved[0].keys())
                placeholders = ", ".join(f"${i + 1}" for i in range(len(columns)))
                await conn.executemany(
                    f"INSERT INTO lots ({', '.join(columns)}) VALUES ({placeholders})",
                    [tuple(row.values()) for row in saved],
                )
        await conn.close()


async def _insert(conn: asyncpg.Connection, account: int, lot: Lot) -> int:
    ident: int = await conn.fetchval(
        """INSERT INTO lots (community_id, account_id, transaction_id, earned_at, expires_at,
                             amount, remaining, held)
           SELECT 'green', $1, t.id, $3, $4, $5, $6, $7
             FROM transactions t WHERE t.community_id = 'green' AND t.client_id = $2
           RETURNING id""",
        account,
        lot.tx,
        lot.earned_at,
        lot.expires_at,
        lot.amount,
        lot.remaining,
        lot.held,
    )
    assert ident is not None, f"no transaction {lot.tx}"
    return ident


async def lots_of(client: Client, member: str = "m0", **params: Any) -> dict[str, Any]:
    r = await client.get(f"{C}/members/{member}/lots", params=params)
    assert r.status_code == 200, r.text
    page: dict[str, Any] = r.json()
    return page


def at(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def brief(lot: dict[str, Any]) -> tuple[Any, ...]:
    """A lot as (transaction_id, earned_at, amount, remaining, expires_at), times parsed."""
    assert set(lot) == set(LOT_FIELDS), lot
    return (
        lot["transaction_id"],
        at(lot["earned_at"]),
        lot["amount"],
        lot["remaining"],
        at(lot["expires_at"]),
    )


def expiring(body: dict[str, Any], asset: str) -> list[tuple[datetime | None, int]]:
    return [(at(e["expires_at"]), e["amount"]) for e in body[asset]["expiring"]]


async def publish(client: Client, text: str = RULES) -> None:
    params = {"effective_from": "2025-01-01T00:00:00+08:00"}
    r = await client.put(f"{C}/rules", params=params, content=text.encode(), headers=YAML)
    assert r.status_code == 201, r.text


async def helped(client: Client, ident: str, occurred_at: str, points: int) -> None:
    r = await client.post(f"{C}/events", json=event(ident, "helped", at=occurred_at, points=points))
    assert r.status_code == 201, r.text


async def created_at(client: Client, tx_id: str) -> datetime:
    r = await client.get(f"{C}/transactions/{tx_id}")
    assert r.status_code == 200, r.text
    return datetime.fromisoformat(r.json()["created_at"])


async def audit_passes(client: Client) -> None:
    r = await client.get(f"{C}/audit/verify")
    assert r.status_code == 200 and r.json()["ok"], r.text


# What the write engine makes (SPEC section 9).


async def test_the_opening_credit_is_a_lot_that_never_expires(client: Client) -> None:
    await community(client, members=1)
    page = await lots_of(client)
    opened = await created_at(client, "m0:opening")
    assert [brief(lot) for lot in page["lots"]] == [("m0:opening", opened, 100, 100, None)]
    assert page["next_cursor"] is None
    assert (await lots_of(client, asset="minutes", status="all")) == {
        "lots": [],
        "next_cursor": None,
    }
    shown = await balance(client, "m0")
    assert shown["points"]["expiring"] == [] and shown["minutes"]["expiring"] == []
    await audit_passes(client)


async def test_a_rule_award_expires_by_the_rule_sets_policy(client: Client) -> None:
    """year_end_plus_one: earned in 2026 (Shanghai), it expires as 2028 begins there;
    `earned_at` is the event's `occurred_at`."""
    await community(client, members=1)
    await publish(client)
    await helped(client, "e1", "2026-06-01T10:00:00+08:00", 20)
    page = await lots_of(client)
    opened = await created_at(client, "m0:opening")
    assert [brief(lot) for lot in page["lots"]] == [
        (
            "event:e1:help",
            datetime.fromisoformat("2026-06-01T10:00:00+08:00"),
            20,
            20,
            datetime.fromisoformat("2028-01-01T00:00:00+08:00"),
        ),
        ("m0:opening", opened, 100, 100, None),
    ]
    assert expiring(await balance(client, "m0"), "points") == [
        (datetime.fromisoformat("2027-12-31T16:00:00Z"), 20)
    ]
    await audit_passes(client)


async def test_a_spend_takes_the_soonest_expiring_lots_first(client: Client) -> None:
    """2025's award (expiring as 2027 begins) goes first, then 2026's; the opening lot,
    which never expires, is untouched. `status=all` still lists the spent lot."""
    await community(client, members=1)
    await publish(client)
    await helped(client, "e1", "2025-06-01T10:00:00+08:00", 30)
    await helped(client, "e2", "2026-06-01T10:00:00+08:00", 20)
    r = await client.post(f"{C}/transactions", json=transfer("s1", "member:m0:points", STORE, 40))
    assert r.status_code == 201, r.text
    end_2026 = datetime.fromisoformat("2027-01-01T00:00:00+08:00")
    end_2027 = datetime.fromisoformat("2028-01-01T00:00:00+08:00")
    spent = [
        (lot["transaction_id"], lot["remaining"], at(lot["expires_at"]))
        for lot in (await lots_of(client, status="all"))["lots"]
    ]
    assert spent == [
        ("event:e1:help", 0, end_2026),
        ("event:e2:help", 10, end_2027),
        ("m0:opening", 100, None),
    ]
    still_open = (await lots_of(client))["lots"]
    assert [lot["transaction_id"] for lot in still_open] == ["event:e2:help", "m0:opening"]
    assert expiring(await balance(client, "m0"), "points") == [(end_2027, 10)]
    await audit_passes(client)


# The read paths, on lots given row by row.


async def test_lots_come_in_consumption_order_a_page_at_a_time(client: Client, dsn: str) -> None:
    """Soonest expires_at first, non-expiring last, then oldest earned_at, then lowest
    id; `open` leaves out what is spent; every page follows from its cursor."""
    await community(client, members=1)
    soon, later = NOW + timedelta(days=10), NOW + timedelta(days=40)
    old, new = NOW - timedelta(days=30), NOW - timedelta(days=2)
    given = [
        Lot("m0:opening", old, None, 100, 100),  # 0
        Lot("m0:opening", new, later, 5, 5),  # 1
        Lot("m0:opening", old, later, 7, 2),  # 2
        Lot("m0:opening", new, soon, 9, 0),  # 3: spent
        Lot("m0:opening", new, soon, 4, 4, held=4),  # 4
        Lot("m0:opening", old, None, 6, 6),  # 5
        Lot("m0:opening", new, None, 3, 3),  # 6
        Lot("m0:opening", old, soon, 8, 8),  # 7
    ]
    async with shown_lots(dsn, "member:m0:points", given) as ids:
        every = [ids[i] for i in (7, 3, 4, 2, 1, 0, 5, 6)]
        for status, expected in (("all", every), ("open", [i for i in every if i != ids[3]])):
            for limit in (1, 3, 100):
                assert await _walk(client, status=status, limit=limit) == expected
        first = (await lots_of(client, limit=2))["lots"]
        assert [brief(lot) for lot in first] == [
            ("m0:opening", old, 8, 8, soon),
            ("m0:opening", new, 4, 4, soon),
        ]
    await audit_passes(client)


async def _walk(client: Client, **params: Any) -> list[int]:
    """Every lot's id, page by page."""
    seen: list[int] = []
    cursor = None
    while True:
        page = await lots_of(client, **params, **({"cursor": cursor} if cursor else {}))
        assert len(page["lots"]) <= params["limit"]
        seen += [lot["id"] for lot in page["lots"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


async def test_minutes_lots_are_listed_apart(client: Client, dsn: str) -> None:
    await community(client, members=1)
    await award(client, "a1", "m0", 5)
    given = [Lot("a1", NOW, NOW + timedelta(days=3), 12, 12)]
    async with shown_lots(dsn, "member:m0:minutes", given) as ids:
        page = await lots_of(client, asset="minutes")
        assert [lot["id"] for lot in page["lots"]] == ids
        assert brief(page["lots"][0]) == ("a1", NOW, 12, 12, NOW + timedelta(days=3))
        points = [lot["id"] for lot in (await lots_of(client, asset="points"))["lots"]]
        assert not set(points) & set(ids)
    await audit_passes(client)


async def test_the_balance_lists_the_next_three_expiry_instants(client: Client, dsn: str) -> None:
    """Per instant, what its open lots hold less what pending debits hold of them;
    an instant where nothing would expire is left out, and so is everything after the
    third; one already past (expiring at the next expiry run) counts."""
    await community(client, members=1)
    day = timedelta(days=1)
    points = [
        Lot("m0:opening", NOW, None, 100, 100),
        Lot("m0:opening", NOW, NOW - day, 3, 3),
        Lot("m0:opening", NOW, NOW + 5 * day, 9, 0),
        Lot("m0:opening", NOW, NOW + 10 * day, 40, 30, held=5),
        Lot("m0:opening", NOW, NOW + 10 * day, 4, 4),
        Lot("m0:opening", NOW, NOW + 20 * day, 6, 6, held=6),
        Lot("m0:opening", NOW, NOW + 30 * day, 8, 8),
        Lot("m0:opening", NOW, NOW + 40 * day, 1, 1),
    ]
    minutes = [Lot("m0:opening", NOW, NOW + 15 * day, 12, 12)]
    async with (
        shown_lots(dsn, "member:m0:points", points),
        shown_lots(dsn, "member:m0:minutes", minutes),
    ):
        shown = await balance(client, "m0")
    assert expiring(shown, "points") == [(NOW - day, 3), (NOW + 10 * day, 29), (NOW + 30 * day, 8)]
    assert expiring(shown, "minutes") == [(NOW + 15 * day, 12)]
    assert shown["points"] == {
        "score": 100,
        "held": 0,
        "baseline": 100,
        "redeemable": 0,
        "expiring": shown["points"]["expiring"],
    }
    assert "as_of" not in shown
    await audit_passes(client)


# Who may read them, and what is refused.


async def test_lots_are_read_by_those_who_read_the_balance(client: Client) -> None:
    await community(client, members=2, households=2)  # m0 in acme's h0, m1 in h1

    async def key(**scope: Any) -> dict[str, str]:
        r = await client.post("/v1/api-keys", json={"community": "green", **scope})
        assert r.status_code == 201, r.text
        return bearer(r.json()["key"])

    me = await key(role="resident", member="m0")
    acme = await key(role="property", property_company="acme")
    till = await key(role="store", store="s1")
    for headers, m0, m1 in ((me, 200, 404), (acme, 200, 404), (till, 403, 403)):
        for member, status in (("m0", m0), ("m1", m1)):
            r = await client.get(f"{C}/members/{member}/lots", headers=headers)
            assert r.status_code == status, (headers, member, r.text)
    await audit_passes(client)


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 501},
        {"limit": "x"},
        {"status": "spent"},
        {"asset": "stars"},
        {"cursor": "nope"},
        {"cursor": "ZTU"},  # a statement's cursor (`e5`)
        {"cursor": "bDEueC4y"},  # `l1.x.2`
        {"cursor": "bDk5OTk5OTk5OTk5OTk5OTk5OTk5OS4uMA"},  # an id beyond bigint
    ],
)
async def test_bad_parameters_are_422(client: Client, params: dict[str, Any]) -> None:
    await community(client, members=1)
    r = await client.get(f"{C}/members/m0/lots", params=params)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "validation_error"


async def test_an_unknown_member_is_404(client: Client) -> None:
    await community(client, members=1)
    r = await client.get(f"{C}/members/nobody/lots")
    assert r.status_code == 404 and r.json()["code"] == "not_found", r.text
    r = await client.get(f"{C}/members/nobody/balance", params={"as_of": NOW.isoformat()})
    assert r.status_code == 404 and r.json()["code"] == "not_found", r.text


# The balance as it stood.


async def test_the_balance_as_of_a_past_time(client: Client) -> None:
    """Posted balances from the entries up to `as_of`, the baseline of the rule set in
    force then; what was held and what was about to expire are not kept (0 and [])."""
    await community(client, members=1)
    await award(client, "a1", "m0", 30)
    statement = (await client.get(f"{C}/members/m0/statement")).json()["entries"]
    first = datetime.fromisoformat(statement[0]["created_at"])  # when a1's entry was posted
    await award(client, "a2", "m0", 20)
    hold = transfer("h1", "member:m0:points", STORE, 5, pending={})
    assert (await client.post(f"{C}/transactions", json=hold)).status_code == 201
    await publish(client, "baseline: 120\n")  # in force since 2025 …
    later = await _publish_now(client, "baseline: 140\n")  # … and from now
    then = await client.get(f"{C}/members/m0/balance", params={"as_of": first.isoformat()})
    assert then.status_code == 200, then.text
    assert then.json() == {
        "points": {"score": 130, "held": 0, "baseline": 120, "redeemable": 10, "expiring": []},
        "minutes": {"balance": 0, "held": 0, "expiring": []},
        "as_of": first.isoformat().replace("+00:00", "Z"),
    }
    now = await balance(client, "m0")
    assert now["points"]["score"] == 150 and now["points"]["held"] == 5
    assert now["points"]["baseline"] == 140 and later <= datetime.now(UTC)
    await audit_passes(client)


async def _publish_now(client: Client, text: str) -> datetime:
    r = await client.put(f"{C}/rules", content=text.encode(), headers=YAML)
    assert r.status_code == 201, r.text
    return datetime.fromisoformat(r.json()["effective_from"])


@pytest.mark.parametrize(
    "as_of", ["yesterday", "2026-03-01T09:00:00", "0", (NOW + timedelta(days=1)).isoformat()]
)
async def test_a_malformed_or_future_as_of_is_422(client: Client, as_of: str) -> None:
    await community(client, members=1)
    r = await client.get(f"{C}/members/m0/balance", params={"as_of": as_of})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
