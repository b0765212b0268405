"""Which rule set is in force: each process keeps a short-lived copy per community.

A community's versions (and its time zone and language) are read at most once per
`ttl_s` and compiled once per version and process. Publishing in this process refreshes
its copy at once; other processes see a new version within `ttl_s`. A version whose
`effective_from` is in the future is held until then. Communities that never published
run on the SPEC default (version 0).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import msgspec

from service import setup
from service.db import Conn, Queryable
from service.ledger.model import RuleParams
from service.rules import store
from service.rules.engine import CompiledRuleSet, compile_rule_set
from service.rules.model import DEFAULT_RULE_SET, RuleSet, rule_set_from_builtins

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ActiveRules(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    effective_from: datetime
    rule_set: RuleSet
    compiled: CompiledRuleSet


class _Community(msgspec.Struct, frozen=True, kw_only=True):
    timezone: str
    language: str
    versions: tuple[ActiveRules, ...]  # ascending version


_DEFAULT = ActiveRules(
    version=0,
    effective_from=_EPOCH,
    rule_set=DEFAULT_RULE_SET,
    compiled=compile_rule_set(DEFAULT_RULE_SET, 0),
)


class RuleBook:
    def __init__(self, ttl_s: float = 2.0) -> None:
        self._ttl_s = ttl_s
        self._communities: dict[str, tuple[float, _Community]] = {}
        self._compiled: dict[tuple[str, int], ActiveRules] = {}

    def forget(self, community: str) -> None:
        self._communities.pop(community, None)

    async def _load(self, conn: Queryable, community: str) -> _Community:
        cached = self._communities.get(community)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        found = await setup.get_community(conn, community)
        rows = await store.rule_set_versions(conn, community)
        versions = tuple(self._version(community, r) for r in rows)
        loaded = _Community(timezone=found.timezone, language=found.language, versions=versions)
        self._communities[community] = (time.monotonic() + self._ttl_s, loaded)
        return loaded

    def _version(self, community: str, row: Any) -> ActiveRules:
        """A stored version, compiled once per process: versions never change, and
        compiling a large rule set takes long enough (about 0.3 ms per expression) that
        doing it at every refresh would hold the event loop every `ttl_s`."""
        key = (community, row["version"])
        known = self._compiled.get(key)
        if known is None:
            rule_set = rule_set_from_builtins(row["document"], stored=True)
            known = ActiveRules(
                version=row["version"],
                effective_from=row["effective_from"],
                rule_set=rule_set,
                compiled=compile_rule_set(rule_set, row["version"]),
            )
            self._compiled[key] = known
        return known

    async def active(
        self, conn: Queryable, community: str, at: datetime | None = None
    ) -> ActiveRules:
        """The version in force at `at` (now by default)."""
        at = at or datetime.now(UTC)
        loaded = await self._load(conn, community)
        in_force = [v for v in loaded.versions if v.effective_from <= at]
        return max(in_force, key=lambda v: (v.effective_from, v.version)) if in_force else _DEFAULT

    async def versions(self, conn: Queryable, community: str) -> tuple[ActiveRules, ...]:
        return (await self._load(conn, community)).versions

    async def version(self, conn: Queryable, community: str, version: int) -> ActiveRules | None:
        """Version `version` (0: the SPEC default), in force or not; None if it does not
        exist. One published in another process since this copy was read is read now."""
        if version == 0:
            return _DEFAULT
        for attempt in range(2):
            if attempt:
                self.forget(community)
            for v in await self.versions(conn, community):
                if v.version == version:
                    return v
        return None

    async def timezone(self, conn: Queryable, community: str) -> str:
        return (await self._load(conn, community)).timezone

    async def language(self, conn: Queryable, community: str) -> str:
        """The language of the reasons the service writes for the community (service/i18n)."""
        return (await self._load(conn, community)).language

    async def params(self, conn: Queryable | Conn, community: str) -> RuleParams:
        """The baseline and floor the ledger's limits use now."""
        return (await self.active(conn, community)).rule_set.to_params()
