"""A member's lots (SPEC section 9): what its points and minutes are made of, and
when each part expires."""

from __future__ import annotations

from typing import Annotated, Any, Final

from litestar import Request, get
from litestar.params import FromPath, FromQuery, QueryParameter

from service.api.deps import READ_MEMBER, db
from service.api.setup import may_read
from service.ledger import lots
from service.ledger.model import Asset

Req = Request[Any, Any, Any]


@get("/v1/communities/{c:str}/members/{m:str}/lots", opt={"roles": READ_MEMBER})
async def member_lots(
    request: Req,
    c: FromPath[str],
    m: FromPath[str],
    asset: FromQuery[Asset] = "points",
    status: FromQuery[lots.LotStatus] = "open",
    cursor: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=lots.MAX_LIMIT)] = 100,
) -> lots.LotPage:
    """The member's lots in the order debits consume them: soonest `expires_at`
    first, non-expiring last, then oldest `earned_at`, then lowest id. `open`: the
    lots with something remaining; `all`: spent and expired ones too."""
    async with db(request) as conn:
        await may_read(request, conn, c, m)
        return await lots.lots_page(
            conn, c, m, asset=asset, status=status, cursor=cursor, limit=limit
        )


HANDLERS: Final = [member_lots]
