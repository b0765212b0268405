"""audit/verify: recomputes every invariant of a community's ledger from its entries."""

from __future__ import annotations

from typing import Final

import msgspec

from service.ledger import store
from service.ledger.model import RuleParams


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    check: str
    detail: str


class AuditReport(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    checked: int
    problems: list[Problem]


# Each check: the query returning offending rows, and how to say what is wrong.
_CHECKS: tuple[tuple[str, str, str], ...] = (
    (
        "unbalanced",
        "audit_unbalanced",
        "transaction {client_id} does not balance in {asset}: off by {imbalance}",
    ),
    (
        "stored_balance",
        "audit_stored_balances",
        "{address} stores {stored} but its entries sum to {expected}",
    ),
    (
        "held",
        "audit_held",
        "{address} holds {stored} but its pending transactions reserve {expected}",
    ),
    ("asset_sum", "audit_asset_sums", "{asset} balances sum to {total}, not 0"),
    (
        "running_balance",
        "audit_running_balances",
        "{address} entry {seq} says balance {balance_after}, its entries sum to {running}",
    ),
    (
        "unsealed",
        "audit_unsealed",
        "final transaction {client_id} ({status}) is neither sealed nor queued for sealing",
    ),
    ("hash_chain", "audit_chain", "seal {seq} (transaction row {tx_id}): {problem}"),
    (
        "lots",
        "audit_lots_cover",
        "{address} has posted {posted}, held {held}, uncovered {uncovered}, "
        "but its lots have {remaining} remaining and {holds} held",
    ),
    (
        "lot_uses",
        "audit_lot_uses",
        "lot {id} of {amount} has {remaining} remaining and {held} held, "
        "but its uses net {used} and its holds {holds}",
    ),
    (
        "lot_consumption",
        "audit_tx_lots",
        "transaction {client_id} changes {address} by {net}, "
        "but made lots of {made} and consumed {used}",
    ),
    (
        "lot_undo",
        "audit_undo_lots",
        "undoing {client_id} gave lot {lot_id} back {restored}; it consumed {consumed}",
    ),
    (
        "interchange_mirror",
        "audit_interchange_mirror",
        "interchange:{other}:{asset} holds {mine} here, but community {other}'s account for "
        "this one holds {theirs}",
    ),
    (
        "interchange_moves",
        "audit_interchange_moves",
        "transaction {client_id} moves {entries} {asset} through interchange:{other}, "
        "its recorded move {recorded}",
    ),
    (
        "interchange_sides",
        "audit_interchange_sides",
        "change {change_id} moved {mine} {asset} here towards {counterparty}, and {theirs} there",
    ),
)

# The checks of the district network, which compare a community with the others.
INTERCHANGE_CHECKS: Final = tuple(c for c in _CHECKS if c[0].startswith("interchange_"))


async def verify(conn: store.Conn, community: str, params: RuleParams) -> AuditReport:
    """Runs every check in one consistent snapshot; `ok` only when none finds a problem."""
    problems: list[Problem] = []
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        checked = await store.audit_count(conn, community)
        for check, query, template in _CHECKS:
            for row in await store.audit_offending(conn, query, community):
                problems.append(Problem(check=check, detail=template.format(**dict(row))))
        for row in await store.audit_limits(conn, community, params.floor):
            problems.append(
                Problem(
                    check="limit",
                    detail=f"{row['address']} is at {row['posted'] - row['held']}, below its floor",
                )
            )
    return AuditReport(ok=not problems, checked=checked, problems=problems)


async def verify_district(conn: store.Conn, communities: list[str]) -> AuditReport:
    """The network's checks for every community of a district, in one snapshot: each
    pair of interchange accounts mirrors the other, and every change has both sides."""
    problems: list[Problem] = []
    checked = 0
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for community in communities:
            checked += await store.audit_count(conn, community)
            for check, query, template in INTERCHANGE_CHECKS:
                for row in await store.audit_offending(conn, query, community):
                    detail = template.format(**dict(row))
                    problems.append(Problem(check=check, detail=f"{community}: {detail}"))
    return AuditReport(ok=not problems, checked=checked, problems=problems)
