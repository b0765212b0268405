"""asyncpg calls of the ledger, one function per named query."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import asyncpg
import msgspec

from service.db import Conn as Conn  # re-exported for the use cases
from service.db import Queryable as Queryable
from service.db import q
from service.errors import InvalidState, NotFound
from service.ledger.model import NewTransaction, Outcome, Posting, Transaction
from service.ledger.posting import AccountChange, Leg, Plan


class Write(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One write for the engine: the SQL type `ledger_write`, field for field, sent
    as JSON (`ledger_writes` reads it). 'create' writes a new transaction; 'post'
    and 'void' finish the pending transaction `tx_id`."""

    op: Literal["create", "post", "void"]
    pending: bool
    accounts: list[AccountChange]
    legs: list[Leg]
    tx_id: int | None = None
    client_id: str | None = None
    request_hash: str | None = None  # bytea's hex form
    kind: str | None = None
    reserved: tuple[Posting, ...] | None = None
    memo: str | None = None
    metadata: dict[str, Any] | None = None
    reason: str | None = None
    rule_id: str | None = None
    rule_version: int | None = None
    event_id: str | None = None
    actor: str | None = None
    on_behalf_of: str | None = None
    reversal_of: int | None = None
    ttl_s: int | None = None
    void_reason: str | None = None
    undoes: int | None = None
    lot_terms: dict[str, str] | None = None


class Written(msgspec.Struct, frozen=True, kw_only=True):
    """What the engine says of one write (the SQL type `ledger_written`)."""

    outcome: Outcome
    row_id: int | None  # the transaction made, finished, or replayed
    created_at: datetime | None = None
    expires_at: datetime | None = None
    finalized_at: datetime | None = None
    failure: dict[str, Any] | None = None


def _raise_domain(err: asyncpg.PostgresError) -> None:
    """Turns the ledger functions' SQLSTATEs into domain errors; re-raises the rest."""
    if isinstance(err, asyncpg.ForeignKeyViolationError):
        raise NotFound(f"a referenced row does not exist: {err.detail}") from err
    if getattr(err, "sqlstate", None) == "LG403":
        raise InvalidState(str(err)) from err
    raise err


def create_write(tx: NewTransaction, plan: Plan) -> Write:
    """The write that creates `tx` as `plan` says."""
    return Write(
        op="create",
        pending=tx.pending,
        accounts=plan.accounts,
        legs=plan.legs,
        client_id=tx.client_id,
        request_hash="\\x" + tx.request_hash.hex(),
        kind=tx.kind,
        reserved=tx.postings if tx.pending else None,
        memo=tx.memo,
        metadata=tx.metadata,
        reason=tx.reason,
        rule_id=tx.rule_id,
        rule_version=tx.rule_version,
        event_id=tx.event_id,
        actor=tx.actor,
        on_behalf_of=tx.on_behalf_of,
        reversal_of=tx.reversal_of,
        ttl_s=tx.ttl_s,
        undoes=tx.undoes,
        lot_terms=lot_terms(tx, plan),
    )


def lot_terms(tx: NewTransaction, plan: Plan) -> dict[str, str] | None:
    """The terms of the lots `tx` creates, as `ledger_lots` reads them: the rule
    set's policy per asset, the transaction's own `expires` and `earned_at`."""
    if plan.lot_policy is None and tx.lot_expires is None and tx.lot_earned_at is None:
        return None
    terms = dict(plan.lot_policy or {})
    if tx.lot_expires is not None:
        terms["expires"] = tx.lot_expires
    if tx.lot_earned_at is not None:
        terms["earned_at"] = tx.lot_earned_at.isoformat()
    return terms


def finish_write(row_id: int, plan: Plan, *, void_reason: str | None = None) -> Write:
    """The write that posts (no `void_reason`) or voids pending transaction `row_id`."""
    op: Literal["post", "void"] = "post" if void_reason is None else "void"
    return Write(
        op=op,
        pending=False,
        accounts=plan.accounts,
        legs=plan.legs,
        tx_id=row_id,
        void_reason=void_reason,
    )


_encode = msgspec.json.Encoder().encode


def document(writes: Sequence[Write]) -> str:
    """`writes` as the JSON text that `ledger_writes(…)` turns into `ledger_write[]`,
    for SQL functions of other contexts that write to the ledger in the same round
    trip as their own writes (their named queries call `ledger_writes`)."""
    return _encode(writes).decode()


async def write(
    conn: Conn, community: str, writes: Sequence[Write], *, skip_locked: bool = False
) -> list[Written]:
    """One round trip for many writes, each applied or refused on its own. With
    `skip_locked`, a write whose member account or transaction another transaction
    holds is not waited for: it comes back `busy`, with nothing written."""
    try:
        rows = await conn.fetch(q("ledger_write"), community, document(writes), skip_locked)
    except asyncpg.PostgresError as err:
        _raise_domain(err)
    return [written_of(r) for r in rows]


def written_of(row: Any) -> Written:
    """A `ledger_written` row (or one with the same columns) as a value."""
    return Written(
        outcome=Outcome(row["outcome"]),
        row_id=row["tx_id"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        finalized_at=row["finalized_at"],
        failure=row["failure"],
    )


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
        on_behalf_of=row["on_behalf_of"],
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


async def get_txs(
    conn: Conn, community: str, client_ids: list[str]
) -> dict[str, tuple[Transaction, bytes]]:
    """The transactions with these client ids that exist, by client id."""
    rows = await conn.fetch(q("tx_get_many"), community, client_ids)
    return {row["client_id"]: (_transaction(row), bytes(row["request_hash"])) for row in rows}


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
    address: str,
    *,
    before_seq: int,
    start: datetime,
    end: datetime,
    limit: int,
) -> list[asyncpg.Record]:
    return await conn.fetch(q("account_entries"), community, address, before_seq, start, end, limit)


async def member_balances(
    conn: Queryable, community: str, addresses: list[str]
) -> list[asyncpg.Record]:
    return await conn.fetch(q("member_balances"), community, addresses)


async def pending_expired(conn: Conn, now: datetime, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(q("pending_expired"), now, limit)


async def seal(conn: Conn, community: str, limit: int) -> int:
    value: int = await conn.fetchval(q("seal"), community, limit)
    return value


async def seal_backlog(conn: Conn) -> list[str]:
    return [r["community_id"] for r in await conn.fetch(q("seal_backlog"))]


async def seal_lag_s(conn: Queryable) -> float:
    value: float = await conn.fetchval(q("seal_lag_s"))
    return value


async def audit_count(conn: Conn, community: str) -> int:
    """How many transactions the audit checks."""
    value: int = await conn.fetchval(q("audit_count"), community)
    return value


async def audit_offending(conn: Conn, query: str, community: str) -> list[asyncpg.Record]:
    """The rows that audit query `query` (audit_unbalanced, audit_chain, …) finds wrong."""
    return await conn.fetch(q(query), community)


async def audit_limits(conn: Conn, community: str, floor: int) -> list[asyncpg.Record]:
    """Member accounts whose posted less held is below their floor (`floor` for
    points, 0 for minutes)."""
    return await conn.fetch(q("audit_limits"), community, floor)
