"""Proxies (亲情代理, SPEC section 11): granted, revoked and listed by an operator or
by the member's own resident key; never by a proxy."""

from __future__ import annotations

from typing import Annotated, Any, Final

from litestar import Request, delete, get, put
from litestar.params import FromPath
from msgspec import Meta

from service.api.deps import body, db, principal_of
from service.api.openapi import json_body
from service.api.wire import Strict
from service.people import service as people

Req = Request[Any, Any, Any]
MANAGERS: Final = frozenset({"operator", "resident"})
ProxyPath = "/v1/communities/{c:str}/members/{m:str}/proxies/{p:str}"


class ProxyIn(Strict):
    scopes: Annotated[list[people.Scope], Meta(min_length=1, max_length=3)]


@put(ProxyPath, opt={"roles": MANAGERS}, operation_class=json_body(ProxyIn), status_code=200)
async def grant_proxy(
    request: Req, c: FromPath[str], m: FromPath[str], p: FromPath[str]
) -> people.Proxy:
    """Grants member `p` the scopes for member `m`, replacing a grant in force or
    granting again after a revocation; 200 with the grant."""
    principal = principal_of(request)
    async with db(request) as conn:
        await people.only_itself(conn, principal, c, m, "grant proxies")
        data = await body(request, ProxyIn)
        return await people.grant(conn, c, m, p, data.scopes, principal.key_id)


@delete(ProxyPath, opt={"roles": MANAGERS}, status_code=200)
async def revoke_proxy(
    request: Req, c: FromPath[str], m: FromPath[str], p: FromPath[str]
) -> people.Proxy:
    """Revokes the grant at once; 200 with it, `revoked_at` and `revoked_by` set."""
    principal = principal_of(request)
    async with db(request) as conn:
        await people.only_itself(conn, principal, c, m, "revoke proxies")
        return await people.revoke(conn, c, m, p, principal.key_id)


@get("/v1/communities/{c:str}/members/{m:str}/proxies", opt={"roles": MANAGERS})
async def list_proxies(request: Req, c: FromPath[str], m: FromPath[str]) -> people.Proxies:
    """The grants in force for `m`, by proxy id: for operators, `m` itself, and its
    proxies that may read for it."""
    async with db(request) as conn:
        await people.acting_for(conn, principal_of(request), c, m, "read")
        return await people.proxies_of(conn, c, m)


HANDLERS: Final = [grant_proxy, revoke_proxy, list_proxies]
