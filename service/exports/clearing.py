"""Pure: a district's settlement (service/network) as a sheet, one row per ordered
pair of communities with the numbers of `GET …/settlements/{s}` as they are, then
the totals a district office checks: every net position has its mirror, so the
points of all rows sum to zero."""

from __future__ import annotations

from typing import Final
from zoneinfo import ZoneInfo

from service.exports.sheet import Cell, Yuan, local_time, words
from service.network.model import SettlementOut

COLUMNS: Final = {
    "settlement": ("结算单号", "settlement"),
    "from_time": ("开始", "from"),
    "to_time": ("结束", "to"),
    "from": ("付方社区", "from community"),
    "to": ("收方社区", "to community"),
    "points": ("流出积分", "points sent"),
    "minutes": ("流出分钟", "minutes sent"),
    "net_points": ("净额（积分）", "net (points)"),
    "net_minutes": ("净额（分钟）", "net (minutes)"),
    "net_fen_at_from": ("净额（分，付方价）", "net (fen at from's rate)"),
    "net_yuan_at_from": ("净额（元，付方价）", "net (yuan at from's rate)"),
    "net_fen_at_to": ("净额（分，收方价）", "net (fen at to's rate)"),
    "net_yuan_at_to": ("净额（元，收方价）", "net (yuan at to's rate)"),
    "moves": ("笔数", "moves"),
}
TOTAL: Final = {"total": ("合计（应为 0）", "totals (zero when balanced)")}


def header(language: str) -> list[Cell]:
    return list(words(language, COLUMNS).values())


def rows(settlement: SettlementOut, tz: ZoneInfo) -> list[list[Cell]]:
    start, end = local_time(settlement.from_, tz), local_time(settlement.to, tz)
    return [
        [
            settlement.id,
            start,
            end,
            p.from_,
            p.to,
            p.points,
            p.minutes,
            p.net_points,
            p.net_minutes,
            p.net_fen_at_from,
            Yuan(p.net_fen_at_from),
            p.net_fen_at_to,
            Yuan(p.net_fen_at_to),
            p.moves,
        ]
        for p in settlement.positions
    ]


def totals(settlement: SettlementOut, language: str) -> list[list[Cell]]:
    net_points = sum(p.net_points for p in settlement.positions)
    net_minutes = sum(p.net_minutes for p in settlement.positions)
    label = words(language, TOTAL)["total"]
    moves = sum(p.moves for p in settlement.positions)
    row: list[Cell] = [label, None, None, None, None, None, None, net_points, net_minutes]
    return [[*row, None, None, None, None, moves]]
