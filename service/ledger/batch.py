"""Writing many transactions: the batch endpoint's use case, and single writes that
go through the process's coalescer."""

from __future__ import annotations

import asyncpg

from service.db import unit_of_work
from service.errors import DomainError, NotFound
from service.ledger import store
from service.ledger.coalescer import Coalescer
from service.ledger.model import NewTransaction, Outcome, RuleParams, Transaction
from service.ledger.posting import Plan, plan_create
from service.ledger.service import creation_view, refusal, settle, settle_new

Result = tuple[Transaction, bool] | DomainError


async def submit_one(
    coalescer: Coalescer, pool: asyncpg.Pool, community: str, tx: NewTransaction, params: RuleParams
) -> tuple[Transaction, bool]:
    """Writes one transaction as part of the process's next group commit."""
    plan = plan_create(tx.postings, params, pending=tx.pending)
    done = await coalescer.submit(community, tx, plan)
    if done.outcome != Outcome.REPLAY:
        return settle_new(tx, done)
    async with pool.acquire() as conn:  # to read the original of the replay
        return await settle(conn, community, tx, done)


def _item_error(index: int, error: DomainError) -> DomainError:
    return type(error)(f"item {index}: {error.detail}", index=index, **error.extra)


async def create_many(
    conn: store.Conn,
    community: str,
    txs: list[NewTransaction | DomainError],
    params: RuleParams,
    *,
    atomic: bool,
) -> list[Result]:
    """Each transaction applied or refused on its own, in one round trip; with
    `atomic`, all of them or none (the first refusal is raised, naming its index).
    An item may arrive already refused (it failed to decode)."""
    planned: list[tuple[NewTransaction, Plan] | DomainError] = []
    for item in txs:
        try:
            if isinstance(item, DomainError):
                raise item
            planned.append((item, plan_create(item.postings, params, pending=item.pending)))
        except DomainError as error:
            planned.append(error)
    first = next((i for i, p in enumerate(planned) if isinstance(p, DomainError)), None)
    if atomic and first is not None:
        refused = planned[first]
        assert isinstance(refused, DomainError)
        raise _item_error(first, refused)
    pairs = [p for p in planned if not isinstance(p, DomainError)]
    writes = [store.create_write(tx, plan) for tx, plan in pairs]
    if atomic:
        done = await unit_of_work(conn, lambda: _all_or_nothing(conn, community, pairs, writes))
    else:
        done = await unit_of_work(conn, lambda: store.write(conn, community, writes), atomic=False)
    return await _results(conn, community, planned, done)


async def _all_or_nothing(
    conn: store.Conn,
    community: str,
    pairs: list[tuple[NewTransaction, Plan]],
    writes: list[store.Write],
) -> list[store.Written]:
    """Inside its unit of work: a refusal raises, which rolls the whole batch back."""
    done = await store.write(conn, community, writes)
    for index, ((tx, _), result) in enumerate(zip(pairs, done, strict=True)):
        error = refusal(tx, result)
        if error is not None:
            raise _item_error(index, error)
    return done


async def _results(
    conn: store.Conn,
    community: str,
    planned: list[tuple[NewTransaction, Plan] | DomainError],
    created: list[store.Written],
) -> list[Result]:
    """Each item's result, in order. Only replays need the database (for the
    original), and they are read together, in one round trip."""
    txs = [item[0] for item in planned if not isinstance(item, DomainError)]
    replayed = [
        tx.client_id for tx, c in zip(txs, created, strict=True) if c.outcome == Outcome.REPLAY
    ]
    originals = await store.get_txs(conn, community, replayed) if replayed else {}
    outcomes = iter(created)
    results: list[Result] = []
    for item in planned:
        if isinstance(item, DomainError):
            results.append(item)
        else:
            results.append(_result(community, item[0], next(outcomes), originals))
    return results


def _result(
    community: str,
    tx: NewTransaction,
    created: store.Written,
    originals: dict[str, tuple[Transaction, bytes]],
) -> Result:
    if created.outcome == Outcome.REPLAY:
        found = originals.get(tx.client_id)
        if found is None:  # transactions are never deleted; kept as settle() says it
            return NotFound(f"no transaction {tx.client_id!r} in community {community!r}")
        return creation_view(found[0]), True
    try:
        return settle_new(tx, created)
    except DomainError as error:
        return error
