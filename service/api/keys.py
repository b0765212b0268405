"""API keys: issue and revoke (admins everywhere, operators in their community)."""

from __future__ import annotations

from typing import Any, Final

from litestar import Request, Response, delete, post
from litestar.params import FromPath

from service import auth
from service.api.deps import body, db, principal_of
from service.api.openapi import json_body
from service.api.wire import ApiKeyIn, ApiKeyOut
from service.errors import Forbidden

KEY_ADMINS: Final = frozenset({"operator"})
Req = Request[Any, Any, Any]


@post("/v1/api-keys", opt={"roles": KEY_ADMINS}, operation_class=json_body(ApiKeyIn))
async def create_key(request: Req) -> Response[ApiKeyOut]:
    """Issues a key; its secret appears in this response only."""
    data = await body(request, ApiKeyIn)
    caller = principal_of(request)
    scope = auth.Principal(
        key_id=auth.new_key_id(),
        role=data.role,
        community=data.community,
        property_company=data.property_company,
        store=data.store,
        member=data.member,
        teams=None if data.teams is None else tuple(sorted(set(data.teams))),
        district=data.district,
    )
    auth.check_scope_fields(scope)
    if caller.role != "admin" and (
        data.role in ("admin", "district_operator") or data.community != caller.community
    ):
        raise Forbidden("an operator issues non-admin keys for its own community only")
    key, secret_hash = auth.new_key(scope)
    async with db(request) as conn:
        await auth.issue(conn, scope, secret_hash, caller.key_id)
    out = ApiKeyOut(
        id=scope.key_id,
        key=key,
        role=scope.role,
        community=scope.community,
        property_company=scope.property_company,
        store=scope.store,
        member=scope.member,
        teams=None if scope.teams is None else list(scope.teams),
        district=scope.district,
    )
    return Response(out, status_code=201, headers={"Cache-Control": "no-store"})


@delete("/v1/api-keys/{key_id:str}", opt={"roles": KEY_ADMINS}, status_code=204)
async def revoke_key(request: Req, key_id: FromPath[str]) -> None:
    caller = principal_of(request)
    async with db(request) as conn:
        await auth.revoke(conn, key_id, caller)
    request.app.state.key_resolver.forget(key_id)
