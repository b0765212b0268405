"""Offset use cases: quote, create (held or applied), apply, cancel, read, list.

Creating an offset is one database transaction, with locks always taken in this
order: the offset's own row (its id is the idempotency key, so a concurrent
duplicate waits here holding nothing), the household row (serialises the offsets of
one household, so its yearly cap counts every other offset, committed or not), the
member's mandate for the company when a property key needs one (SPEC section 10:
its ceilings per bill and per year are checked under it), then the member's
points account (taken by the ledger's write, which checks
`redeemable`). No writer takes a household after a member account, so this order
cannot deadlock with other ledger writes. The transaction is one statement, the
function `offset_create` (sql/functions/offsets.sql), whose steps each read after the locks
before them were granted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NoReturn

import asyncpg
import msgspec

from service.consent import service as consent
from service.db import Conn, unit_of_work
from service.errors import (
    CapExceeded,
    ConsentRequired,
    IdempotencyConflict,
    InsufficientPoints,
    InvalidState,
    NotFound,
)
from service.i18n import system_reason, yuan
from service.ledger import reads
from service.ledger import service as ledger
from service.ledger.model import NewTransaction, Outcome, Posting, RuleParams, member_address
from service.offsets import model, store
from service.offsets.model import NewOffset
from service.offsets.views import (
    OffsetOut,
    OffsetPage,
    OffsetTotals,
    QuoteOut,
    created_view,
    creation_view,
    offset_out,
    transaction_id,
)
from service.rules.book import ActiveRules, RuleBook
from service.rules.periods import period_of

DEFAULT_HOLD_TTL_S = 86_400


async def offset_year(book: RuleBook, conn: Conn, community: str) -> str:
    """The key of the year offsets count in now (the community's time zone)."""
    return period_of("year", datetime.now(UTC), await book.timezone(conn, community)).key


async def quote(
    conn: Conn,
    book: RuleBook,
    community: str,
    member: str,
    household: str,
    bill_amount_fen: int,
    company: str,
    role: str,
) -> QuoteOut:
    """What one offset of this bill could take now (nothing is reserved); for a
    key that needs the member's mandate, within it (0 without one)."""
    active = await book.active(conn, community)
    balance = await reads.member_balance(conn, community, member, active.rule_set.to_params())
    year = await offset_year(book, conn, community)
    used = await store.household_used_fen(conn, community, household, year)
    limits = model.caps(active.rule_set, bill_amount_fen, used)
    most = model.max_points(limits, balance.points.redeemable)
    mandate = None
    needs = consent.needed(role, active.rule_set.consent.offset)
    if needs:
        found = await consent.list_mandates(conn, community, member, year, company=company)
        mandate = found[0] if found else None
        most = min(most, _mandate_left(mandate))
        most = most if most >= limits.min_points else 0
    return QuoteOut(
        redeemable_points=balance.points.redeemable,
        max_points=most,
        max_offset_fen=most * limits.fen_per_point,
        fen_per_point=limits.fen_per_point,
        min_points=limits.min_points,
        household_left_fen=limits.household_left_fen,
        mandate_required=needs,
        mandate=mandate,
    )


def _mandate_left(mandate: consent.MandateOut | None) -> int:
    """The most points one offset may take under `mandate` now."""
    if mandate is None:
        return 0
    left = mandate.max_points_per_bill
    if mandate.max_points_per_year is not None:
        left = min(left, max(0, mandate.max_points_per_year - mandate.used_points_this_year))
    return left


def _transaction(
    new: NewOffset, active: ActiveRules, offset_fen: int, language: str
) -> NewTransaction:
    reason = system_reason(
        language, "offset", offset=new.id, household=new.household, yuan=yuan(offset_fen)
    )
    return NewTransaction(
        client_id=transaction_id(new.id),
        postings=(
            Posting(
                source=member_address(new.member, "points"),
                destination=f"property:{new.property_company}:offsets",
                asset="points",
                amount=new.points,
            ),
        ),
        request_hash=new.request_hash,
        kind="offset",
        pending=new.hold,
        ttl_s=(new.hold_ttl_s or DEFAULT_HOLD_TTL_S) if new.hold else None,
        reason=reason,
        rule_version=active.version,
        actor=new.actor,
        metadata={
            "offset": new.id,
            "household": new.household,
            "bill_amount_fen": new.bill_amount_fen,
            "offset_fen": offset_fen,
        },
    )


def _refuse(
    new: NewOffset, active: ActiveRules, tx: NewTransaction, row: asyncpg.Record
) -> NoReturn:
    """Raises the error for an offset the database refused (and left no trace of)."""
    outcome = row["outcome"]
    if outcome == "no_mandate":
        raise ConsentRequired(
            f"member {new.member!r} has no mandate for {new.property_company!r} in force: "
            "the resident grants one (PUT …/members/{m}/mandates/{company})",
            consent="mandate",
            reason="missing",
        )
    if outcome in ("mandate_bill", "mandate_year"):
        per = "bill" if outcome == "mandate_bill" else "year"
        left = row["mandate_cap"] - (row["mandate_used"] or 0)
        raise ConsentRequired(
            f"{new.points} points exceed the member's mandate for {new.property_company!r}: "
            f"at most {row['mandate_cap']} points per {per}"
            + (f", {max(0, left)} left this year" if per == "year" else ""),
            consent="mandate",
            reason=f"per_{per}",
            mandate=row["mandate_id"],
            limit=row["mandate_cap"],
            requested=new.points,
        )
    if outcome == "household_cap":
        # Checked by the database with what it summed under the household's lock;
        # the model names the cap and what is left.
        limits = model.caps(active.rule_set, new.bill_amount_fen, row["used_fen"])
        model.check(limits, new.points)
    else:
        try:
            ledger.check_written(tx, row["outcome"], row["failure"])
        except InsufficientPoints as err:
            raise InsufficientPoints(err.detail, cap="redeemable", **err.extra) from None
    raise RuntimeError(f"offset {new.id!r}: the database answered {row['outcome']!r}")


async def create_offset(
    conn: Conn, book: RuleBook, community: str, new: NewOffset
) -> tuple[OffsetOut, bool]:
    """Holds or applies an offset once per id, every cap checked under the locks:
    one statement (offset_create), and one read more for a replay."""
    active = await book.active(conn, community)
    year = await offset_year(book, conn, community)
    rules = active.rule_set
    fen = rules.fen_per_point
    # The caps that need no lock first: an offset beyond its bill is never inserted.
    try:
        model.check(model.caps(rules, new.bill_amount_fen, 0), new.points)
    except CapExceeded:
        # A repeat of an offset made before the rules tightened answers as it did.
        replayed = await _replay(conn, community, new)
        if replayed is None:
            raise
        return replayed, True
    tx = _transaction(new, active, new.points * fen, await book.language(conn, community))
    document = ledger.write_document(tx, rules.to_params())
    row = await unit_of_work(
        conn, lambda: _write(conn, community, new, active, year, document), atomic=False
    )
    if row["outcome"] == "exists":
        replayed = await _replay(conn, community, new)
        assert replayed is not None  # offsets are never deleted once committed
        return replayed, True
    if row["outcome"] != "created":
        _refuse(new, active, tx, row)
    view = created_view(new, fen, active.version, row["created_at"], row["expires_at"])
    return msgspec.structs.replace(view, mandate_id=row["mandate_id"]), False


async def _write(
    conn: Conn, community: str, new: NewOffset, active: ActiveRules, year: str, document: str
) -> asyncpg.Record:
    """The offset's one statement, with the numbers of the rule set in force."""
    return await store.create_offset(
        conn,
        community,
        new,
        fen_per_point=active.rule_set.fen_per_point,
        year=year,
        rule_version=active.version,
        household_cap_fen=active.rule_set.offset.max_fen_per_household_per_year,
        mandate=consent.needed(new.role, active.rule_set.consent.offset),
        document=document,
    )


async def _replay(conn: Conn, community: str, new: NewOffset) -> OffsetOut | None:
    """What the request that created offset `new.id` returned, if `new` is that
    request; None when there is no such offset."""
    row = await store.get_offset(conn, community, new.id)
    if row is None:
        return None
    if bytes(row["request_hash"]) != new.request_hash:
        raise IdempotencyConflict(
            f"offset {new.id!r} exists with a different request; use a new id for a new offset"
        )
    return creation_view(offset_out(row), row["hold"])


async def _get_row(
    conn: Conn, community: str, offset_id: str, company: str | None
) -> asyncpg.Record:
    row = await store.get_offset(conn, community, offset_id)
    if row is None or (company is not None and row["property_company"] != company):
        raise NotFound(f"no offset {offset_id!r} in community {community!r}")
    return row


async def get_offset(conn: Conn, community: str, offset_id: str, company: str | None) -> OffsetOut:
    """One offset; another company's offsets do not exist for a property key."""
    return offset_out(await _get_row(conn, community, offset_id, company))


async def apply_offset(
    conn: Conn, community: str, offset_id: str, company: str | None
) -> tuple[OffsetOut, bool]:
    """Posts a held offset's points; applying an applied one again is a replay. Two
    statements: the offset read, then the ledger's finish (which locks the
    transaction and checks again that it is pending and not expired)."""
    return await unit_of_work(
        conn, lambda: _apply(conn, community, offset_id, company), atomic=False
    )


async def _apply(
    conn: Conn, community: str, offset_id: str, company: str | None
) -> tuple[OffsetOut, bool]:
    row = await _get_row(conn, community, offset_id, company)
    offset = offset_out(row)
    if offset.status == "applied":
        return offset, True
    if offset.status != "held":
        raise InvalidState(f"offset {offset_id!r} is {offset.status}; only a held one is applied")
    reserved = msgspec.convert(row["pending_postings"], tuple[Posting, ...])
    done, _ = await ledger.post_reserved(conn, community, row["tx_id"], reserved, None)
    if done.outcome == Outcome.DONE:
        applied_at = done.finalized_at
        return msgspec.structs.replace(offset, status="applied", applied_at=applied_at), False
    # Applied, cancelled or expired since it was read: answer as a request made now.
    now = await get_offset(conn, community, offset_id, company)
    if now.status == "applied":
        return now, True
    raise InvalidState(f"offset {offset_id!r} is {now.status}; only a held one is applied")


async def cancel_offset(
    conn: Conn,
    community: str,
    offset_id: str,
    company: str | None,
    params: RuleParams,
    actor: str | None,
) -> tuple[OffsetOut, bool]:
    """Voids a hold or reverses an applied offset (the points go back to the member);
    cancelling a cancelled or expired offset again is a replay."""
    return await unit_of_work(
        conn, lambda: _cancel(conn, community, offset_id, company, params, actor), atomic=False
    )


async def _cancel(
    conn: Conn,
    community: str,
    offset_id: str,
    company: str | None,
    params: RuleParams,
    actor: str | None,
) -> tuple[OffsetOut, bool]:
    for _ in range(3):  # an apply racing this cancel: look again and do the other thing
        offset = await get_offset(conn, community, offset_id, company)
        cid = offset.transaction_id
        try:
            if offset.status == "held":
                await ledger.void(conn, community, cid, "cancelled")
            elif offset.status == "applied":
                await ledger.reverse(conn, community, cid, params, actor)
            else:
                await _void_if_pending(conn, community, cid)
                return offset, True
        except InvalidState:
            continue
        return await get_offset(conn, community, offset_id, company), False
    raise InvalidState(f"offset {offset_id!r} changed while it was being cancelled; retry")


async def _void_if_pending(conn: Conn, community: str, cid: str) -> None:
    """An expired hold not yet voided by the expiry job is voided now, as it would be."""
    tx = await ledger.get_transaction(conn, community, cid)
    if tx.status == "pending":
        await ledger.void(conn, community, cid, "expired")


async def list_offsets(
    conn: Conn,
    community: str,
    company: str | None,
    start: datetime,
    end: datetime,
    cursor: str | None,
    limit: int,
) -> OffsetPage:
    """Offsets created in [start, end), newest first, with settlement totals."""
    before = reads.decode_cursor(cursor)
    rows = await store.list_offsets(conn, community, company, start, end, before, limit + 1)
    totals = await store.offset_totals(conn, community, company, start, end)
    more = len(rows) > limit
    return OffsetPage(
        offsets=[offset_out(r) for r in rows[:limit]],
        totals=OffsetTotals(**dict(totals)),
        next_cursor=reads.encode_cursor(rows[limit - 1]["seq"]) if more else None,
    )
