"""What every controller shares: authorisation, strict body decoding, responses."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Annotated, Any, Final, TypeVar

import msgspec
from litestar import Litestar, Request, Response
from litestar.connection import ASGIConnection
from litestar.params import QueryParameter
from litestar.routes import HTTPRoute

from service import setup
from service.auth import KeyResolver, Principal, require
from service.db import Conn, Pool, Queryable
from service.errors import InsufficientPoints, Unauthorized, ValidationFailed
from service.inbound import check_json
from service.ledger.model import COMMUNITY_PATTERN
from service.ratelimit import Limits
from service.rules.book import RuleBook

T = TypeVar("T")

OPERATOR: Final = frozenset({"operator"})
READ_MEMBER: Final = frozenset({"operator", "property", "resident"})
_COMMUNITY = re.compile(COMMUNITY_PATTERN)


# Timestamps in query parameters are RFC 3339 with an offset (SPEC), as in bodies.
# Litestar would read `0` as Unix time and a time without an offset as UTC, so they
# arrive as text and `instant` parses them.
_AWARE = Annotated[datetime, msgspec.Meta(tz=True)]
_INSTANT_HELP: Final = "An RFC 3339 timestamp with an offset, e.g. 2026-11-23T09:30:00+08:00."


def _instant_param(name: str | None = None) -> Any:
    return QueryParameter(name=name, format="date-time", description=_INSTANT_HELP)


InstantQuery = Annotated[str | None, _instant_param()]
FromQueryInstant = Annotated[str | None, _instant_param("from")]
ToQueryInstant = Annotated[str | None, _instant_param("to")]


def instant(value: str | None, name: str) -> datetime | None:
    """A timestamp query parameter (`InstantQuery` and the like), or 422."""
    if value is None:
        return None
    try:
        return msgspec.convert(value, _AWARE)
    except msgspec.ValidationError as err:
        raise ValidationFailed(
            f"{name} must be an RFC 3339 timestamp with an offset, e.g. 2026-11-23T09:30:00+08:00"
        ) from err


def pool_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Pool:
    pool: Pool = connection.app.state.pool
    return pool


def db(request: Request[Any, Any, Any]) -> AbstractAsyncContextManager[Conn]:
    """`async with db(request) as conn`: a pooled connection for the request (the
    pool's own context manager: a generator-based wrapper costs a coroutine more)."""
    acquired: AbstractAsyncContextManager[Conn] = pool_of(request).acquire()
    return acquired


async def authorize(request: Request[Any, Any, Any]) -> None:
    """Runs before every /v1 handler (the router's `before_request` hook): a valid
    key whose role the route allows, in scope.

    Routes say who may call them with `opt={"roles": …}`; a route that says
    nothing is for admins only, so a forgotten declaration fails closed. A hook
    rather than a guard because Litestar copies the route handler for every guard
    call, a tenth of a balance read's CPU; `check_authorized` makes the app refuse
    to start if any /v1 handler would not run this hook.
    """
    community = request.path_params.get("c")
    state = request.app.state
    resolver: KeyResolver = state.key_resolver
    limits: Limits = state.limits
    header = _authorization(request.scope["headers"])
    address = address_of(request.scope)
    limits.admit(address, header)
    try:
        principal = await resolver.resolve(state.pool, header)
    except Unauthorized:
        limits.failed(address, header)
        raise
    # Only a district's routes are scoped by their `{d}` (a webhook delivery's is not).
    district = (
        request.path_params.get("d") if request.scope["path"].startswith(_DISTRICTS) else None
    )
    require(principal, request.route_handler.opt.get("roles", frozenset()), community, district)
    if request.scope["method"] in _WRITES:
        limits.write(principal.key_id)
    if community is not None:
        if not _COMMUNITY.match(community):
            raise ValidationFailed("community id must match [a-z0-9-]{1,64}")
        await _community_exists(state.known_communities, state.pool, community)
    request.state.principal = principal


_WRITES: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DISTRICTS: Final = "/v1/districts/"


def address_of(scope: Any) -> str:
    """The client's address (uvicorn takes it from X-Forwarded-For only when the
    peer is a trusted proxy, `--forwarded-allow-ips`)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _authorization(headers: Any) -> str | None:
    """The Authorization header, straight from the ASGI scope (names are lower case)."""
    for name, value in headers:
        if name == b"authorization":
            return str(value.decode("latin-1"))
    return None


def check_authorized(app: Litestar, prefix: str = "/v1") -> None:
    """Refuses to start if a route under `prefix` could skip `authorize`: hooks do
    not add up across layers (the closest one wins), so a handler that set its own
    `before_request` would be open to anyone; hooks run only for HTTP routes, so a
    WebSocket or mounted ASGI route would be too; and a cached response is served
    before the hook runs."""
    for route in app.routes:
        if route.path != prefix and not route.path.startswith(prefix + "/"):
            continue
        if not isinstance(route, HTTPRoute):
            raise RuntimeError(f"{route.path} is not an HTTP route; authorize() would not run")
        for handler in route.route_handlers:
            if handler.resolve_before_request() is not authorize:
                raise RuntimeError(f"{route.path} would not run authorize(); refusing to start")
            if handler.cache:
                raise RuntimeError(f"{route.path} caches responses, served before authorize()")


async def _community_exists(known: set[str], pool: Pool, community: str) -> None:
    """404 for an unknown community. Communities are never deleted, so once seen
    one is remembered for the life of the process (and costs no round trip)."""
    if community in known:
        return
    await setup.get_community(pool, community)
    known.add(community)


def rules_of(connection: ASGIConnection[Any, Any, Any, Any]) -> RuleBook:
    book: RuleBook = connection.app.state.rules
    return book


async def explaining(conn: Queryable, community: str, write: Awaitable[T]) -> T:
    """`write`'s result; a refusal for want of points or minutes on a closed member's
    account is raised as `member_closed` (setup.explained: one read, on refusals only)."""
    try:
        return await write
    except InsufficientPoints as err:
        raise await setup.explained(conn, community, err) from None


def principal_of(request: Request[Any, Any, Any]) -> Principal:
    principal: Principal = request.state.principal
    return principal


async def body(request: Request[Any, Any, Any], type_: type[T]) -> T:
    """Decodes a JSON body strictly: integers stay integers, unknown fields are refused.
    `check_json` first, so that no decoder sees invalid UTF-8, NUL or deep nesting."""
    raw = await request.body()
    check_json(raw)
    try:
        return msgspec.json.decode(raw, type=type_, strict=True)
    except msgspec.ValidationError as err:
        raise ValidationFailed(str(err)) from err
    except msgspec.DecodeError as err:
        raise ValidationFailed(f"the body is not valid JSON: {err}") from err


def fingerprint(value: Any) -> bytes:
    """A digest of a request that ignores key order, to recognise replays."""
    return hashlib.blake2b(msgspec.json.encode(value, order="sorted"), digest_size=16).digest()


def fingerprint_since(value: Any, *added: str) -> bytes:
    """`fingerprint(value)` as it was before its optional fields `added` existed
    when they are unset, so that a repeat of a request made before still replays."""
    fields = msgspec.structs.asdict(value)
    for name in added:
        if fields[name] is None:
            del fields[name]
    return fingerprint(fields)


def written(content: Any, replayed: bool) -> Response[Any]:
    """201 for a new resource; 200 and `Idempotent-Replayed: true` for a replay."""
    return changed(content, replayed) if replayed else Response(content, status_code=201)


def changed(content: Any, replayed: bool) -> Response[Any]:
    """200 for a change of state (post, void, approve, …); a repeat of one already
    made is marked `Idempotent-Replayed: true`."""
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    return Response(content, status_code=200, headers=headers)
