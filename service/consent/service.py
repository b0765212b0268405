"""Consent use cases: spend codes for tills, PINs for residents without a phone,
mandates for property fees (SPEC section 10).

A spend code carries 128 random bits, so its SHA-256 is all that is stored (as
for keys: a slow hash adds nothing against guessing what cannot be guessed). It
is used up inside the one redemption it authorises (sql/functions/supermarket.sql,
`redemption_write`, under the code row's lock), so two tills racing on one code
get one success. A PIN has six digits, so it is stored with scrypt, and every
try is counted in the database before it is checked: five tries lock PIN
consent for 15 minutes for every worker and replica alike. A mandate is checked
inside the offset's one statement, under its row's lock
(sql/functions/offsets.sql, `offset_create`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from datetime import datetime
from typing import Any, Final, Literal, Protocol

import asyncpg
import msgspec

from service import setup
from service.consent import store
from service.db import Conn, Queryable
from service.errors import ConsentRequired, NotFound, ValidationFailed

SPEND_CODE_TTL_S: Final = 120
SPEND_CODE_TTL_MAX_S: Final = 600
PIN_TRIES: Final = 5
PIN_LOCK_S: Final = 15 * 60
# scrypt at 16 MiB, tens of milliseconds a try: a stolen table gives up six
# digits only at that price each.
_N, _R, _P = 2**14, 8, 1
_DUMMY: Final = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 43

ConsentKind = Literal["spend_code", "pin"]


class SpendCodeOut(msgspec.Struct, kw_only=True):
    code: str
    member: str
    max_points: int
    store: str | None
    expires_at: datetime


class PinOut(msgspec.Struct, kw_only=True):
    member: str
    set_at: datetime


class MandateOut(msgspec.Struct, kw_only=True):
    id: str
    member: str
    property_company: str
    max_points_per_bill: int
    max_points_per_year: int | None
    granted_by: str
    on_behalf_of: str | None
    granted_at: datetime
    # What the company's offsets of the member take of the yearly ceiling now.
    used_points_this_year: int
    revoked_at: datetime | None = None
    revoked_by: str | None = None


class MandateList(msgspec.Struct, kw_only=True):
    mandates: list[MandateOut]


class Consent(Protocol):
    """What a request carries as the member's consent (the API's ConsentIn)."""

    spend_code: str | None
    pin: str | None


def needed(role: str, policy: str) -> bool:
    """Whether a key of `role` needs the member's consent under the rule set's
    `policy` for it: store and property keys do, unless it is `none`; operators
    and admins are trusted and recorded as the actor."""
    return role in ("store", "property") and policy == "required"


async def redemption_consent(
    conn: Queryable, community: str, member: str, given: Consent | None
) -> bytes | None:
    """For a redemption that needs consent: the spend code's hash, which the
    redemption's write checks and uses up; or None once the PIN has passed.
    Without either, `consent_required`; with both, 422."""
    if given is not None and given.spend_code is not None and given.pin is not None:
        raise ValidationFailed("give consent.spend_code or consent.pin, not both")
    if given is None or (given.spend_code is None and given.pin is None):
        raise ConsentRequired(
            "a store's redemption needs the member's consent: "
            "consent.spend_code (from the resident's phone) or consent.pin",
            consent="spend_code",
            reason="missing",
        )
    if given.spend_code is not None:
        return code_hash(given.spend_code)
    assert given.pin is not None
    await check_pin(conn, community, member, given.pin)
    return None


def code_hash(code: str) -> bytes:
    return hashlib.sha256(code.encode()).digest()


async def issue_spend_code(
    conn: Queryable,
    community: str,
    member: str,
    max_points: int,
    ttl_s: int,
    store_id: str | None,
    actor: str,
    on_behalf_of: str | None,
) -> SpendCodeOut:
    """A new single-use code for at most `max_points`, for `ttl_s` seconds (and,
    with `store_id`, at that store only)."""
    await setup.refuse_closed(conn, community, member)
    code = secrets.token_urlsafe(16)
    try:
        expires_at = await store.insert_spend_code(
            conn,
            community,
            code_hash(code),
            member,
            max_points,
            store_id,
            ttl_s,
            actor,
            on_behalf_of,
        )
    except asyncpg.ForeignKeyViolationError as err:
        raise NotFound(f"no member {member!r} in community {community!r}") from err
    return SpendCodeOut(
        code=code, member=member, max_points=max_points, store=store_id, expires_at=expires_at
    )


def code_refusal(reason: str, max_points: int | None, points: int) -> ConsentRequired:
    """The refusal for what `redemption_write` found wrong with a spend code."""
    details = {
        "unknown": "the spend code is not valid",
        "used": "the spend code has already been used",
        "expired": "the spend code has expired; ask the resident for a new one",
        "member": "the spend code is not valid for this member",
        "store": "the spend code is for another store",
        "ceiling": f"the spend code allows at most {max_points} points; the basket costs {points}",
    }
    return ConsentRequired(details[reason], consent="spend_code", reason=reason)


class SpendCodeHolder(msgspec.Struct, frozen=True, kw_only=True):
    """Whom a spend code stands for, as a till sees it before the basket."""

    member: str
    max_points: int
    store: str | None
    expires_at: datetime
    # The member's community when it is another one of the district (SPEC
    # section 16, `spend_code_holder_elsewhere`); None for the till's own.
    community: str | None = None


_CODE_MAX_LEN: Final = 128


async def spend_code_holder(
    conn: Queryable, community: str, code: str, store_id: str
) -> SpendCodeHolder:
    """The member of a spend code that `store_id`'s till could use now (unused,
    unexpired, for that store or any), without using it up: the till learns whom
    the basket is for from the one thing the resident shows. A code that is
    unknown, used, expired or another store's is refused alike (`consent_required`,
    reason `unusable`), so the answer tells a guesser nothing; the redemption
    checks the code again, under its lock, and uses it up."""
    if not 1 <= len(code) <= _CODE_MAX_LEN:
        raise _unusable()
    row = await store.spend_code_holder(conn, community, code_hash(code), store_id)
    if row is None:
        raise _unusable()
    return SpendCodeHolder(
        member=row["member_id"],
        max_points=row["max_points"],
        store=row["store"],
        expires_at=row["expires_at"],
    )


async def spend_code_holder_elsewhere(
    conn: Queryable, communities: list[str], code: str
) -> SpendCodeHolder:
    """The member of a spend code issued in one of `communities` (the other
    communities of a district-wide store's district, SPEC section 16) that the
    store's till could use now: unused, unexpired, and for no particular store (a
    store-limited code names a store of its own community, never this one). Read
    only, as `spend_code_holder`, and refused alike (`consent_required`, reason
    `unusable`) whatever was wrong, a code of a community outside the district
    included; the redemption checks the code again in the member's community,
    under its lock, and uses it up."""
    if not 1 <= len(code) <= _CODE_MAX_LEN or not communities:
        raise _unusable()
    row = await store.spend_code_holder_elsewhere(conn, communities, code_hash(code))
    if row is None:
        raise _unusable()
    return SpendCodeHolder(
        member=row["member_id"],
        max_points=row["max_points"],
        store=row["store"],
        expires_at=row["expires_at"],
        community=row["community_id"],
    )


def _unusable() -> ConsentRequired:
    return ConsentRequired(
        "the spend code is not valid, used, expired or for another store; "
        "ask the resident for a new one",
        consent="spend_code",
        reason="unusable",
    )


def _pin_hash(pin: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    encode = base64.urlsafe_b64encode
    return f"scrypt${_N}${_R}${_P}${encode(salt).decode()}${encode(digest).decode()}"


def _pin_matches(stored: str | None, pin: str) -> bool:
    """Costs one scrypt whether or not a PIN is stored."""
    _, n, r, p, salt, digest = (stored or _DUMMY).split("$")
    tried = hashlib.scrypt(
        pin.encode(),
        salt=base64.urlsafe_b64decode(salt + "=" * (-len(salt) % 4)),
        n=int(n),
        r=int(r),
        p=int(p),
        dklen=32,
    )
    expected = base64.urlsafe_b64decode(digest + "=" * (-len(digest) % 4))
    return stored is not None and hmac.compare_digest(tried, expected)


async def set_pin(conn: Conn, community: str, member: str, pin: str, actor: str) -> PinOut:
    """Stores (or replaces) the member's PIN; wrong tries before it are forgotten."""
    await setup.get_member(conn, community, member)  # 404 for an unknown member
    hashed = await asyncio.to_thread(_pin_hash, pin)
    set_at = await store.set_pin(conn, community, member, hashed, actor)
    return PinOut(member=member, set_at=set_at)


async def check_pin(conn: Queryable, community: str, member: str, pin: str) -> None:
    """Passes for the member's PIN; else `consent_required`. The try is counted
    (and committed) before the PIN is compared, so no number of concurrent tries
    gets more than five past the lock. The answers are the same for a member
    that does not exist, one without a PIN, and one with another PIN."""
    row = await store.pin_attempt(conn, community, member, PIN_TRIES, PIN_LOCK_S)
    if row is None:
        raise ConsentRequired(
            f"PIN consent is locked for {PIN_LOCK_S // 60} minutes after "
            f"{PIN_TRIES} wrong PINs; use a spend code",
            consent="pin",
            reason="locked",
        )
    if not await asyncio.to_thread(_pin_matches, row["pin_hash"], pin):
        raise ConsentRequired("the PIN is wrong", consent="pin", reason="wrong")
    await store.pin_passed(conn, community, member)


def _mandate(row: Any, used: int | None = None) -> MandateOut:
    return MandateOut(
        id=row["id"],
        member=row["member_id"],
        property_company=row["property_company"],
        max_points_per_bill=row["max_points_per_bill"],
        max_points_per_year=row["max_points_per_year"],
        granted_by=row["granted_by"],
        on_behalf_of=row["on_behalf_of"],
        granted_at=row["granted_at"],
        used_points_this_year=row["used_points_this_year"] if used is None else used,
        revoked_at=row["revoked_at"],
        revoked_by=row["revoked_by"],
    )


async def put_mandate(
    conn: Conn,
    community: str,
    member: str,
    company: str,
    per_bill: int,
    per_year: int | None,
    year: str,
    actor: str,
    on_behalf_of: str | None,
) -> MandateOut:
    """Grants or replaces the member's mandate for `company` (a new id each time);
    `year` is the offsets' year now, for what the mandate has used of it."""
    await setup.refuse_closed(conn, community, member)
    try:
        await store.put_mandate(
            conn,
            community,
            member,
            company,
            f"mdt_{secrets.token_urlsafe(9)}",
            per_bill,
            per_year,
            actor,
            on_behalf_of,
        )
    except asyncpg.ForeignKeyViolationError as err:
        raise NotFound(f"no member {member!r} in community {community!r}") from err
    (mandate,) = await list_mandates(conn, community, member, year, company=company)
    return mandate


async def list_mandates(
    conn: Queryable, community: str, member: str, year: str, *, company: str | None = None
) -> list[MandateOut]:
    """The member's mandates in force (only `company`'s, if given)."""
    return [_mandate(r) for r in await store.list_mandates(conn, community, member, company, year)]


async def revoke_mandate(
    conn: Conn,
    community: str,
    member: str,
    company: str,
    year: str,
    actor: str,
    on_behalf_of: str | None,
) -> MandateOut:
    """Revokes the mandate in force: the company's next offsets and quotes of the
    member need a new one (holds made under it stay as they are)."""
    row = await store.revoke_mandate(conn, community, member, company, actor, on_behalf_of)
    if row is None:
        raise NotFound(f"member {member!r} has no mandate for {company!r} in force")
    used = await store.mandate_used(conn, community, member, company, year)
    return _mandate(row, used)
