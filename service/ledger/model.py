"""Pure values of the ledger: addresses, postings, transactions, balances."""

from __future__ import annotations

import enum
import re
from datetime import datetime
from typing import Any, Final, Literal

import msgspec

from service.errors import ValidationFailed

Asset = Literal["points", "minutes"]
ASSETS: Final = ("points", "minutes")
MAX_AMOUNT: Final = 10**12
MAX_POSTINGS: Final = 64

# `$(?!\n)`: Python's `$` also matches before a final newline; JSON Schema's does not.
ID_PATTERN: Final = r"^[A-Za-z0-9._-]{1,64}$(?!\n)"
COMMUNITY_PATTERN: Final = r"^[a-z0-9-]{1,64}$(?!\n)"
_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")

# The account prefixes the service knows. Member accounts have limits and are
# opened with the member; the others have none and open on first use.
SYSTEM_NAMES: Final = frozenset(
    {"issuance", "opening", "penalties", "expired", "timebank", "conversion", "adjustments"}
)


class AccountRef(msgspec.Struct, frozen=True, kw_only=True):
    address: str
    asset: Asset
    member_id: str | None

    @property
    def limited(self) -> bool:
        return self.member_id is not None


def parse_address(address: str) -> AccountRef:
    """Checks an address's grammar and prefix; says which asset it holds."""
    segments = address.split(":")
    if len(address) > 200 or not 2 <= len(segments) <= 6:
        raise ValidationFailed(f"{address!r} is not an account address (2-6 segments, ≤ 200 chars)")
    if not all(_SEGMENT.fullmatch(s) for s in segments):
        raise ValidationFailed(f"{address!r} has a segment outside [A-Za-z0-9._-]")
    match segments:
        case ["member", member_id, ("points" | "minutes") as asset]:
            return AccountRef(address=address, asset=asset, member_id=member_id)
        case ["system", name, ("points" | "minutes") as asset] if name in SYSTEM_NAMES:
            return AccountRef(address=address, asset=asset, member_id=None)
        case ["property", _, "offsets"] | ["store", _, "redemptions"]:
            return AccountRef(address=address, asset="points", member_id=None)
        case ["interchange", _, ("points" | "minutes") as asset]:
            # The mirror of community `other`'s account for this one (SPEC section 16):
            # only changes between two communities write it (service/network).
            return AccountRef(address=address, asset=asset, member_id=None)
    raise ValidationFailed(
        f"{address!r} is not a known account: use member:<id>:points|minutes, "
        f"system:<{'|'.join(sorted(SYSTEM_NAMES))}>:points|minutes, "
        "property:<company>:offsets or store:<store>:redemptions"
    )


def member_address(member_id: str, asset: Asset) -> str:
    return f"member:{member_id}:{asset}"


INTERCHANGE: Final = "interchange:"


def interchange_address(other: str, asset: Asset) -> str:
    """This community's account mirroring community `other`'s for it, in `asset`."""
    return f"{INTERCHANGE}{other}:{asset}"


class Posting(msgspec.Struct, frozen=True, kw_only=True):
    source: str
    destination: str
    asset: Asset
    amount: int


class NewTransaction(msgspec.Struct, frozen=True, kw_only=True):
    """A transaction to write, with everything that explains why it exists."""

    client_id: str
    postings: tuple[Posting, ...]
    request_hash: bytes
    kind: str = "transfer"
    pending: bool = False
    ttl_s: int | None = None
    memo: str | None = None
    metadata: dict[str, Any] | None = None
    reason: str | None = None
    rule_id: str | None = None
    rule_version: int | None = None
    event_id: str | None = None
    actor: str | None = None
    # The member a proxy's key acted for (SPEC section 11); `actor` is that key.
    on_behalf_of: str | None = None
    reversal_of: int | None = None
    # What it undoes (a return its redemption, a cancel its offset): its credits
    # give back exactly the lots that one consumed (SPEC section 9).
    undoes: int | None = None
    # The lots its credits create: earned then (default: now), and expiring by
    # this policy instead of the rule set's (see `LotPolicy`).
    lot_earned_at: datetime | None = None
    lot_expires: str | None = None


TxStatus = Literal["pending", "posted", "voided"]


class Outcome(enum.StrEnum):
    """What became of one write, in the order of precedence the write engine
    decides in (sql/functions/ledger.sql, `ledger_write`): the first that applies."""

    NOT_FOUND = "not_found"  # an account (a member not joined) or the transaction
    BUSY = "busy"  # skip-locked: an account or the transaction is locked elsewhere
    REPLAY = "replay"  # the client id exists, written by the same request
    CONFLICT = "conflict"  # the client id exists, written by another request
    POSTED = "posted"  # the transaction to post or void already is posted
    VOIDED = "voided"  # … already is voided
    EXPIRED = "expired"  # the transaction to post is past its expires_at
    INSUFFICIENT = "insufficient"  # a member account would go below its minimum
    CREATED = "created"  # a new transaction, posted or pending
    DONE = "done"  # the pending transaction is now posted or voided


class Transaction(msgspec.Struct, frozen=True, kw_only=True):
    """A stored transaction. `postings` are what was posted (or reserved, if pending)."""

    row_id: int
    client_id: str
    kind: str
    status: TxStatus
    postings: tuple[Posting, ...]
    reserved: tuple[Posting, ...] | None
    memo: str | None
    metadata: dict[str, Any] | None
    reason: str | None
    rule_id: str | None
    rule_version: int | None
    event_id: str | None
    actor: str | None
    reversal_of: str | None
    created_at: datetime
    expires_at: datetime | None
    finalized_at: datetime | None
    void_reason: str | None
    on_behalf_of: str | None = None


class RuleParams(msgspec.Struct, frozen=True, kw_only=True):
    """The parts of the active rule set the ledger's limits depend on."""

    baseline: int = 100
    floor: int = 0
    # When the lots of credits expire, per asset: a `LotPolicy`.
    expiry_points: str = "never"
    expiry_minutes: str = "never"


class PointsBalance(msgspec.Struct, frozen=True, kw_only=True):
    score: int
    held: int
    baseline: int
    redeemable: int


class MinutesBalance(msgspec.Struct, frozen=True, kw_only=True):
    balance: int
    held: int


class MemberBalance(msgspec.Struct, frozen=True, kw_only=True):
    points: PointsBalance
    minutes: MinutesBalance


def points_balance(score: int, held: int, baseline: int) -> PointsBalance:
    return PointsBalance(
        score=score, held=held, baseline=baseline, redeemable=max(0, score - held - baseline)
    )
