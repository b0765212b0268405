"""audit/verify: recomputes every invariant of a community's ledger from its entries."""

from __future__ import annotations

import asyncio
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
_SIDES: Final = next(c for c in _CHECKS if c[0] == "interchange_sides")

# How long to wait before each second look at a change seen on one side only.
SECOND_LOOKS_S: Final = (0.05, 0.2, 0.75)


async def _problems(
    conn: store.Conn, community: str, checks: tuple[tuple[str, str, str], ...], prefix: str = ""
) -> list[Problem]:
    found: list[Problem] = []
    for check, query, template in checks:
        for row in await store.audit_offending(conn, query, community):
            found.append(Problem(check=check, detail=prefix + template.format(**dict(row))))
    return found


async def _persisting(
    conn: store.Conn, communities: dict[str, str], problems: list[Problem]
) -> list[Problem]:
    """`problems` without the changes seen on one side only that, looked at again,
    have both. On Citus the two sides of a change live on two workers, and each
    worker's part of a read has its own snapshot: for the moment a change's commit
    takes to reach both, one side shows. A side that never arrives is still missing
    after the last look (about a second) and is reported. `communities` maps each
    community looked at to the prefix of its problems' details."""
    one_sided = {p for p in problems if p.check == "interchange_sides"}
    for pause in SECOND_LOOKS_S:
        if not one_sided:
            break
        await asyncio.sleep(pause)
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            seen = {
                p
                for c, prefix in communities.items()
                for p in await _problems(conn, c, (_SIDES,), prefix)
            }
        one_sided &= seen
    return [p for p in problems if p.check != "interchange_sides" or p in one_sided]


async def verify(conn: store.Conn, community: str, params: RuleParams) -> AuditReport:
    """Runs every check in one consistent snapshot (on Citus: one per worker; see
    `_persisting`); `ok` only when none finds a problem."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        checked = await store.audit_count(conn, community)
        problems = await _problems(conn, community, _CHECKS)
        for row in await store.audit_limits(conn, community, params.floor):
            problems.append(
                Problem(
                    check="limit",
                    detail=f"{row['address']} is at {row['posted'] - row['held']}, below its floor",
                )
            )
    problems = await _persisting(conn, {community: ""}, problems)
    return AuditReport(ok=not problems, checked=checked, problems=problems)


async def verify_district(conn: store.Conn, communities: list[str]) -> AuditReport:
    """The network's checks for every community of a district, in one snapshot: each
    pair of interchange accounts mirrors the other, and every change has both sides."""
    problems: list[Problem] = []
    checked = 0
    prefixes = {c: f"{c}: " for c in communities}
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for community in communities:
            checked += await store.audit_count(conn, community)
            problems += await _problems(conn, community, INTERCHANGE_CHECKS, prefixes[community])
    problems = await _persisting(conn, prefixes, problems)
    return AuditReport(ok=not problems, checked=checked, problems=problems)
