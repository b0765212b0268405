"""Low-level ledger endpoints: transactions, accounts, audit (operators, integrations)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery, QueryParameter

from service import setup
from service.api.deps import (
    OPERATOR,
    InstantQuery,
    body,
    changed,
    db,
    explaining,
    fingerprint,
    instant,
    pool_of,
    principal_of,
    rules_of,
    written,
)
from service.api.openapi import json_body
from service.api.problems import domain_problem
from service.api.wire import (
    BatchDoc,
    BatchIn,
    BatchOut,
    ItemResult,
    LotIn,
    PostIn,
    TransactionIn,
    postings_in,
)
from service.errors import DomainError, ValidationFailed
from service.ledger import audit, reads
from service.ledger import service as ledger
from service.ledger.batch import Result, create_many, submit_one
from service.ledger.model import NewTransaction
from service.ledger.views import TransactionOut, transaction_out
from service.rules import reversal as reversals

Req = Request[Any, Any, Any]
TxPath = "/v1/communities/{c:str}/transactions/{tx:str}"
_MAX_METADATA_BYTES = 4096


def _new_transaction(data: TransactionIn, actor: str) -> NewTransaction:
    if data.metadata is not None and len(msgspec.json.encode(data.metadata)) > _MAX_METADATA_BYTES:
        raise ValidationFailed(f"metadata is larger than {_MAX_METADATA_BYTES} bytes")
    return NewTransaction(
        client_id=data.id,
        postings=postings_in(data.postings),
        request_hash=fingerprint(data),
        pending=data.pending is not None,
        ttl_s=data.pending.ttl_s if data.pending else None,
        memo=data.memo,
        metadata=data.metadata,
        actor=actor,
        **_lot_terms(data.lot),
    )


def _lot_terms(lot: LotIn | None) -> dict[str, Any]:
    if lot is None:
        return {}
    for name, at in (("earned_at", lot.earned_at), ("expires_at", lot.expires_at)):
        if at is not None and at.tzinfo is None:
            raise ValidationFailed(f"lot.{name} needs a time zone offset")
    if lot.earned_at is not None and lot.earned_at > datetime.now(UTC):
        raise ValidationFailed("lot.earned_at is in the future")
    if lot.earned_at and lot.expires_at and lot.expires_at <= lot.earned_at:
        raise ValidationFailed("lot.expires_at must be after lot.earned_at")
    expires = None if lot.expires_at is None else f"at:{lot.expires_at.isoformat()}"
    return {"lot_earned_at": lot.earned_at, "lot_expires": expires}


@post(
    "/v1/communities/{c:str}/transactions",
    opt={"roles": OPERATOR},
    operation_class=json_body(TransactionIn),
)
async def create_transaction(request: Req, c: FromPath[str]) -> Response[TransactionOut]:
    """Posts a balanced transaction, or reserves it when `pending` is given."""
    new = _new_transaction(await body(request, TransactionIn), principal_of(request).key_id)
    pool = pool_of(request)
    params = await rules_of(request).params(pool, c)
    write = submit_one(request.app.state.coalescer, pool, c, new, params)
    tx, replayed = await explaining(pool, c, write)
    return written(transaction_out(tx), replayed)


def _decode_item(raw: msgspec.Raw, actor: str) -> NewTransaction | DomainError:
    try:
        return _new_transaction(msgspec.json.decode(raw, type=TransactionIn, strict=True), actor)
    except msgspec.ValidationError as err:
        return ValidationFailed(str(err))
    except DomainError as err:
        return err


def _item_result(result: Result) -> ItemResult:
    if isinstance(result, DomainError):
        return ItemResult(status=result.status, transaction=None, problem=domain_problem(result))
    tx, replayed = result
    return ItemResult(
        status=200 if replayed else 201, transaction=transaction_out(tx), problem=None
    )


@post(
    "/v1/communities/{c:str}/transactions:batch",
    opt={"roles": OPERATOR},
    status_code=200,
    operation_class=json_body(BatchDoc),
)
async def create_batch(request: Req, c: FromPath[str]) -> BatchOut:
    """Up to 1000 transactions in one request, each applied or refused on its own
    (a result per item, in order), or with `atomic: true` all or none."""
    data = await body(request, BatchIn)
    actor = principal_of(request).key_id
    decoded = [_decode_item(raw, actor) for raw in data.transactions]
    async with db(request) as conn:
        params = await rules_of(request).params(conn, c)
        items = await setup.refusing_closed(conn, c, decoded)  # each on its own: member_closed
        results = await create_many(conn, c, items, params, atomic=data.atomic)
    return BatchOut(results=[_item_result(r) for r in results])


@get(TxPath, opt={"roles": OPERATOR})
async def get_transaction(request: Req, c: FromPath[str], tx: FromPath[str]) -> TransactionOut:
    async with db(request) as conn:
        return await reads.transaction(conn, c, tx)


@post(TxPath + "/post", opt={"roles": OPERATOR}, operation_class=json_body(PostIn, required=False))
async def post_transaction(
    request: Req, c: FromPath[str], tx: FromPath[str]
) -> Response[TransactionOut]:
    """Posts a pending transaction, in full or for a smaller `amount`."""
    raw = await request.body()
    amount = (await body(request, PostIn)).amount if raw.strip() else None
    async with db(request) as conn:
        done, replayed = await ledger.post_transaction(conn, c, tx, amount)
    return changed(transaction_out(done), replayed)


@post(TxPath + "/void", opt={"roles": OPERATOR})
async def void_transaction(
    request: Req, c: FromPath[str], tx: FromPath[str]
) -> Response[TransactionOut]:
    async with db(request) as conn:
        done, replayed = await ledger.void_transaction(conn, c, tx)
    return changed(transaction_out(done), replayed)


@post(TxPath + "/reverse", opt={"roles": OPERATOR})
async def reverse_transaction(
    request: Req, c: FromPath[str], tx: FromPath[str]
) -> Response[TransactionOut]:
    """Writes the transaction that undoes a posted one; reversing twice is a replay.
    A rule's award or deduction leaves the statistics and the usage it counted in."""
    async with db(request) as conn:
        book = rules_of(request)
        params = await book.params(conn, c)
        actor = principal_of(request).key_id
        reversal, replayed = await reversals.reverse_transaction(conn, book, c, tx, params, actor)
    return written(transaction_out(reversal), replayed)


@get("/v1/communities/{c:str}/accounts/{address:str}", opt={"roles": OPERATOR})
async def get_account(
    request: Req, c: FromPath[str], address: FromPath[str], as_of: InstantQuery = None
) -> reads.AccountBalance:
    at = instant(as_of, "as_of")
    async with db(request) as conn:
        return await reads.account_balance(conn, c, address, at)


@get("/v1/communities/{c:str}/accounts/{address:str}/entries", opt={"roles": OPERATOR})
async def account_entries(
    request: Req,
    c: FromPath[str],
    address: FromPath[str],
    cursor: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
) -> reads.EntryPage:
    async with db(request) as conn:
        return await reads.entries_page(conn, c, address, cursor=cursor, limit=limit)


@get("/v1/communities/{c:str}/audit/verify", opt={"roles": OPERATOR})
async def verify(request: Req, c: FromPath[str]) -> audit.AuditReport:
    """Recomputes every invariant of the community's ledger."""
    async with db(request) as conn:
        return await audit.verify(conn, c, await rules_of(request).params(conn, c))
