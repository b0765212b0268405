"""Where a community's language is read when no cached copy is at hand."""

from __future__ import annotations

from service.db import Queryable, q
from service.errors import NotFound


async def community_language(conn: Queryable, community: str) -> str:
    """The language of `community`'s system reasons: one round trip. Use cases that
    have the rule book ask it instead (`RuleBook.language`, cached with the rules);
    this is for those below it that do not, such as a reversal."""
    language: str | None = await conn.fetchval(q("community_language"), community)
    if language is None:
        raise NotFound(f"no community {community!r}")
    return language
