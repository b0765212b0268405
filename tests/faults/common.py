"""Load the fault tests share: a community, and writers whose every id is kept."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field

import httpx

from tests.helpers import C

MEMBERS = 4


async def community(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/communities", json={"id": "green", "name": "Green Court"})
    assert r.status_code == 201, r.text
    r = await api.post(f"{C}/households", json={"id": "h0", "property_company": "acme"})
    assert r.status_code == 201, r.text
    for m in range(MEMBERS):
        r = await api.post(f"{C}/members", json={"id": f"m{m}", "household": "h0"})
        assert r.status_code == 201, r.text


def award(tx_id: str, member: int, amount: int) -> dict[str, object]:
    posting = {
        "source": "system:issuance:points",
        "destination": f"member:m{member}:points",
        "asset": "points",
        "amount": amount,
    }
    return {"id": tx_id, "postings": [posting]}


@dataclass
class Ledger:
    """Every award a writer sent, and which of them were acknowledged (2xx)."""

    sent: dict[str, dict[str, object]] = field(default_factory=dict)
    acknowledged: set[str] = field(default_factory=set)
    statuses: list[int] = field(default_factory=list)
    problems: list[httpx.Response] = field(default_factory=list)
    slowest_s: float = 0.0


async def write(api: httpx.AsyncClient, ledger: Ledger, writer: str, seconds: float) -> None:
    """Awards as fast as they are answered for `seconds`; a failure is recorded, never raised."""
    deadline = time.monotonic() + seconds
    for n in itertools.count():
        if time.monotonic() >= deadline:
            return
        tx_id = f"{writer}-{n}"
        body = award(tx_id, n % MEMBERS, 1 + n % 7)
        ledger.sent[tx_id] = body
        started = time.monotonic()
        try:
            r = await api.post(f"{C}/transactions", json=body)
        except httpx.HTTPError:
            await asyncio.sleep(0.05)
            continue
        finally:
            ledger.slowest_s = max(ledger.slowest_s, time.monotonic() - started)
        ledger.statuses.append(r.status_code)
        if r.status_code in (200, 201):
            ledger.acknowledged.add(tx_id)
        else:
            ledger.problems.append(r)
            await asyncio.sleep(0.02)


async def load(
    api: httpx.AsyncClient, seconds: float, name: str, writers: int = 8, into: Ledger | None = None
) -> Ledger:
    """`writers` concurrent writers for `seconds`, their ids prefixed with `name`."""
    ledger = into or Ledger()
    await asyncio.gather(*(write(api, ledger, f"{name}{w}", seconds) for w in range(writers)))
    return ledger


async def settle(api: httpx.AsyncClient, ledger: Ledger) -> None:
    """Sends every id again: an acknowledged one must replay, any other creates or
    replays; then each member's score is exactly the baseline plus its awards (of
    every load into `ledger`: loads share one ledger so that none is left out)."""
    for tx_id, body in ledger.sent.items():
        r = await api.post(f"{C}/transactions", json=body)
        if tx_id in ledger.acknowledged:
            assert r.status_code == 200, (tx_id, r.status_code, r.text)
            assert r.headers.get("Idempotent-Replayed") == "true"
        else:
            assert r.status_code in (200, 201), (tx_id, r.status_code, r.text)
    expected = [100] * MEMBERS
    for body in ledger.sent.values():
        posting = body["postings"][0]  # type: ignore[index]
        expected[int(posting["destination"].split(":")[1][1:])] += posting["amount"]
    for m in range(MEMBERS):
        r = await api.get(f"{C}/members/m{m}/balance")
        assert r.status_code == 200, r.text
        assert r.json()["points"]["score"] == expected[m], f"m{m}"


async def until_ok(api: httpx.AsyncClient, path: str, within_s: float) -> float:
    """Seconds until `path` answers 200, polling; fails after `within_s`."""
    started = time.monotonic()
    while time.monotonic() - started < within_s:
        try:
            if (await api.get(path)).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"{path} did not recover within {within_s} s")
