"""Fixtures of the fault suite: a PostgreSQL of the test's own, migrated; and
`api`, the app driven as a server would (requests interleave in one event loop,
the concurrency tests' fixture), so a request that holds the loop shows up as
latency on every other request."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.db import migrate
from tests.concurrency.conftest import api
from tests.conftest import audit_all
from tests.faults.live import Postgres

__all__ = ["api", "own_postgres"]


@pytest.fixture
async def own_postgres() -> AsyncIterator[Postgres]:
    """A migrated database on a server this test may stop or freeze; audited at the end.
    In a directory of its own under the temporary root, which the server's system
    user can reach (pytest's `tmp_path` is private to root)."""
    with tempfile.TemporaryDirectory(prefix="ledger-fault-") as tmp:
        server = Postgres(Path(tmp) / "pg")
        try:
            await migrate(server.uri)
            yield server
            await audit_all(server.uri)
        finally:
            server.close()
