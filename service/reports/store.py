"""asyncpg calls of the reports, one function per named query."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from service.db import Conn, q


async def flows(conn: Conn, community: str, start: datetime, end: datetime) -> list[asyncpg.Record]:
    """Net change of member balances in [start, end), per asset and flow."""
    return await conn.fetch(q("report_flows"), community, start, end)


async def outstanding(conn: Conn, community: str, at: datetime) -> list[asyncpg.Record]:
    """Members' posted balances at `at`, per asset."""
    return await conn.fetch(q("report_outstanding"), community, at)


async def held(conn: Conn, community: str) -> list[asyncpg.Record]:
    """What members' pending transactions hold now, per asset."""
    return await conn.fetch(q("report_held"), community)


async def liability(conn: Conn, community: str, baseline: int) -> list[asyncpg.Record]:
    """What members who have not moved out could redeem now, per asset."""
    return await conn.fetch(q("report_liability"), community, baseline)


async def expiring(
    conn: Conn, community: str, after: datetime, until: datetime
) -> list[asyncpg.Record]:
    """What members' open lots would expire in (after, until], per asset."""
    return await conn.fetch(q("report_expiring"), community, after, until)


async def leaderboard(conn: Conn, community: str, period: str, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(q("report_leaderboard"), community, period, limit)


async def set_leaderboard_opt_out(
    conn: Conn, community: str, member: str, opt_out: bool
) -> asyncpg.Record | None:
    return await conn.fetchrow(q("member_set_leaderboard_opt_out"), community, member, opt_out)


async def teams(
    conn: Conn, community: str, start: datetime, end: datetime, teams: list[str] | None
) -> list[asyncpg.Record]:
    """Per team: approved hours that started in [start, end), and what they earned."""
    return await conn.fetch(q("report_teams"), community, start, end, teams)


async def monthly(conn: Conn, community: str, tz: str) -> list[asyncpg.Record]:
    """Members' points per month of time zone `tz` and flow, with each month's closing total."""
    return await conn.fetch(q("report_monthly"), community, tz)
