"""Proxies (亲情代理, SPEC section 11): member p's resident key acting for member m.

Member m (its resident key) or an operator grants p the scopes `read` (m's balance,
statement and lots), `spend` (m's spend codes and mandates) and `time` (giving m's
minutes); either may revoke the grant. Every act a resident key makes for a member
goes through `acting_for`, which answers what that act records as `on_behalf_of`.
A resident that is not m's proxy learns nothing of m: it is told m does not exist,
exactly as for a member that does not.

A grant is one row per (member, proxy): a new PUT replaces its scopes (and, after a
revocation, grants again); a DELETE revokes it, recording who did.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

import asyncpg
import msgspec

from service import setup
from service.auth import Principal
from service.db import Conn, Queryable
from service.errors import Forbidden, NotFound, ValidationFailed
from service.people import store

Scope = Literal["read", "spend", "time"]
SCOPES: Final[tuple[Scope, ...]] = ("read", "spend", "time")


class Proxy(msgspec.Struct, frozen=True, kw_only=True):
    member: str
    proxy: str
    scopes: list[Scope]
    granted_by: str
    granted_at: datetime
    revoked_at: datetime | None = None
    revoked_by: str | None = None


class Proxies(msgspec.Struct, frozen=True, kw_only=True):
    proxies: list[Proxy]


def _unknown(community: str, member: str) -> NotFound:
    return NotFound(f"no member {member!r} in community {community!r}")


def _proxy(row: asyncpg.Record) -> Proxy:
    return Proxy(
        member=row["member_id"],
        proxy=row["proxy_id"],
        scopes=msgspec.convert(row["scopes"], list[Scope]),
        granted_by=row["granted_by"],
        granted_at=row["granted_at"],
        revoked_at=row["revoked_at"],
        revoked_by=row["revoked_by"],
    )


async def _held_scopes(
    conn: Queryable, principal: Principal, community: str, member: str
) -> list[str] | None:
    """For a resident key of another member than `member`: the scopes its member
    holds for `member` now (None: none); refused outside the key's community, whose
    member ids name other people."""
    if principal.community != community:
        raise Forbidden(f"this key acts only in community {principal.community!r}")
    assert principal.member is not None  # a resident key names its member
    return await store.proxy_scopes(conn, community, member, principal.member)


async def acting_for(
    conn: Queryable,
    principal: Principal,
    community: str,
    member: str,
    scope: Literal["read", "spend", "time"],
) -> str | None:
    """Whom a resident key acts for when it acts for `member`: None for itself (and
    for every other role, whose own checks apply); `member` when the key's member is
    `member`'s proxy with `scope` (record it as `on_behalf_of`, the key as `actor`).
    A resident that is no proxy of `member` is told there is no such member (404), so
    it cannot probe which exist; a proxy without `scope` is 403. One query by the
    primary key, and only for a resident acting for another member."""
    if principal.role != "resident":
        return None
    if principal.member == member and principal.community == community:
        return None
    scopes = await _held_scopes(conn, principal, community, member)
    if scopes is None:
        raise _unknown(community, member)
    if scope not in scopes:
        raise Forbidden(f"this key's member is a proxy of {member!r} but has no {scope!r} scope")
    return member


async def only_itself(
    conn: Queryable, principal: Principal, community: str, member: str, what: str
) -> None:
    """For what only `member`'s own resident key (or an operator) may do, never a
    proxy: managing `member`'s proxies, its leaderboard choice. A proxy of `member`
    is 403 (`what` says what it may not do); another resident is 404 as in
    `acting_for`."""
    if principal.role != "resident":
        return
    if principal.member == member and principal.community == community:
        return
    if await _held_scopes(conn, principal, community, member) is None:
        raise _unknown(community, member)
    raise Forbidden(f"a proxy of {member!r} may not {what}")


def scopes_of(requested: list[Scope]) -> list[Scope]:
    """The scopes granted, each once, in their fixed order."""
    return [s for s in SCOPES if s in requested]


async def grant(
    conn: Conn, community: str, member: str, proxy: str, scopes: list[Scope], actor: str
) -> Proxy:
    """Grants `proxy` `scopes` for `member` (replacing the scopes of a grant in force,
    or granting again after a revocation). A member is not its own proxy (422); an
    unknown member or proxy is 404."""
    if proxy == member:
        raise ValidationFailed("a member cannot be its own proxy")
    if not scopes:
        raise ValidationFailed("scopes must name at least one of 'read', 'spend', 'time'")
    try:
        row = await store.grant(conn, community, member, proxy, scopes_of(scopes), actor)
    except asyncpg.ForeignKeyViolationError as err:
        unknown = proxy if "proxy_id" in (err.constraint_name or "") else member
        raise _unknown(community, unknown) from err
    return _proxy(row)


async def revoke(conn: Conn, community: str, member: str, proxy: str, actor: str) -> Proxy:
    """Revokes `proxy`'s grant for `member` at once; 404 when none is in force."""
    row = await store.revoke(conn, community, member, proxy, actor)
    if row is None:
        raise NotFound(f"{proxy!r} is not a proxy of {member!r} in community {community!r}")
    return _proxy(row)


async def proxies_of(conn: Conn, community: str, member: str) -> Proxies:
    """The grants in force for `member`; 404 for an unknown member."""
    rows = await store.proxies_of(conn, community, member)
    if not rows:
        await setup.get_member(conn, community, member)  # 404 if there is no such member
    return Proxies(proxies=[_proxy(r) for r in rows])


async def represented_by(conn: Queryable, community: str, proxy: str) -> Proxies:
    """The grants in force that member `proxy` holds: whom it may act for, and how."""
    return Proxies(proxies=[_proxy(r) for r in await store.proxies_held_by(conn, community, proxy)])
