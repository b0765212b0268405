"""What the tests share: names, keys and paths defined once, and small builders."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import uvicorn
from litestar import Litestar
from litestar.testing import AsyncTestClient

Client = AsyncTestClient[Any]

ROOT = Path(__file__).resolve().parents[1]  # the repository
K8S = ROOT / "k8s"

ADMIN_KEY = "test-admin-key-0123456789abcdefghij"  # 32+ characters, as the service requires
TEMPLATE = "ledger_template"  # the migrated database each test's database copies

C = "/v1/communities/green"
BATCH = f"{C}/transactions:batch"
OFFSETS = f"{C}/offsets"

ISSUANCE = "system:issuance:points"
STORE = "store:s1:redemptions"
ACME_OFFSETS = "property:acme:offsets"  # household h0's property company (`community`)

SH = "Asia/Shanghai"


def bearer(key: str) -> dict[str, str]:
    """The Authorization header that presents `key`."""
    return {"Authorization": f"Bearer {key}"}


def with_database(dsn: str, name: str) -> str:
    """`dsn` with its database replaced by `name`."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


def transfer(
    tx_id: str, source: str, destination: str, amount: int, asset: str = "points", **extra: Any
) -> dict[str, Any]:
    posting = {"source": source, "destination": destination, "asset": asset, "amount": amount}
    return {"id": tx_id, "postings": [posting], **extra}


async def community(client: Client, members: int = 2, households: int = 1) -> None:
    """Community `green`, households h0…, members m0… spread over them."""
    r = await client.post("/v1/communities", json={"id": "green", "name": "Green Court"})
    assert r.status_code == 201, r.text
    for h in range(households):
        body = {"id": f"h{h}", "property_company": "acme" if h % 2 == 0 else "other"}
        r = await client.post(f"{C}/households", json=body)
        assert r.status_code == 201, r.text
    for m in range(members):
        r = await client.post(
            f"{C}/members", json={"id": f"m{m}", "household": f"h{m % households}"}
        )
        assert r.status_code == 201, r.text


async def award(client: Client, tx_id: str, member: str, amount: int) -> None:
    body = transfer(tx_id, "system:issuance:points", f"member:{member}:points", amount)
    r = await client.post(f"{C}/transactions", json=body)
    assert r.status_code == 201, r.text


async def balance(client: Client, member: str) -> dict[str, Any]:
    r = await client.get(f"{C}/members/{member}/balance")
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


class FakeClock:
    """A monotonic clock the test moves by hand (`clock.now += 10`)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (for a server a test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def admin_sql(server_dsn: str, statement: str) -> None:
    """Runs one statement (CREATE or DROP DATABASE) on the test server itself."""
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextmanager
def served(app: Litestar) -> Iterator[str]:
    """`app` under uvicorn in a thread on a free port (its own event loop), for a
    client that is not in the test's process: a generated client, a browser."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
