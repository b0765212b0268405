"""Ledger use cases: each opens what it needs, calls the pure core, and persists."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

import asyncpg
import msgspec

from service import i18n
from service.db import unit_of_work
from service.errors import (
    DomainError,
    IdempotencyConflict,
    InsufficientPoints,
    InvalidState,
    NotFound,
)
from service.ledger import store
from service.ledger.model import (
    INTERCHANGE,
    NewTransaction,
    Outcome,
    Posting,
    RuleParams,
    Transaction,
)
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


def refusal(tx: NewTransaction, done: store.Written) -> DomainError | None:
    """The domain error for a write of `tx` the engine refused, or None if it was
    written (or is a replay)."""
    failure = done.failure or {}
    if done.outcome == Outcome.NOT_FOUND:
        return NotFound(
            f"account {failure.get('address')} does not exist: create the member first",
            account=failure.get("address"),
        )
    if done.outcome == Outcome.INSUFFICIENT:
        available = max(0, int(failure["available"]) - int(failure.get("minimum") or 0))
        requested = -int(failure["change"])
        return InsufficientPoints(
            f"{failure['address']} can give {available} but the transaction needs {requested}",
            account=failure["address"],
            available=available,
            requested=requested,
        )
    if done.outcome == Outcome.CONFLICT:
        return _conflict(tx.client_id)
    if done.outcome not in (Outcome.CREATED, Outcome.REPLAY):
        raise AssertionError(f"a create cannot come to {done.outcome}")  # busy is the caller's
    return None


def written(tx: NewTransaction, done: store.Written, reversal_of: str | None) -> Transaction:
    """The transaction `tx` became, from what the engine returned."""
    assert done.row_id is not None and done.created_at is not None
    return Transaction(
        row_id=done.row_id,
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
        on_behalf_of=tx.on_behalf_of,
        reversal_of=reversal_of,
        created_at=done.created_at,
        expires_at=done.expires_at,
        finalized_at=done.finalized_at,
        void_reason=None,
    )


async def settle(
    conn: store.Conn,
    community: str,
    tx: NewTransaction,
    done: store.Written,
    reversal_of: str | None = None,
) -> tuple[Transaction, bool]:
    """The result for the caller: the new transaction, the original one for a replay,
    or the domain error for a refusal."""
    if done.outcome == Outcome.REPLAY:
        existing, _ = await _fetch(conn, community, tx.client_id)
        return creation_view(existing), True
    return settle_new(tx, done, reversal_of)


def settle_new(
    tx: NewTransaction, done: store.Written, reversal_of: str | None = None
) -> tuple[Transaction, bool]:
    """`settle` for any outcome but a replay: no database needed."""
    error = refusal(tx, done)
    if error is not None:
        raise error
    return written(tx, done, reversal_of), False


def write_document(tx: NewTransaction, params: RuleParams, *, mode: LimitMode = "spend") -> str:
    """The write of `tx`, as the JSON a use case passes to its own SQL function
    (which calls `ledger_write` in the same round trip as its other writes);
    `check_written` turns what that returns into the error to raise."""
    return write_documents([tx], params, mode=mode)


def write_documents(
    txs: Sequence[NewTransaction], params: RuleParams, *, mode: LimitMode = "spend"
) -> str:
    """The writes of `txs`, in order, as one document (see `write_document`)."""
    return store.document(
        [
            store.create_write(tx, plan_create(tx.postings, params, pending=tx.pending, mode=mode))
            for tx in txs
        ]
    )


def check_written(tx: NewTransaction, outcome: str, failure: dict[str, Any] | None) -> None:
    """Raises the domain error for a write of `tx` (from `write_document`) that the
    ledger refused inside a use case's own SQL function, whose caller's rollback
    then undoes the rest; only a created transaction passes. (Its use case found its
    own id free, so a transaction already under `tx`'s derived id is not its own:
    that is a conflict, even with the same request hash.)"""
    done = store.Written(outcome=Outcome(outcome), row_id=None, failure=failure)
    if done.outcome == Outcome.REPLAY:
        done = msgspec.structs.replace(done, outcome=Outcome.CONFLICT)
    error = refusal(tx, done)
    if error is not None:
        raise error


# The ledger's operations, for use inside a use case's unit of work: none of them
# begins a transaction or retries.


async def create(
    conn: store.Conn,
    community: str,
    tx: NewTransaction,
    params: RuleParams,
    *,
    mode: LimitMode = "spend",
    reversal_of: str | None = None,
) -> tuple[Transaction, bool]:
    """Writes `tx` once; a replay of the same client id returns the original."""
    plan = plan_create(tx.postings, params, pending=tx.pending, mode=mode)
    [done] = await store.write(conn, community, [store.create_write(tx, plan)])
    return await settle(conn, community, tx, done, reversal_of)


async def write_new(
    conn: store.Conn,
    community: str,
    txs: Sequence[NewTransaction],
    params: RuleParams,
    *,
    mode: LimitMode = "spend",
) -> list[store.Written]:
    """Writes each of `txs` on its own, in one round trip: what became of each (a
    use case that explains refusals rather than raising them, as the rules do)."""
    if not txs:
        return []
    writes = [
        store.create_write(tx, plan_create(tx.postings, params, pending=tx.pending, mode=mode))
        for tx in txs
    ]
    return await store.write(conn, community, writes)


async def get_transactions(
    conn: store.Conn, community: str, client_ids: list[str]
) -> dict[str, Transaction]:
    """The transactions with these client ids, by client id (one round trip)."""
    found = await store.get_txs(conn, community, client_ids)
    return {client_id: tx for client_id, (tx, _) in found.items()}


async def get_transaction(conn: store.Conn, community: str, client_id: str) -> Transaction:
    tx, _ = await _fetch(conn, community, client_id)
    return tx


async def post(
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
    done, postings = await post_reserved(conn, community, tx.row_id, tx.reserved, amount)
    if done.outcome == Outcome.DONE:
        return msgspec.structs.replace(
            tx, status="posted", postings=postings, finalized_at=done.finalized_at
        ), False
    if done.outcome == Outcome.EXPIRED:
        raise InvalidState(
            f"transaction {client_id!r} expired at {tx.expires_at}; it is being voided"
        )
    return await post(conn, community, client_id, amount)  # finished meanwhile: read again


async def post_reserved(
    conn: store.Conn,
    community: str,
    row_id: int,
    reserved: tuple[Posting, ...],
    amount: int | None,
) -> tuple[store.Written, tuple[Posting, ...]]:
    """Posts pending transaction `row_id`, which reserved `reserved`, in full or for
    `amount`: what the engine says (`done` when this call posted it) and the
    postings made. For callers that already read the transaction."""
    plan, postings = plan_post_pending(reserved, amount)
    [done] = await store.write(conn, community, [store.finish_write(row_id, plan)])
    return done, postings


async def void(
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
    [done] = await store.write(
        conn, community, [store.finish_write(tx.row_id, plan, void_reason=reason)]
    )
    if done.outcome == Outcome.DONE:
        voided = msgspec.structs.replace(
            tx, status="voided", finalized_at=done.finalized_at, void_reason=reason
        )
        return voided, False
    return await void(conn, community, tx.client_id, reason)  # finished meanwhile


async def reverse(
    conn: store.Conn, community: str, client_id: str, params: RuleParams, actor: str | None
) -> tuple[Transaction, bool]:
    """Writes the transaction that undoes a posted one, at most once.

    A reversal may take a member below the baseline but not below the floor. (The
    API reverses through `rules.reversal`, which also uncounts what a rule posted.)
    """
    tx, _ = await _fetch(conn, community, client_id)
    reversal = await reversal_for(conn, community, tx, actor)
    return await create(conn, community, reversal, params, mode="floor", reversal_of=tx.client_id)


async def reversal_for(
    conn: store.Conn, community: str, tx: Transaction, actor: str | None
) -> NewTransaction:
    """The transaction that undoes `tx`, which must be posted; written with
    `mode="floor"` and `reversal_of=tx.client_id`."""
    if tx.status != "posted":
        raise InvalidState(
            f"transaction {tx.client_id!r} is {tx.status}; only a posted one can be reversed"
        )
    if any(
        p.source.startswith(INTERCHANGE) or p.destination.startswith(INTERCHANGE)
        for p in tx.postings
    ):
        # One side of a change between two communities: undone only with its other
        # side (a redemption's return), never alone (SPEC section 16).
        raise InvalidState(
            f"transaction {tx.client_id!r} is one side of a change between two communities; "
            "undo the change itself (a redemption's return), which undoes both sides"
        )
    return NewTransaction(
        client_id=f"{tx.client_id}:reversal",
        postings=reversed_postings(tx.postings),
        request_hash=b"reversal",
        kind="reversal",
        reason=i18n.reversal_reason(await i18n.community_language(conn, community), tx),
        actor=actor,
        reversal_of=tx.row_id,
        undoes=tx.row_id,
        rule_id=tx.rule_id,
        rule_version=tx.rule_version,
        event_id=tx.event_id,
    )


async def settle_row(
    conn: store.Conn, community: str, tx: NewTransaction, row: Any, reversal_of: str | None = None
) -> tuple[Transaction, bool]:
    """`settle` for the write of `tx` that a use case's own SQL function passed to
    `ledger_write`, from the row it returned (the columns of `ledger_written`)."""
    return await settle(conn, community, tx, store.written_of(row), reversal_of)


# The ledger's use cases, each its own unit of work: one writing statement that
# decides under its locks, so no BEGIN and COMMIT around it.


async def create_transaction(
    conn: store.Conn,
    community: str,
    tx: NewTransaction,
    params: RuleParams,
    *,
    mode: LimitMode = "spend",
) -> tuple[Transaction, bool]:
    return await unit_of_work(
        conn, lambda: create(conn, community, tx, params, mode=mode), atomic=False
    )


async def post_transaction(
    conn: store.Conn, community: str, client_id: str, amount: int | None
) -> tuple[Transaction, bool]:
    return await unit_of_work(conn, lambda: post(conn, community, client_id, amount), atomic=False)


async def void_transaction(
    conn: store.Conn, community: str, client_id: str, reason: str = "voided"
) -> tuple[Transaction, bool]:
    return await unit_of_work(conn, lambda: void(conn, community, client_id, reason), atomic=False)


async def expire_due(pool: asyncpg.Pool, now: datetime | None = None, limit: int = 500) -> int:
    """Voids pending transactions whose ttl has passed; safe to run in many processes."""
    now = now or datetime.now(UTC)
    voided = 0
    async with pool.acquire() as conn:
        for row in await store.pending_expired(conn, now, limit):
            community = row["community_id"]
            found = await store.get_tx(conn, community, row_id=row["id"])
            if found is None or found[0].status != "pending":
                continue
            tx = found[0]
            try:
                _, replayed = await unit_of_work(
                    conn, partial(_void, conn, community, tx, "expired"), atomic=False
                )
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
