"""District network use cases (SPEC section 16; docs/network.md): districts and
their communities, district-wide stores, the clearing between communities and the
settlements that close a period. The changes themselves (a redemption at another
community's store, its return, …) are their own contexts' use cases, which ask
`pair` whether two communities may trade and write both sides through
`interchange_write` (sql/functions/network.sql).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
import msgspec

from service import setup
from service.db import Conn, Queryable, unit_of_work
from service.errors import (
    DomainError,
    IdempotencyConflict,
    InvalidState,
    NotFound,
    ValidationFailed,
)
from service.ledger import service as ledger
from service.ledger.model import NewTransaction, RuleParams
from service.ledger.posting import LimitMode
from service.network import model, store
from service.network.model import ClearingOut, DistrictOut, SettlementOut, StoreOut

# Fen per point of a community, from its active rule set.
FenOf = Callable[[Conn, str], Awaitable[int]]


class OutsideDistrict(DomainError):
    """A change between two communities that are not in one district, or at a store
    that serves its own community only."""

    code = "outside_district"
    status = 403
    title = "Outside the district"


def _district(row: asyncpg.Record) -> DistrictOut:
    return DistrictOut(
        id=row["id"],
        name=row["name"],
        communities=list(row["communities"]),
        created_at=row["created_at"],
    )


async def get_district(conn: Queryable, ident: str) -> DistrictOut:
    row = await store.get_district(conn, ident)
    if row is None:
        raise NotFound(f"no district {ident!r}")
    return _district(row)


async def create_district(
    conn: Conn, ident: str, name: str, communities: list[str], request_hash: bytes
) -> tuple[DistrictOut, bool]:
    """Creates a district with its communities, once per id (a replay answers as the
    original did; another request under the id is a conflict)."""

    async def work() -> bool:
        created = await store.insert_district(conn, ident, name, request_hash)
        if created:
            for community in sorted(set(communities)):
                await _join(conn, ident, community)
        return created

    created = await unit_of_work(conn, work)
    row = await store.get_district(conn, ident)
    assert row is not None
    if not created and bytes(row["request_hash"]) != request_hash:
        raise IdempotencyConflict(
            f"district {ident!r} exists with different fields; pick a new id or resend the original"
        )
    return _district(row), not created


async def _join(conn: Conn, district: str, community: str) -> bool:
    """Community joins district; False when it already was in it."""
    row = await store.join_district(conn, district, community)
    if not row["found"]:
        raise NotFound(f"no community {community!r}")
    if not row["joined"]:
        raise InvalidState(
            f"community {community!r} belongs to district {row['district_id']!r}; "
            "a community belongs to one district"
        )
    return True


async def add_community(conn: Conn, district: str, community: str) -> DistrictOut:
    """Adds a community to a district (idempotent: again, it is already there)."""

    async def work() -> None:
        if await store.get_district(conn, district) is None:
            raise NotFound(f"no district {district!r}")
        await _join(conn, district, community)

    await unit_of_work(conn, work)
    return await get_district(conn, district)


async def put_store(
    conn: Conn, community: str, ident: str, name: str, district_wide: bool
) -> tuple[StoreOut, bool]:
    row = await store.upsert_store(conn, community, ident, name, district_wide)
    values = {k: row[k] for k in ("id", "name", "district_wide", "created_at", "updated_at")}
    return StoreOut(**values), bool(row["created"])


async def get_store(conn: Queryable, community: str, ident: str) -> StoreOut:
    row = await store.get_store(conn, community, ident)
    if row is None:
        raise NotFound(f"no store {ident!r} in community {community!r}")
    return StoreOut(**dict(row))


async def pair(conn: Queryable, home: str, away: str, store_id: str | None = None) -> str:
    """The district in which community `home` serves a member of community `away`
    (and, with `store_id`, through that store of `home`, which must be district-wide);
    refused when there is none."""
    if home == away:
        raise ValidationFailed("member_community names this community: leave it out")
    here = await setup.get_community(conn, home)
    there = await setup.get_community(conn, away)
    if here.district is None or here.district != there.district:
        raise OutsideDistrict(
            f"communities {home!r} and {away!r} are not in one district; "
            "only a district's communities serve each other's members"
        )
    if store_id is not None:
        row = await store.get_store(conn, home, store_id)
        if row is None or not row["district_wide"]:
            raise OutsideDistrict(
                f"store {store_id!r} of community {home!r} serves its own community only; "
                "make it district-wide (PUT …/stores/{s} with district_wide: true)"
            )
    return here.district


def _window(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    end = end or datetime.now(UTC)
    start = start or datetime(1970, 1, 1, tzinfo=UTC)
    if start >= end:
        raise ValidationFailed("from must be before to")
    return start, end


async def fen_of_each(conn: Conn, communities: list[str], fen_of: FenOf) -> dict[str, int]:
    return {c: await fen_of(conn, c) for c in communities}


async def clearing(
    conn: Conn, district: str, start: datetime | None, end: datetime | None, fen_of: FenOf
) -> ClearingOut:
    """What moved between each ordered pair of the district's communities in
    [start, end), and the net positions, in points, minutes and fen."""
    found = await get_district(conn, district)
    return await _clearing(conn, district, found.communities, found.communities, start, end, fen_of)


async def own_positions(
    conn: Conn, community: str, start: datetime | None, end: datetime | None, fen_of: FenOf
) -> ClearingOut:
    """A community's side of its district's clearing, from its own rows only (the
    other side's mirror them): what an operator of one community sees."""
    here = await setup.get_community(conn, community)
    if here.district is None:
        raise NotFound(f"community {community!r} belongs to no district")
    found = await get_district(conn, here.district)
    return await _clearing(conn, here.district, [community], found.communities, start, end, fen_of)


async def _clearing(
    conn: Conn,
    district: str,
    sides: list[str],
    communities: list[str],
    start: datetime | None,
    end: datetime | None,
    fen_of: FenOf,
) -> ClearingOut:
    start, end = _window(start, end)
    rows = await store.interchange_sums(conn, district, sides, start, end)
    flows = [
        model.Flow(
            side=r["community_id"],
            counterparty=r["counterparty"],
            asset=r["asset"],
            out=r["out"],
            back=r["back"],
            moves=r["moves"],
        )
        for r in rows
    ]
    fen = await fen_of_each(conn, communities, fen_of)
    return ClearingOut(
        district=district,
        from_=start,
        to=end,
        fen_per_point=fen,
        positions=model.positions(flows, fen),
    )


def _settlement(row: asyncpg.Record) -> SettlementOut:
    return SettlementOut(
        id=row["id"],
        district=row["district_id"],
        from_=row["period_from"],
        to=row["period_to"],
        moves=row["moves"],
        late=row["late"],
        positions=msgspec.convert(row["positions"], list[model.Position]),
        created_by=row["created_by"],
        created_at=row["created_at"],
    )


async def get_settlement(conn: Queryable, district: str, ident: str) -> SettlementOut:
    row = await store.get_settlement(conn, district, ident)
    if row is None:
        raise NotFound(f"no settlement {ident!r} in district {district!r}")
    return _settlement(row)


async def list_settlements(conn: Queryable, district: str, limit: int) -> model.SettlementPage:
    await get_district(conn, district)
    rows = await store.list_settlements(conn, district, limit)
    return model.SettlementPage(district=district, settlements=[_settlement(r) for r in rows])


async def settle(
    conn: Conn,
    district: str,
    ident: str,
    start: datetime,
    end: datetime,
    request_hash: bytes,
    actor: str | None,
    fen_of: FenOf,
) -> tuple[SettlementOut, bool]:
    """Closes [start, end) of a district once per id: every change not yet settled
    and made before `end` is marked settled by it, each exactly once, and the net
    positions they make are recorded. Settlements of one district take turns on its
    row; their periods do not overlap. A change that committed after an earlier
    settlement of its period (it began before that settlement ran) is taken by the
    next one, counted `late`, so nothing is settled twice or never."""
    if start >= end:
        raise ValidationFailed("from must be before to")
    if end > datetime.now(UTC):
        raise ValidationFailed("to is in the future: settle a period that has ended")

    async def work() -> bool:
        if not await store.lock_district(conn, district):
            raise NotFound(f"no district {district!r}")
        found = await store.get_settlement(conn, district, ident)
        if found is not None:
            if bytes(found["request_hash"]) != request_hash:
                raise IdempotencyConflict(
                    f"settlement {ident!r} exists for another period; use a new id"
                )
            return False
        other = await store.overlapping_settlement(conn, district, start, end)
        if other is not None:
            raise InvalidState(f"settlement {other!r} of district {district!r} overlaps the period")
        communities = (await get_district(conn, district)).communities
        claimed = await store.claim_moves(conn, district, communities, ident, start, end)
        flows = model.flows_of(
            (r["community_id"], r["counterparty"], r["asset"], r["amount"]) for r in claimed
        )
        fen = await fen_of_each(conn, communities, fen_of)
        positions = model.positions(flows, fen)
        late = sum(1 for r in claimed if r["late"])
        await store.insert_settlement(
            conn,
            district,
            ident,
            start,
            end,
            request_hash,
            len(claimed),
            late,
            list(positions),
            actor,
        )
        return True

    made = await unit_of_work(conn, work)
    # Read back in both cases, so that a replay answers exactly as the original did.
    return await get_settlement(conn, district, ident), not made


async def tx_row_of(conn: Queryable, community: str, client_id: str) -> int | None:
    """The row id of one side's transaction of a change (what its undoing undoes)."""
    return await store.tx_row_of(conn, community, client_id)


class Side(msgspec.Struct, frozen=True, kw_only=True):
    """One community's side of a change: its transactions (each balanced on its own,
    through `interchange:<other>:<asset>`) and the limits they are written under."""

    community: str
    txs: tuple[NewTransaction, ...]
    params: RuleParams
    mode: LimitMode = "spend"


async def write_change(
    conn: Conn, district: str, change: str, kind: str, first: Side, second: Side
) -> bool:
    """Writes both sides of a change between two communities in one statement
    (`interchange_write`: the lock order across communities, the moves recorded),
    inside the caller's transaction. True when written; False when it was written
    before by the same request (a replay: nothing changed). A refusal of either side
    is raised, and the caller's rollback undoes the other."""
    rows = await store.interchange_write(
        conn,
        district,
        change,
        kind,
        first.community,
        ledger.write_documents(first.txs, first.params, mode=first.mode),
        second.community,
        ledger.write_documents(second.txs, second.params, mode=second.mode),
    )
    sides = {1: first, 2: second}
    for row in rows:
        if row["outcome"] == "replay" and row is rows[0]:
            return False
        if row["outcome"] != "created":
            ledger.check_written(
                sides[row["side"]].txs[row["idx"] - 1], row["outcome"], row["failure"]
            )
    written = sum(len(s.txs) for s in (first, second))
    if len(rows) != written:
        raise InvalidState(f"change {change!r} was written on one side only")
    return True
