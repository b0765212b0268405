"""Time bank endpoints (volunteer apps, residents, operators): time transfers and
conversions of minutes to points."""

from __future__ import annotations

from typing import Any, Final

from litestar import Request, Response, post
from litestar.params import FromPath

from service.api.deps import body, fingerprint, pool_of, principal_of, rules_of, written
from service.api.wire import Amount, ClientId, Strict, Text
from service.errors import Forbidden
from service.ledger.batch import submit_one
from service.ledger.views import TransactionOut, transaction_out
from service.timebank import service as timebank

Req = Request[Any, Any, Any]
TRANSFERS: Final = frozenset({"operator", "volunteer_app", "resident"})


class TimeTransferIn(Strict):
    id: ClientId
    from_member: ClientId
    to_member: ClientId
    minutes: Amount
    memo: Text | None = None


class ConversionIn(Strict):
    id: ClientId
    member: ClientId
    minutes: Amount


@post("/v1/communities/{c:str}/time-transfers", opt={"roles": TRANSFERS})
async def create_time_transfer(request: Req, c: FromPath[str]) -> Response[TransactionOut]:
    """Moves minutes between two members; a resident key gives only its own."""
    data = await body(request, TimeTransferIn)
    principal = principal_of(request)
    if principal.role == "resident" and principal.member != data.from_member:
        raise Forbidden("a resident key may only give its own member's minutes")
    new = timebank.time_transfer(
        data.id,
        data.from_member,
        data.to_member,
        data.minutes,
        data.memo,
        fingerprint(data),
        principal.key_id,
    )
    pool = pool_of(request)
    params = await rules_of(request).params(pool, c)
    tx, replayed = await submit_one(request.app.state.coalescer, pool, c, new, params)
    return written(transaction_out(tx), replayed)


@post("/v1/communities/{c:str}/conversions", opt={"roles": frozenset({"operator"})})
async def create_conversion(request: Req, c: FromPath[str]) -> Response[TransactionOut]:
    """Converts a member's minutes to points at the rate of the rule set in force."""
    data = await body(request, ConversionIn)
    pool = pool_of(request)
    book = rules_of(request)
    active = await book.active(pool, c)
    new = timebank.conversion(
        data.id,
        data.member,
        data.minutes,
        active.rule_set.time_bank.points_per_hour,
        active.version,
        fingerprint(data),
        principal_of(request).key_id,
    )
    params = active.rule_set.to_params()
    tx, replayed = await submit_one(request.app.state.coalescer, pool, c, new, params)
    return written(transaction_out(tx), replayed)


HANDLERS: Final = [create_time_transfer, create_conversion]
