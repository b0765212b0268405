"""Sign-in links and the web app's server-side sessions (SPEC section 14).

A resident's link carries a one-time token (`<community>.<256 random bits>`, only
the bits' SHA-256 stored); staff paste their
API key once. Either is exchanged for a session: a random id in an HttpOnly
cookie, of which only the SHA-256 is stored, with a CSRF token every form of the
session must return. The session stands for the same `Principal` the API builds
from a key, so the app is authorised exactly as the API is. A staff session
names its key: revoking the key ends the session at its next request.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime
from typing import Final

import msgspec

from service import setup
from service.auth import KeyResolver, Principal, principal_of_key
from service.db import Conn, Queryable
from service.errors import Unauthorized, ValidationFailed
from service.keys import store as keys_store
from service.ledger.model import COMMUNITY_PATTERN
from service.sessions import store

LINK_TTL_MAX_S: Final = 24 * 3600
STAFF_SESSION_S: Final = 8 * 3600
RESIDENT_SESSION_S: Final = 14 * 24 * 3600
ENV_ADMIN: Final = "env-admin"
# A token or session id of any other shape is refused without a query.
_TOKEN_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class Session(msgspec.Struct, frozen=True, kw_only=True):
    principal: Principal
    csrf: str
    expires_at: datetime


class IssuedLink(msgspec.Struct, frozen=True, kw_only=True):
    token: str
    expires_at: datetime


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


_COMMUNITY: Final = re.compile(COMMUNITY_PATTERN)


def _plausible(token: str) -> bool:
    return 32 <= len(token) <= 64 and set(token) <= _TOKEN_CHARS


async def issue_link(
    conn: Conn, community: str, member: str, issuer: Principal, ttl_s: int
) -> IssuedLink:
    """A one-time sign-in link for `member`, valid `ttl_s` seconds (at most 24 h)."""
    if not 60 <= ttl_s <= LINK_TTL_MAX_S:
        raise ValidationFailed(f"ttl_s must be between 60 and {LINK_TTL_MAX_S}")
    await setup.get_member(conn, community, member)
    return await _insert_link(conn, community, member, None, issuer.key_id, ttl_s)


async def issue_staff_link(conn: Queryable, community: str, key_id: str, ttl_s: int) -> IssuedLink:
    """A one-time link that opens a session for API key `key_id` (the demo prints
    these for its staff, so nobody has to copy a key)."""
    return await _insert_link(conn, community, None, key_id, "demo", ttl_s)


async def _insert_link(
    conn: Queryable,
    community: str,
    member: str | None,
    key_id: str | None,
    issued_by: str,
    ttl_s: int,
) -> IssuedLink:
    secret = secrets.token_urlsafe(32)
    expires_at = await store.insert_link(
        conn, community, secrets.token_hex(8), _digest(secret), member, key_id, issued_by, ttl_s
    )
    return IssuedLink(token=f"{community}.{secret}", expires_at=expires_at)


async def _open(
    conn: Queryable, principal: Principal, key_id: str | None, link_id: str | None, ttl_s: int
) -> str:
    token = secrets.token_urlsafe(32)
    await store.insert_session(
        conn,
        _digest(token),
        principal.role,
        key_id,
        principal.community,
        principal.member,
        link_id,
        secrets.token_urlsafe(24),
        ttl_s,
    )
    return token


class Opened(msgspec.Struct, frozen=True, kw_only=True):
    """A new session: the cookie's value, whose session it is, and for how long."""

    token: str
    role: str
    ttl_s: int


async def open_with_key(conn: Queryable, resolver: KeyResolver, key: str) -> Opened:
    """A session for the holder of API key `key` (401 if it is not a valid key)."""
    principal = await resolver.resolve(conn, f"Bearer {key.strip()}")
    # The environment's admin key has no row: the session names a digest of it, so
    # that changing LEDGER_ADMIN_KEY ends the sessions opened with the old one.
    key_id = admin_session_id(key.strip()) if principal.key_id == ENV_ADMIN else principal.key_id
    token = await _open(conn, principal, key_id, None, STAFF_SESSION_S)
    return Opened(token=token, role=principal.role, ttl_s=STAFF_SESSION_S)


async def open_with_link(conn: Queryable, token: str) -> Opened:
    """A session for a sign-in link's token, which is then used up: a resident's,
    or a staff link's key's (refused if the key was revoked since)."""
    community, _, secret = token.strip().partition(".")
    plausible = _COMMUNITY.fullmatch(community) is not None and _plausible(secret)
    row = await store.use_link(conn, community, _digest(secret)) if plausible else None
    if row is None:
        raise Unauthorized("this sign-in link is not valid, was already used or has expired")
    if row["key_id"] is not None:
        key = await keys_store.get_key(conn, row["key_id"])
        if key is None:
            raise Unauthorized("the key of this sign-in link was revoked")
        staff = principal_of_key(key["id"], key)
        opened = await _open(conn, staff, key["id"], row["id"], STAFF_SESSION_S)
        return Opened(token=opened, role=staff.role, ttl_s=STAFF_SESSION_S)
    resident = Principal(
        key_id=f"link-{row['id']}",
        role="resident",
        community=row["community_id"],
        member=row["member_id"],
    )
    opened = await _open(conn, resident, None, row["id"], RESIDENT_SESSION_S)
    return Opened(token=opened, role="resident", ttl_s=RESIDENT_SESSION_S)


def admin_session_id(admin_key: str | None) -> str | None:
    """What a session opened with the environment's admin key records of it: a
    digest, never the key (None when no admin key is configured)."""
    if not admin_key:
        return None
    return f"{ENV_ADMIN}:{hashlib.sha256(admin_key.encode()).hexdigest()[:32]}"


async def resolve(conn: Queryable, token: str | None, admin_key: str | None) -> Session | None:
    """The live session `token` names, or None (unknown, ended, expired, its key
    revoked, or opened with an admin key that is no longer LEDGER_ADMIN_KEY)."""
    if not token or not _plausible(token):
        return None
    row = await store.get_session(conn, _digest(token))
    if row is None:
        return None
    if row["key_id"] is None:
        key_id = f"link-{row['link_id']}"
    elif row["key_id"].startswith(f"{ENV_ADMIN}:"):
        if row["key_id"] != admin_session_id(admin_key):
            return None
        key_id = ENV_ADMIN
    elif row["live_key"] is None:
        return None  # the key was revoked
    else:
        key_id = row["key_id"]
    principal = principal_of_key(key_id, row)
    return Session(principal=principal, csrf=row["csrf"], expires_at=row["expires_at"])


async def end(conn: Queryable, token: str | None) -> None:
    if token and _plausible(token):
        await store.end_session(conn, _digest(token))


async def purge(conn: Queryable) -> None:
    """Deletes sessions ended or expired a week ago and links expired a month ago."""
    await store.purge(conn)
