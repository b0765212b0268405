"""The rule-set parameters the ledger's limits depend on.

Until a community publishes a rule set it runs on SPEC's default: baseline 100,
floor 0. Publishing rule sets arrives with the rules engine; this module is the
one place the ledger asks.
"""

from __future__ import annotations

import asyncpg

from service.ledger.model import RuleParams
from service.ledger.store import Conn

DEFAULT_PARAMS = RuleParams(baseline=100, floor=0)


async def active_params(conn: Conn | asyncpg.Pool, community: str) -> RuleParams:
    """The active rule set's baseline and floor for `community`."""
    del conn, community
    return DEFAULT_PARAMS
