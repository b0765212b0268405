"""Writing many transactions: the batch endpoint's use case, and single writes that
go through the process's coalescer."""

from __future__ import annotations

import asyncpg

from service.db import retrying
from service.errors import DomainError, NotFound
from service.ledger import store
from service.ledger.coalescer import Coalescer
from service.ledger.model import NewTransaction, RuleParams, Transaction
from service.ledger.posting import Plan, plan_create
from service.ledger.service import creation_view, refusal, settle, settle_new

Result = tuple[Transaction, bool] | DomainError


async def submit_one(
    coalescer: Coalescer, pool: asyncpg.Pool, community: str, tx: NewTransaction, params: RuleParams
) -> tuple[Transaction, bool]:
    """Writes one transaction as part of the process's next group commit."""
    plan = plan_create(tx.postings, params, pending=tx.pending)
    created = await coalescer.submit(community, tx, plan)
    if created.outcome != "replay":
        return settle_new(tx, created)
    async with pool.acquire() as conn:  # to read the original of the replay
        return await settle(conn, community, tx, created)


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
    if atomic:
        created = await retrying(lambda: _all_or_nothing(conn, community, pairs))
    else:
        created = await retrying(lambda: store.create_batch(conn, community, pairs), conn=conn)
    return await _results(conn, community, planned, created)


async def _all_or_nothing(
    conn: store.Conn, community: str, pairs: list[tuple[NewTransaction, Plan]]
) -> list[store.Created]:
    async with conn.transaction():
        created = await store.create_batch(conn, community, pairs)
        for index, ((tx, _), result) in enumerate(zip(pairs, created, strict=True)):
            error = refusal(tx, result)
            if error is not None:
                raise _item_error(index, error)  # rolls the whole batch back
    return created


async def _results(
    conn: store.Conn,
    community: str,
    planned: list[tuple[NewTransaction, Plan] | DomainError],
    created: list[store.Created],
) -> list[Result]:
    """Each item's result, in order. Only replays need the database (for the
    original), and they are read together, in one round trip."""
    txs = [item[0] for item in planned if not isinstance(item, DomainError)]
    replayed = [tx.client_id for tx, c in zip(txs, created, strict=True) if c.outcome == "replay"]
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
    created: store.Created,
    originals: dict[str, tuple[Transaction, bytes]],
) -> Result:
    if created.outcome == "replay":
        found = originals.get(tx.client_id)
        if found is None:  # transactions are never deleted; kept as settle() says it
            return NotFound(f"no transaction {tx.client_id!r} in community {community!r}")
        return creation_view(found[0]), True
    try:
        return settle_new(tx, created)
    except DomainError as error:
        return error
