"""The scheme summary (reconciled with the ledger), the monthly leaderboard, and the
monthly report of volunteer teams.

Summary definitions, per asset, over transactions posted in [from, to): every
posting with a member account on one side moves member balances, and the account on
the other side says which flow it was (postings between members, or between two
non-member accounts, leave the members' total unchanged or untouched):

- `issued`: net into members from `system:issuance`, `system:opening`, `system:timebank`;
- `deducted`: net out of members to `system:penalties`;
- `offset`: net out to `property:*:offsets` (reversed offsets count back);
- `redeemed`: net out to `store:*:redemptions` (returns count back);
- `expired`: net out to `system:expired`;
- `converted`: points credited from `system:conversion` (asset points), or minutes
  debited to it (asset minutes);
- `adjusted`: net into members from any other account (e.g. `system:adjustments`);
- `transferred`: net between members, always 0 (both sides are members), reported
  so the identity below visibly holds;
- `opening_outstanding` / `outstanding`: members' posted balances at `from` / `to`.

And, whatever the window, two numbers of now (SPEC section 9), members who moved out
left out:

- `liability`: what members could redeem: points above the baseline and not held, at
  the active rule set's `fen_per_point` (`{points, fen}`); minutes not held
  (`{minutes}`);
- `expiring_next_90_days`: what of their open lots (less what is held) expires in
  (now, now + 90 days].

So `outstanding = opening_outstanding + issued − deducted − offset − redeemed −
expired + adjusted + transferred + converted` (points) or `… − converted` (minutes).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import msgspec

from service.db import Conn
from service.errors import NotFound, ValidationFailed
from service.ledger.model import ASSETS
from service.reports import store
from service.rules.model import RuleSet
from service.rules.periods import period_from_key

_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
# How each flow's net change of member balances turns into the reported (positive) number.
_SIGN = {
    "issued": 1,
    "deducted": -1,
    "offset": -1,
    "redeemed": -1,
    "expired": -1,
    "adjusted": 1,
    "transfer": 1,
}
EXPIRING_WINDOW = timedelta(days=90)


class Liability(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What members could redeem of one asset: `{points, fen}` (the points at the
    active rule set's `fen_per_point`) for points, `{minutes}` for minutes."""

    points: int | None = None
    fen: int | None = None
    minutes: int | None = None


class AssetSummary(msgspec.Struct, kw_only=True):
    asset: str
    opening_outstanding: int
    issued: int = 0
    deducted: int = 0
    offset: int = 0
    redeemed: int = 0
    expired: int = 0
    converted: int = 0
    adjusted: int = 0
    transferred: int = 0
    outstanding: int
    held_now: int
    liability: Liability
    expiring_next_90_days: int


class Summary(msgspec.Struct, kw_only=True):
    start: datetime = msgspec.field(name="from")
    end: datetime = msgspec.field(name="to")
    assets: list[AssetSummary]


class Leader(msgspec.Struct, kw_only=True):
    rank: int
    member: str
    name: str | None
    earned: int


class Leaderboard(msgspec.Struct, kw_only=True):
    period: str
    leaders: list[Leader]


def _by_asset(rows: list[asyncpg.Record]) -> dict[str, int]:
    return {r[0]: r[1] for r in rows}


async def summary(
    conn: Conn, community: str, start: datetime, end: datetime, rule_set: RuleSet, now: datetime
) -> Summary:
    """Per-asset flows in [start, end), read in one snapshot so they reconcile exactly;
    the liability and what expires soon as of `now`, valued by `rule_set` (the active one)."""
    if end <= start:
        raise ValidationFailed("`to` must be after `from`")
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        flows = await store.flows(conn, community, start, end)
        opening = _by_asset(await store.outstanding(conn, community, start))
        closing = _by_asset(await store.outstanding(conn, community, end))
        held = _by_asset(await store.held(conn, community))
        redeemable = _by_asset(await store.liability(conn, community, rule_set.baseline))
        expiring = _by_asset(await store.expiring(conn, community, now, now + EXPIRING_WINDOW))
    points = redeemable.get("points", 0)
    liability = {
        "points": Liability(points=points, fen=points * rule_set.fen_per_point),
        "minutes": Liability(minutes=redeemable.get("minutes", 0)),
    }
    assets = {
        a: AssetSummary(
            asset=a,
            opening_outstanding=opening.get(a, 0),
            outstanding=closing.get(a, 0),
            held_now=held.get(a, 0),
            liability=liability[a],
            expiring_next_90_days=expiring.get(a, 0),
        )
        for a in ASSETS
    }
    for row in flows:
        summary_ = assets[row["asset"]]
        flow, net = row["flow"], row["net"]
        if flow == "converted":
            summary_.converted = net if row["asset"] == "points" else -net
        elif flow == "transfer":
            summary_.transferred = net
        else:
            setattr(summary_, flow, _SIGN[flow] * net)
    return Summary(start=start, end=end, assets=list(assets.values()))


async def leaderboard(conn: Conn, community: str, period: str, limit: int) -> Leaderboard:
    """Top earners of a month (points earned through rules), opted-out members left out."""
    if not _PERIOD.match(period):
        raise ValidationFailed("period is a month: YYYY-MM")
    rows = await store.leaderboard(conn, community, period, limit)
    return Leaderboard(
        period=period,
        leaders=[
            Leader(rank=i + 1, member=r["member_id"], name=r["name"], earned=r["earned"])
            for i, r in enumerate(rows)
        ],
    )


class TeamReport(msgspec.Struct, kw_only=True):
    """One team's month: `hours` approved entries, their `minutes`, the distinct
    members who served (`volunteers`), and the net `points` the rules posted for
    their approvals. `team` null: hours logged without a team."""

    team: str | None
    hours: int
    minutes: int
    volunteers: int
    points: int


class TeamsReport(msgspec.Struct, kw_only=True):
    period: str
    teams: list[TeamReport]


async def teams(
    conn: Conn, community: str, period: str, tz: str, limited_to: tuple[str, ...] | None
) -> TeamsReport:
    """Per team, the approved hours whose work started in month `period` (the
    community's time zone `tz`); only the teams `limited_to` names, if it does."""
    if not _PERIOD.match(period):
        raise ValidationFailed("period is a month: YYYY-MM")
    if not 2 <= int(period[:4]) <= 9998:
        # Hours start only in years whose periods exist (hours.log_hours), and the
        # ends of a month of year 1 or 9999 may not be instants at all.
        raise ValidationFailed("period is out of range (years 0002 … 9998)")
    month = period_from_key(period, tz)
    scope = None if limited_to is None else list(limited_to)
    rows = await store.teams(conn, community, month.start, month.end, scope)
    return TeamsReport(
        period=period,
        teams=[
            TeamReport(
                team=r["team"],
                hours=r["hours"],
                minutes=r["minutes"],
                volunteers=r["volunteers"],
                points=r["points"],
            )
            for r in rows
        ],
    )


class LeaderboardChoice(msgspec.Struct, kw_only=True):
    member: str
    leaderboard_opt_out: bool


async def set_opt_out(conn: Conn, community: str, member: str, opt_out: bool) -> LeaderboardChoice:
    row = await store.set_leaderboard_opt_out(conn, community, member, opt_out)
    if row is None:
        raise NotFound(f"no member {member!r} in community {community!r}")
    return LeaderboardChoice(member=row["id"], leaderboard_opt_out=row["leaderboard_opt_out"])


class MonthFlows(msgspec.Struct, kw_only=True):
    """One month (`YYYY-MM` in the community's time zone) of the members' points, as
    the summary counts them over that month; `outstanding` at the month's end."""

    period: str
    issued: int = 0
    deducted: int = 0
    offset: int = 0
    redeemed: int = 0
    expired: int = 0
    converted: int = 0
    adjusted: int = 0
    outstanding: int = 0


def last_months(now: datetime, tz: str, count: int) -> list[str]:
    """The `count` months ending with `now`'s, in time zone `tz`, oldest first."""
    local = now.astimezone(ZoneInfo(tz))
    index = local.year * 12 + local.month - 1
    return [f"{i // 12:04d}-{i % 12 + 1:02d}" for i in range(index - count + 1, index + 1)]


async def monthly(
    conn: Conn, community: str, tz: str, now: datetime, months: int = 12
) -> list[MonthFlows]:
    """The points' flows of each of the last `months` months (the dashboard), with
    the same signs as `summary`; a month in which nothing moved shows the total of
    the month before."""
    rows = await store.monthly(conn, community, tz)
    result = {p: MonthFlows(period=p) for p in last_months(now, tz, months)}
    ends: dict[str, int] = {}
    for row in rows:
        ends[row["period"]] = row["outstanding"]
        month = result.get(row["period"])
        if month is None or row["flow"] == "transfer":
            continue
        sign = 1 if row["flow"] == "converted" else _SIGN[row["flow"]]
        setattr(month, row["flow"], sign * row["net"])
    carried = 0
    known = sorted(ends)
    for period, month in result.items():
        earlier = [p for p in known if p <= period]
        carried = ends[earlier[-1]] if earlier else carried
        month.outstanding = carried
    return list(result.values())
