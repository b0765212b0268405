"""API keys: issuing, hashing, resolving a bearer key to a principal, scope checks
(their SQL: `service/keys/store.py`).

A key reads `plk_<id>_<secret>`. Only SHA-256 of the secret is stored (the secret
is 256 random bits, so a slow hash adds nothing). Resolved keys are cached per
process for `key_cache_ttl_s`; a revocation takes effect at once in the process
that made it and within that time in the others.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from typing import Any, Final, Literal

import msgspec

from service import setup
from service.db import Conn, Queryable
from service.errors import Forbidden, NotFound, Unauthorized, ValidationFailed
from service.keys import store

Role = Literal[
    "admin",
    "operator",
    "property",
    "volunteer_app",
    "organiser",
    "store",
    "resident",
    "district_operator",
]
_PREFIX: Final = "plk"
# What `new_key_id` makes. A presented id of any other shape (a NUL, 5,000 letters)
# cannot be a key, so it is refused as one without a query.
_KEY_ID = re.compile(r"[0-9a-f]{16}")


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    key_id: str
    role: Role
    community: str | None = None
    property_company: str | None = None
    store: str | None = None
    member: str | None = None
    # An organiser's teams; None: all teams of its community.
    teams: tuple[str, ...] | None = None
    # A district operator's district (SPEC section 16).
    district: str | None = None


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def new_key(principal_fields: Principal) -> tuple[str, bytes]:
    """A fresh secret key string for `principal_fields.key_id`, and the hash to store."""
    secret = secrets.token_urlsafe(32)
    return f"{_PREFIX}_{principal_fields.key_id}_{secret}", _hash(secret)


def new_key_id() -> str:
    return secrets.token_hex(8)


def check_scope_fields(principal: Principal) -> None:
    """Each role names exactly the scope it needs (SPEC section 7)."""
    needs = {
        "admin": (),
        "operator": ("community",),
        "volunteer_app": ("community",),
        "organiser": ("community",),
        "property": ("community", "property_company"),
        "store": ("community", "store"),
        "resident": ("community", "member"),
        "district_operator": ("district",),
    }[principal.role]
    for field in ("community", "property_company", "store", "member", "district"):
        present = getattr(principal, field) is not None
        if present != (field in needs):
            verb = "needs" if field in needs else "takes no"
            raise ValidationFailed(f"a {principal.role} key {verb} {field!r}")
    if principal.teams is not None and principal.role != "organiser":
        raise ValidationFailed(f"a {principal.role} key takes no 'teams'")


def _split(presented: str) -> tuple[str, str] | None:
    """The key id and secret of a key of the shape `new_key` makes, or None."""
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != _PREFIX or not _KEY_ID.fullmatch(parts[1]):
        return None
    return parts[1], parts[2]


def key_id_of(authorization: str | None) -> str | None:
    """The key id a bearer key names, or None when it names none that could be a
    key; the secret is not checked. (So ids made up by a guesser cost no bucket.)"""
    if not authorization or not authorization.startswith("Bearer "):
        return None
    split = _split(authorization[7:].strip())
    return None if split is None else split[0]


class KeyResolver:
    """Turns an Authorization header into a principal, with a short per-process cache."""

    def __init__(self, admin_key: str | None, ttl_s: float) -> None:
        self._admin_hash = _hash(admin_key) if admin_key else None
        self._ttl_s = ttl_s
        self._cache: dict[bytes, tuple[float, Principal]] = {}

    def forget(self, key_id: str) -> None:
        self._cache = {k: v for k, v in self._cache.items() if v[1].key_id != key_id}

    async def resolve(self, conn: Queryable, authorization: str | None) -> Principal:
        if not authorization or not authorization.startswith("Bearer "):
            raise Unauthorized("send 'Authorization: Bearer <key>'")
        presented = authorization[7:].strip()
        digest = _hash(presented)
        if self._admin_hash is not None and hmac.compare_digest(digest, self._admin_hash):
            return Principal(key_id="env-admin", role="admin")
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        principal = await self._lookup(conn, presented)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (time.monotonic() + self._ttl_s, principal)
        return principal

    async def _lookup(self, conn: Queryable, presented: str) -> Principal:
        split = _split(presented)
        if split is None:
            raise Unauthorized("the key is not valid")
        key_id, secret = split
        row = await store.get_key(conn, key_id)
        if row is None or not hmac.compare_digest(bytes(row["secret_hash"]), _hash(secret)):
            raise Unauthorized("the key is not valid or was revoked")
        return principal_of_key(row["id"], row)


def principal_of_key(key_id: str, row: Any) -> Principal:
    """The principal of a stored key's row (`key_get`, or a session's with its key)."""
    return Principal(
        key_id=key_id,
        role=row["role"],
        community=row["community_id"],
        property_company=row["property_company"],
        store=row["store"],
        member=row["member_id"],
        teams=None if row["teams"] is None else tuple(row["teams"]),
        district=row["district_id"],
    )


async def issue(conn: Conn, scope: Principal, secret_hash: bytes, issuer: str) -> None:
    """Stores a new key of `scope`, issued by key `issuer`; 404 for an unknown community."""
    if scope.community is not None:
        await setup.get_community(conn, scope.community)
    await store.insert_key(
        conn,
        scope.key_id,
        secret_hash,
        scope.role,
        scope.community,
        scope.property_company,
        scope.store,
        scope.member,
        None if scope.teams is None else list(scope.teams),
        issuer,
        scope.district,
    )


async def revoke(conn: Conn, key_id: str, caller: Principal) -> None:
    """Revokes an active key. An admin revokes any; an operator only a non-admin key
    of its own community, and to it the others do not exist."""
    row = await store.key_scope(conn, key_id)
    if row is None:
        raise NotFound(f"no active key {key_id!r}")
    if caller.role != "admin" and (
        row["role"] == "admin" or row["community_id"] != caller.community
    ):
        raise NotFound(f"no active key {key_id!r}")
    await store.revoke_key(conn, key_id)


def require(
    principal: Principal, roles: frozenset[str], community: str | None, district: str | None = None
) -> None:
    """The role check every endpoint makes; admins pass everywhere."""
    if principal.role == "admin":
        return
    if principal.role not in roles:
        raise Forbidden(f"a {principal.role} key may not call this endpoint")
    if community is not None and principal.community != community:
        raise Forbidden(f"this key acts only in community {principal.community!r}")
    if district is not None and principal.district != district:
        raise Forbidden(f"this key acts only in district {principal.district!r}")
