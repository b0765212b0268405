"""asyncpg calls of the ledger, one function per named query."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from service.db import q
from service.errors import InsufficientPoints, InvalidState, NotFound
from service.ledger.model import NewTransaction, Posting, Transaction
from service.ledger.posting import Plan

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


def _raise_domain(err: asyncpg.PostgresError) -> None:
    """Turns the ledger functions' SQLSTATEs into domain errors; re-raises the rest."""
    state = getattr(err, "sqlstate", None)
    if state == "LG404":
        raise NotFound(f"account {err.detail} does not exist: create the member first") from err
    if state == "LG409":
        info = msgspec.json.decode(err.detail or "{}")
        need = -int(info.get("change", 0))
        available = int(info.get("available", 0)) - int(info.get("minimum") or 0)
        raise InsufficientPoints(
            f"{info.get('address')} can give {max(0, available)} but the transaction needs {need}",
            account=info.get("address"),
            available=max(0, available),
            requested=need,
        ) from err
    if isinstance(err, asyncpg.ForeignKeyViolationError):
        raise NotFound(f"a referenced row does not exist: {err.detail}") from err
    if state == "LG403":
        raise InvalidState(str(err)) from err
    raise err


async def create_tx(
    conn: Conn, community: str, tx: NewTransaction, plan: Plan
) -> tuple[str, int, datetime, datetime | None]:
    """One round trip: idempotency, limits under row locks, entries."""
    reserved = None
    if tx.pending:
        reserved = [msgspec.structs.asdict(p) for p in tx.postings]
    try:
        row = await conn.fetchrow(
            q("tx_create"),
            community,
            tx.client_id,
            tx.request_hash,
            tx.kind,
            tx.pending,
            reserved,
            tx.memo,
            tx.metadata,
            tx.reason,
            tx.rule_id,
            tx.rule_version,
            tx.event_id,
            tx.actor,
            tx.reversal_of,
            tx.ttl_s,
            plan.addresses,
            plan.assets,
            plan.limited,
            plan.posted,
            plan.held,
            plan.minimum,
            plan.leg_account,
            plan.leg_amount,
        )
    except asyncpg.PostgresError as err:
        _raise_domain(err)
    assert row is not None
    return row["outcome"], row["tx_id"], row["created_at"], row["expires_at"]


async def finish_tx(
    conn: Conn, community: str, row_id: int, status: str, void_reason: str | None, plan: Plan
) -> tuple[str, datetime | None]:
    try:
        row = await conn.fetchrow(
            q("tx_finish"),
            community,
            row_id,
            status,
            void_reason,
            plan.addresses,
            plan.assets,
            plan.limited,
            plan.posted,
            plan.held,
            plan.leg_account,
            plan.leg_amount,
        )
    except asyncpg.PostgresError as err:
        _raise_domain(err)
    assert row is not None
    return row["outcome"], row["finalized_at"]


def _postings_from_legs(legs: list[list[Any]]) -> tuple[Posting, ...]:
    return tuple(
        Posting(source=src[0], destination=dst[0], asset=dst[1], amount=dst[2])
        for src, dst in zip(legs[0::2], legs[1::2], strict=True)
    )


def _transaction(row: asyncpg.Record) -> Transaction:
    reserved = None
    if row["pending_postings"] is not None:
        reserved = msgspec.convert(row["pending_postings"], tuple[Posting, ...])
    postings = _postings_from_legs(row["legs"]) if row["legs"] else (reserved or ())
    return Transaction(
        row_id=row["id"],
        client_id=row["client_id"],
        kind=row["kind"],
        status=row["status"],
        postings=postings,
        reserved=reserved,
        memo=row["memo"],
        metadata=row["metadata"],
        reason=row["reason"],
        rule_id=row["rule_id"],
        rule_version=row["rule_version"],
        event_id=row["event_id"],
        actor=row["actor"],
        reversal_of=row["reversal_of"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        finalized_at=row["finalized_at"],
        void_reason=row["void_reason"],
    )


async def get_tx(
    conn: Conn, community: str, *, client_id: str | None = None, row_id: int | None = None
) -> tuple[Transaction, bytes] | None:
    row = await conn.fetchrow(q("tx_get"), community, client_id, row_id)
    if row is None:
        return None
    return _transaction(row), bytes(row["request_hash"])


async def reversed_by(conn: Conn, community: str, row_id: int) -> str | None:
    value: str | None = await conn.fetchval(q("tx_reversed_by"), community, row_id)
    return value


async def account(conn: Conn, community: str, address: str) -> asyncpg.Record | None:
    return await conn.fetchrow(q("account_get"), community, address)


async def account_pending(conn: Conn, community: str, address: str) -> tuple[int, int]:
    row = await conn.fetchrow(q("account_pending"), community, address)
    assert row is not None
    return row["debits"], row["credits"]


async def account_posted_as_of(conn: Conn, community: str, account_id: int, at: datetime) -> int:
    value: int = await conn.fetchval(q("account_posted_as_of"), community, account_id, at)
    return value


async def account_entries(
    conn: Conn,
    community: str,
    account_id: int,
    *,
    before_seq: int,
    start: datetime,
    end: datetime,
    limit: int,
) -> list[asyncpg.Record]:
    return await conn.fetch(
        q("account_entries"), community, account_id, before_seq, start, end, limit
    )


async def member_balances(conn: Conn, community: str, addresses: list[str]) -> list[asyncpg.Record]:
    return await conn.fetch(q("member_balances"), community, addresses)


async def pending_expired(conn: Conn, now: datetime, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(q("pending_expired"), now, limit)


async def seal(conn: Conn, community: str, limit: int) -> int:
    value: int = await conn.fetchval(q("seal"), community, limit)
    return value


async def seal_backlog(conn: Conn) -> list[str]:
    return [r["community_id"] for r in await conn.fetch(q("seal_backlog"))]
