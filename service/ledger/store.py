"""asyncpg calls of the ledger, one function per named query."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from itertools import accumulate, chain
from operator import attrgetter
from typing import Any

import asyncpg
import msgspec

from service.db import q
from service.errors import InvalidState, NotFound
from service.ledger.model import NewTransaction, Posting, Transaction
from service.ledger.posting import Plan

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
# Reads that need no transaction may go straight to the pool.
Queryable = Conn | asyncpg.Pool


class Created(msgspec.Struct, frozen=True, kw_only=True):
    """What the database says of one transaction of a batch."""

    outcome: str  # created | replay | conflict | not_found | insufficient | busy
    row_id: int | None
    created_at: datetime | None
    expires_at: datetime | None
    failure: dict[str, Any] | None


def _raise_domain(err: asyncpg.PostgresError) -> None:
    """Turns the ledger functions' SQLSTATEs into domain errors; re-raises the rest."""
    if isinstance(err, asyncpg.ForeignKeyViolationError):
        raise NotFound(f"a referenced row does not exist: {err.detail}") from err
    if getattr(err, "sqlstate", None) == "LG403":
        raise InvalidState(str(err)) from err
    raise err


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


# The plan's lists, concatenated over the items, in `ledger_batch` order.
_PLAN_COLUMNS = (
    ("addrs", "addresses"),
    ("assets", "assets"),
    ("member", "limited"),
    ("posted", "posted"),
    ("held", "held"),
    ("min", "minimum"),
    ("leg_acct", "leg_account"),
    ("leg_amount", "leg_amount"),
)
# Fields of the transactions copied as they are.
_TX_COLUMNS = (
    ("kinds", "kind"),
    ("pendings", "pending"),
    ("memos", "memo"),
    ("reasons", "reason"),
    ("rule_ids", "rule_id"),
    ("rule_versions", "rule_version"),
    ("event_ids", "event_id"),
    ("actors", "actor"),
    ("reversal_ofs", "reversal_of"),
    ("ttls", "ttl_s"),
)


def _batch_document(items: Sequence[tuple[NewTransaction, Plan]]) -> str:
    """The `ledger_batch` (parallel arrays of ledger_create_batch) for `items`, as
    JSON: one entry per item, then the items' accounts and legs concatenated, with
    each item's end offsets. Built column by column, so that a thousand items cost
    a few C-level passes rather than a Python loop each; JSON values travel as
    text, and request hashes in bytea's hex form."""
    txs = [tx for tx, _ in items]
    plans = [plan for _, plan in items]
    document: dict[str, list[Any]] = {
        "client_ids": [tx.client_id for tx in txs],
        "hashes": ["\\x" + tx.request_hash.hex() for tx in txs],
        "reserved": [_json(tx.postings) if tx.pending else None for tx in txs],
        "metadata": [None if tx.metadata is None else _json(tx.metadata) for tx in txs],
        "acct_end": list(accumulate(len(plan.addresses) for plan in plans)),
        "leg_end": list(accumulate(len(plan.leg_account) for plan in plans)),
    }
    for key, field in _TX_COLUMNS:
        document[key] = list(map(attrgetter(field), txs))
    for key, field in _PLAN_COLUMNS:
        document[key] = list(chain.from_iterable(map(attrgetter(field), plans)))
    return _json(document)


def write_document(tx: NewTransaction, plan: Plan) -> str:
    """One transaction's write as the document ledger_create_document (0009) takes:
    for a SQL function that writes to the ledger in the same round trip as its own
    writes."""
    return _batch_document([(tx, plan)])


async def create_batch(
    conn: Conn,
    community: str,
    items: Sequence[tuple[NewTransaction, Plan]],
    *,
    skip_locked: bool = False,
) -> list[Created]:
    """One round trip for many transactions, each applied or refused on its own.

    With `skip_locked`, an item whose member account another transaction holds is
    not waited for: it comes back `busy`, with nothing written.
    """
    document = _batch_document(items)
    try:
        rows = await conn.fetch(q("tx_create_batch"), community, document, skip_locked)
    except asyncpg.PostgresError as err:
        _raise_domain(err)
    return [
        Created(
            outcome=r["outcome"],
            row_id=r["tx_id"],
            created_at=r["created_at"],
            expires_at=r["expires_at"],
            failure=r["failure"],
        )
        for r in rows
    ]


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
