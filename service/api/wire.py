"""Request and response bodies: the JSON contract, separate from domain values."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from service.auth import Role
from service.errors import ValidationFailed
from service.i18n import DEFAULT_LANGUAGE, Language
from service.ledger.model import (
    COMMUNITY_PATTERN,
    ID_PATTERN,
    INTERCHANGE,
    MAX_AMOUNT,
    MAX_POSTINGS,
    Posting,
)
from service.ledger.views import TransactionOut

Amount = Annotated[int, Meta(ge=1, le=MAX_AMOUNT)]
ClientId = Annotated[str, Meta(pattern=ID_PATTERN)]
CommunityId = Annotated[str, Meta(pattern=COMMUNITY_PATTERN)]
Address = Annotated[str, Meta(min_length=3, max_length=200)]
Text = Annotated[str, Meta(max_length=500)]
TtlSeconds = Annotated[int, Meta(ge=1, le=366 * 86_400)]


class Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of request bodies: an unknown field is an error, not silently ignored."""


class CommunityIn(Strict):
    id: CommunityId
    name: Annotated[str, Meta(min_length=1, max_length=200)]
    timezone: Annotated[str, Meta(max_length=64)] = "Asia/Shanghai"
    # The language of the reasons the service writes (service/i18n); fixed at creation.
    language: Language = DEFAULT_LANGUAGE


class HouseholdIn(Strict):
    id: ClientId
    property_company: ClientId
    address: Text | None = None


class MemberIn(Strict):
    id: ClientId
    household: ClientId
    name: Annotated[str, Meta(max_length=200)] | None = None


class PostingIn(Strict):
    source: Address
    destination: Address
    asset: Literal["points", "minutes"]
    amount: Amount


class PendingIn(Strict):
    ttl_s: TtlSeconds | None = None


class LotIn(Strict):
    """The lots a transaction's credits to members create (imports of balances kept
    on paper): earned then instead of now, expiring then instead of by the rule set."""

    earned_at: datetime | None = None
    expires_at: datetime | None = None


class TransactionIn(Strict):
    id: ClientId
    postings: Annotated[list[PostingIn], Meta(min_length=1, max_length=MAX_POSTINGS)]
    memo: Text | None = None
    metadata: dict[str, Any] | None = None
    pending: PendingIn | None = None
    lot: LotIn | None = None


MAX_BATCH = 1000


class BatchIn(Strict):
    """Items stay raw here so that one malformed item is refused on its own."""

    transactions: Annotated[list[msgspec.Raw], Meta(min_length=1, max_length=MAX_BATCH)]
    atomic: bool = False


class BatchDoc(Strict):
    """`BatchIn` as the OpenAPI document shows it: each item is a `TransactionIn`."""

    transactions: Annotated[list[TransactionIn], Meta(min_length=1, max_length=MAX_BATCH)]
    atomic: bool = False


class ItemResult(msgspec.Struct, kw_only=True):
    status: int
    transaction: TransactionOut | None
    problem: dict[str, Any] | None


class BatchOut(msgspec.Struct, kw_only=True):
    results: list[ItemResult]


class PostIn(Strict):
    amount: Amount | None = None


class ConsentIn(Strict):
    """A member's consent to a store's redemption (SPEC section 10): the spend code
    the resident's phone shows, or the PIN typed at the till."""

    spend_code: Annotated[str, Meta(min_length=1, max_length=128)] | None = None
    pin: Annotated[str, Meta(pattern="^[0-9]{6}$")] | None = None


class ApiKeyIn(Strict):
    role: Role
    community: CommunityId | None = None
    property_company: ClientId | None = None
    store: ClientId | None = None
    member: ClientId | None = None
    # An organiser's volunteer teams (SPEC section 11); omitted: all teams.
    teams: Annotated[list[ClientId], msgspec.Meta(min_length=1, max_length=50)] | None = None
    # A district operator's district (SPEC section 16).
    district: CommunityId | None = None


class ApiKeyOut(msgspec.Struct, kw_only=True):
    id: str
    key: str
    role: str
    community: str | None
    property_company: str | None
    store: str | None
    member: str | None
    teams: list[str] | None = None
    district: str | None = None


def postings_in(items: list[PostingIn]) -> tuple[Posting, ...]:
    """A client's postings; the interchange accounts are not theirs to move: only a
    change between two communities writes them, on both sides at once."""
    for p in items:
        if p.source.startswith(INTERCHANGE) or p.destination.startswith(INTERCHANGE):
            raise ValidationFailed(
                "interchange accounts change only with a change between two communities "
                "of a district (docs/network.md)"
            )
    return tuple(
        Posting(source=p.source, destination=p.destination, asset=p.asset, amount=p.amount)
        for p in items
    )
