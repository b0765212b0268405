"""Pure: the scheme summary (service/reports) as one row per asset, with the
numbers of `GET …/reports/summary` as they are (definitions: service/reports/service.py)."""

from __future__ import annotations

from typing import Final
from zoneinfo import ZoneInfo

from service.exports.sheet import Cell, Yuan, local_time, words
from service.reports.service import AssetSummary, Summary

COLUMNS: Final = {
    "from": ("开始", "from"),
    "to": ("结束", "to"),
    "asset": ("资产", "asset"),
    "opening_outstanding": ("期初余额", "opening outstanding"),
    "issued": ("发放", "issued"),
    "deducted": ("扣减", "deducted"),
    "offset": ("物业费抵扣", "offset"),
    "redeemed": ("超市兑换", "redeemed"),
    "expired": ("过期", "expired"),
    "converted": ("时间银行兑换", "converted"),
    "adjusted": ("调整", "adjusted"),
    "transferred": ("转赠", "transferred"),
    "outstanding": ("期末余额", "outstanding"),
    "held_now": ("当前冻结", "held now"),
    "liability_points": ("可兑付积分", "liability (points)"),
    "liability_fen": ("可兑付金额（分）", "liability (fen)"),
    "liability_yuan": ("可兑付金额（元）", "liability (yuan)"),
    "liability_minutes": ("可兑付分钟", "liability (minutes)"),
    "expiring_next_90_days": ("90 天内到期", "expiring in 90 days"),
}
ASSETS: Final = {
    "points": ("积分", "points"),
    "minutes": ("时间（分钟）", "minutes"),
}


def header(language: str) -> list[Cell]:
    return list(words(language, COLUMNS).values())


def rows(summary: Summary, language: str, tz: ZoneInfo) -> list[list[Cell]]:
    return [_row(summary, a, language, tz) for a in summary.assets]


def _row(summary: Summary, asset: AssetSummary, language: str, tz: ZoneInfo) -> list[Cell]:
    fen = asset.liability.fen
    return [
        local_time(summary.start, tz),
        local_time(summary.end, tz),
        words(language, ASSETS).get(asset.asset, asset.asset),
        asset.opening_outstanding,
        asset.issued,
        asset.deducted,
        asset.offset,
        asset.redeemed,
        asset.expired,
        asset.converted,
        asset.adjusted,
        asset.transferred,
        asset.outstanding,
        asset.held_now,
        asset.liability.points,
        fen,
        None if fen is None else Yuan(fen),
        asset.liability.minutes,
        asset.expiring_next_90_days,
    ]
