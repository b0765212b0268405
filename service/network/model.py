"""Pure values of a district network (SPEC section 16): what a district, a store and
the clearing between communities look like, and how net positions are worked out
from what moved (docs/network.md).

Sign convention, the same as `interchange_moves.amount`: a community's side of a
change records what left it towards the other community, so a positive net position
of `from` towards `to` is what `from` owes `to` (its members spent points at `to`'s
stores, or `to`'s teams credited `from`'s members with hours).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

import msgspec


class DistrictOut(msgspec.Struct, kw_only=True):
    id: str
    name: str
    communities: list[str]
    created_at: datetime


class StoreOut(msgspec.Struct, kw_only=True):
    id: str
    name: str
    district_wide: bool
    created_at: datetime
    updated_at: datetime


class Flow(msgspec.Struct, frozen=True, kw_only=True):
    """What one side of a pair recorded towards the other, in one asset: what left it
    (`out`) and what came back or in (`back`), over `moves` rows."""

    side: str
    counterparty: str
    asset: str
    out: int
    back: int
    moves: int


class Position(msgspec.Struct, kw_only=True):
    """An ordered pair of communities: what `from` sent towards `to` and the net of
    what moved both ways (`from`'s side: sent minus what came back); positive, `from`
    owes `to`. The fen are the net points at each community's `fen_per_point`."""

    from_: str = msgspec.field(name="from")
    to: str
    points: int
    minutes: int
    net_points: int
    net_minutes: int
    net_fen_at_from: int
    net_fen_at_to: int
    moves: int


class ClearingOut(msgspec.Struct, kw_only=True):
    district: str
    from_: datetime = msgspec.field(name="from")
    to: datetime
    fen_per_point: dict[str, int]
    positions: list[Position]


class SettlementOut(msgspec.Struct, kw_only=True):
    id: str
    district: str
    from_: datetime = msgspec.field(name="from")
    to: datetime
    # Changes' rows settled (one per side, transaction and asset), and of them those
    # made before `from` that committed after an earlier settlement of their period.
    moves: int
    late: int
    positions: list[Position]
    created_by: str | None
    created_at: datetime


class SettlementPage(msgspec.Struct, kw_only=True):
    district: str
    settlements: list[SettlementOut]


def flows_of(rows: Iterable[tuple[str, str, str, int]]) -> list[Flow]:
    """Flows from single moves (side, counterparty, asset, amount)."""
    totals: dict[tuple[str, str, str], list[int]] = {}
    for side, counterparty, asset, amount in rows:
        t = totals.setdefault((side, counterparty, asset), [0, 0, 0])
        t[0 if amount > 0 else 1] += abs(amount)
        t[2] += 1
    return [
        Flow(side=s, counterparty=c, asset=a, out=o, back=b, moves=n)
        for (s, c, a), (o, b, n) in totals.items()
    ]


def positions(flows: Iterable[Flow], fen_per_point: Mapping[str, int]) -> list[Position]:
    """Every ordered pair with anything moved either way, by (from, to), each from
    its `from` side's own rows (which the other side mirrors)."""
    by_pair: dict[tuple[str, str], dict[str, Flow]] = {}
    for f in flows:
        by_pair.setdefault((f.side, f.counterparty), {})[f.asset] = f
    for a, b in list(by_pair):
        by_pair.setdefault((b, a), {})
    out: list[Position] = []
    for (a, b), assets in sorted(by_pair.items()):
        mirror = by_pair[(b, a)]
        points, minutes = assets.get("points"), assets.get("minutes")
        # A side with no row of its own for an asset still has the mirror's.
        net_points = _net(points, mirror.get("points"))
        net_minutes = _net(minutes, mirror.get("minutes"))
        out.append(
            Position(
                from_=a,
                to=b,
                points=_sent(points, mirror.get("points")),
                minutes=_sent(minutes, mirror.get("minutes")),
                net_points=net_points,
                net_minutes=net_minutes,
                net_fen_at_from=net_points * fen_per_point.get(a, 0),
                net_fen_at_to=net_points * fen_per_point.get(b, 0),
                moves=sum(f.moves for f in assets.values()),
            )
        )
    return out


def _sent(own: Flow | None, mirror: Flow | None) -> int:
    if own is not None:
        return own.out
    return mirror.back if mirror is not None else 0


def _net(own: Flow | None, mirror: Flow | None) -> int:
    if own is not None:
        return own.out - own.back
    return mirror.back - mirror.out if mirror is not None else 0
