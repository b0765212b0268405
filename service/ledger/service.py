"""Ledger use cases: each opens what it needs, calls the pure core, and persists."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from service.db import retrying
from service.errors import (
    DomainError,
    IdempotencyConflict,
    InsufficientPoints,
    InvalidState,
    NotFound,
)
from service.ledger import store
from service.ledger.model import NewTransaction, Posting, RuleParams, Transaction
from service.ledger.posting import (
    LimitMode,
    plan_create,
    plan_post_pending,
    plan_void,
    reversed_postings,
)


def creation_view(tx: Transaction) -> Transaction:
    """The transaction as its creating request returned it, for idempotent replays."""
    if tx.reserved is None:
        return tx
    return msgspec.structs.replace(
        tx, status="pending", postings=tx.reserved, finalized_at=None, void_reason=None
    )


async def _fetch(conn: store.Conn, community: str, client_id: str) -> tuple[Transaction, bytes]:
    found = await store.get_tx(conn, community, client_id=client_id)
    if found is None:
        raise NotFound(f"no transaction {client_id!r} in community {community!r}")
    return found


async def replay_of(
    conn: store.Conn, community: str, client_id: str, request_hash: bytes
) -> Transaction | None:
    """The original of a repeated request, for a use case that would refuse the
    repeat before it reaches the database (the rule it was planned under changed
    since): the original if `client_id` was written by the same request, a
    conflict if by another, None if it was never written."""
    found = await store.get_tx(conn, community, client_id=client_id)
    if found is None:
        return None
    tx, original_hash = found
    if original_hash != request_hash:
        raise _conflict(client_id)
    return creation_view(tx)


def _conflict(client_id: str) -> IdempotencyConflict:
    return IdempotencyConflict(
        f"transaction {client_id!r} exists with a different request; "
        "use a new id for a new transaction"
    )


def refusal(tx: NewTransaction, created: store.Created) -> DomainError | None:
    """The domain error for an item the database refused, or None if it was written."""
    failure = created.failure or {}
    if created.outcome == "not_found":
        return NotFound(
            f"account {failure.get('address')} does not exist: create the member first",
            account=failure.get("address"),
        )
    if created.outcome == "insufficient":
        available = max(0, int(failure["available"]) - int(failure.get("minimum") or 0))
        requested = -int(failure["change"])
        return InsufficientPoints(
            f"{failure['address']} can give {available} but the transaction needs {requested}",
            account=failure["address"],
            available=available,
            requested=requested,
        )
    if created.outcome == "conflict":
        return _conflict(tx.client_id)
    return None


def written(tx: NewTransaction, created: store.Created, reversal_of: str | None) -> Transaction:
    """The transaction `tx` became, from what the database returned."""
    assert created.row_id is not None and created.created_at is not None
    return Transaction(
        row_id=created.row_id,
        client_id=tx.client_id,
        kind=tx.kind,
        status="pending" if tx.pending else "posted",
        postings=tx.postings,
        reserved=tx.postings if tx.pending else None,
        memo=tx.memo,
        metadata=tx.metadata,
        reason=tx.reason,
        rule_id=tx.rule_id,
        rule_version=tx.rule_version,
        event_id=tx.event_id,
        actor=tx.actor,
        reversal_of=reversal_of,
        created_at=created.created_at,
        expires_at=created.expires_at,
        finalized_at=None if tx.pending else created.created_at,
        void_reason=None,
    )


async def settle(
    conn: store.Conn,
    community: str,
    tx: NewTransaction,
    created: store.Created,
    reversal_of: str | None = None,
) -> tuple[Transaction, bool]:
    """The result for the caller: the new transaction, the original one for a replay,
    or the domain error for a refusal."""
    if created.outcome == "replay":
        existing, _ = await _fetch(conn, community, tx.client_id)
        return creation_view(existing), True
    return settle_new(tx, created, reversal_of)


def settle_new(
    tx: NewTransaction, created: store.Created, reversal_of: str | None = None
) -> tuple[Transaction, bool]:
    """`settle` for any outcome but a replay: no database needed."""
    error = refusal(tx, created)
    if error is not None:
        raise error
    return written(tx, created, reversal_of), False


def write_document(tx: NewTransaction, params: RuleParams, *, mode: LimitMode = "spend") -> str:
    """What `create_transaction` sends, for a use case whose own SQL function makes
    the ledger write (ledger_create_document) in the same round trip as its other
    writes; `refusal` turns what that returns into the error to raise."""
    plan = plan_create(tx.postings, params, pending=tx.pending, mode=mode)
    return store.write_document(tx, plan)


def check_written(tx: NewTransaction, outcome: str, failure: dict[str, Any] | None) -> None:
    """Raises the domain error for a write of `tx` (from `write_document`) that the
    ledger refused inside a use case's own SQL function, whose caller's rollback
    then undoes the rest; only a created transaction passes. (Its use case found its
    own id free, so a transaction already under `tx`'s derived id is not its own:
    that is a conflict, even with the same request hash.)"""
    created = store.Created(
        outcome=outcome, row_id=None, created_at=None, expires_at=None, failure=failure
    )
    error = refusal(tx, created)
    if error is not None:
        raise error
    if outcome != "created":
        raise IdempotencyConflict(
            f"transaction {tx.client_id!r} already exists and was not made by this request"
        )


async def create_transaction(
    conn: store.Conn,
    community: str,
    tx: NewTransaction,
    params: RuleParams,
    *,
    mode: LimitMode = "spend",
    reversal_of: str | None = None,
) -> tuple[Transaction, bool]:
    """Writes `tx` once; a replay of the same client id returns the original result."""
    plan = plan_create(tx.postings, params, pending=tx.pending, mode=mode)
    [created] = await retrying(lambda: store.create_batch(conn, community, [(tx, plan)]), conn=conn)
    return await settle(conn, community, tx, created, reversal_of)


async def get_transaction(conn: store.Conn, community: str, client_id: str) -> Transaction:
    tx, _ = await _fetch(conn, community, client_id)
    return tx


async def post_transaction(
    conn: store.Conn, community: str, client_id: str, amount: int | None
) -> tuple[Transaction, bool]:
    """Posts a pending transaction in full or for `amount`; posting it again is a replay."""
    tx, _ = await _fetch(conn, community, client_id)
    if tx.status == "posted" and (
        amount is None or (len(tx.postings) == 1 and tx.postings[0].amount == amount)
    ):
        return tx, True
    if tx.status != "pending":
        raise InvalidState(
            f"transaction {client_id!r} is {tx.status}; only a pending one can be posted"
        )
    assert tx.reserved is not None
    outcome, finalized_at, postings = await post_reserved(
        conn, community, tx.row_id, tx.reserved, amount
    )
    if outcome == "done":
        return msgspec.structs.replace(
            tx, status="posted", postings=postings, finalized_at=finalized_at
        ), False
    if outcome == "expired":
        raise InvalidState(
            f"transaction {client_id!r} expired at {tx.expires_at}; it is being voided"
        )
    return await post_transaction(conn, community, client_id, amount)


async def post_reserved(
    conn: store.Conn,
    community: str,
    row_id: int,
    reserved: tuple[Posting, ...],
    amount: int | None,
) -> tuple[str, datetime | None, tuple[Posting, ...]]:
    """Posts pending transaction `row_id`, which reserved `reserved`, in full or for
    `amount`: ledger_finish_tx's outcome ('done' when this call posted it), when,
    and the postings made. For callers that already read the transaction."""
    plan, postings = plan_post_pending(reserved, amount)
    outcome, finalized_at = await retrying(
        lambda: store.finish_tx(conn, community, row_id, "posted", None, plan)
    )
    return outcome, finalized_at, postings


async def void_transaction(
    conn: store.Conn, community: str, client_id: str, reason: str = "voided"
) -> tuple[Transaction, bool]:
    """Voids a pending transaction, releasing what it held; voiding it again is a replay."""
    tx, _ = await _fetch(conn, community, client_id)
    return await _void(conn, community, tx, reason)


async def _void(
    conn: store.Conn, community: str, tx: Transaction, reason: str
) -> tuple[Transaction, bool]:
    if tx.status == "voided":
        return tx, True
    if tx.status != "pending":
        raise InvalidState(
            f"transaction {tx.client_id!r} is {tx.status}; reverse it instead of voiding it"
        )
    assert tx.reserved is not None
    plan = plan_void(tx.reserved)
    outcome, finalized_at = await retrying(
        lambda: store.finish_tx(conn, community, tx.row_id, "voided", reason, plan)
    )
    if outcome == "done":
        voided = msgspec.structs.replace(
            tx, status="voided", finalized_at=finalized_at, void_reason=reason
        )
        return voided, False
    return await void_transaction(conn, community, tx.client_id, reason)


async def reverse_transaction(
    conn: store.Conn, community: str, client_id: str, params: RuleParams, actor: str | None
) -> tuple[Transaction, bool]:
    """Writes the transaction that undoes a posted one, at most once.

    A reversal may take a member below the baseline but not below the floor.
    """
    tx, _ = await _fetch(conn, community, client_id)
    if tx.status != "posted":
        raise InvalidState(
            f"transaction {client_id!r} is {tx.status}; only a posted one can be reversed"
        )
    reversal = NewTransaction(
        client_id=f"{tx.client_id}:reversal",
        postings=reversed_postings(tx.postings),
        request_hash=b"reversal",
        kind="reversal",
        reason=f"reversal of {tx.client_id}",
        actor=actor,
        reversal_of=tx.row_id,
        rule_id=tx.rule_id,
        rule_version=tx.rule_version,
        event_id=tx.event_id,
    )
    return await create_transaction(
        conn, community, reversal, params, mode="floor", reversal_of=tx.client_id
    )


async def expire_due(pool: asyncpg.Pool, now: datetime | None = None, limit: int = 500) -> int:
    """Voids pending transactions whose ttl has passed; safe to run in many processes."""
    now = now or datetime.now(UTC)
    voided = 0
    async with pool.acquire() as conn:
        for row in await store.pending_expired(conn, now, limit):
            found = await store.get_tx(conn, row["community_id"], row_id=row["id"])
            if found is None or found[0].status != "pending":
                continue
            try:
                _, replayed = await _void(conn, row["community_id"], found[0], "expired")
            except InvalidState:
                continue  # posted by its owner in the same instant: nothing to expire
            voided += 0 if replayed else 1
    return voided


async def seal_all(pool: asyncpg.Pool, batch: int = 2000) -> int:
    """Seals every community's final transactions into its hash chain."""
    sealed = 0
    async with pool.acquire() as conn:
        for community in await store.seal_backlog(conn):
            while (n := await store.seal(conn, community, batch)) > 0:
                sealed += n
                if n < batch:
                    break
    return sealed
