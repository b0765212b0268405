"""A random walk through the ledger API, checked after every step against a small model.

Hypothesis draws sequences of operations: transfers valid and invalid (over-spends,
bad amounts, unknown accounts and members, asset mismatches, self-transfers, empty
and oversized posting lists), holds, posts in full or in part, voids, reversals,
replays of earlier ids with the same or a different body, batches (atomic or not)
and expiry runs. Each example runs the real app on a fresh database.

After each step: the answer is the one the model predicts (2xx, or a 4xx
problem+json with the predicted `code`, never a 5xx), a refused operation changes
nothing, and every member's balance equals the model's, with `redeemable` and
minutes never negative. At the end every account, every transaction and the
ledger's own audit agree with the model.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.config import load_settings
from service.db import create_pool
from service.ledger.service import expire_due
from tests.citus_support import Databases
from tests.conftest import audit_all
from tests.helpers import ADMIN_KEY, bearer

C = "/v1/communities/walk"
MEMBERS = ("m0", "m1", "m2")
BASELINE = 100
MAX_AMOUNT = 10**12
ACCOUNTS: dict[str, list[str]] = {
    "points": [
        *(f"member:{m}:points" for m in MEMBERS),
        "system:issuance:points",
        "system:penalties:points",
        "property:acme:offsets",
        "store:s1:redemptions",
    ],
    "minutes": [
        *(f"member:{m}:minutes" for m in MEMBERS),
        "system:timebank:minutes",
        "system:conversion:minutes",
    ],
}
# Well-formed addresses of a member who does not exist: 404 once all else is valid.
GHOSTS = {"member:ghost:points": "points", "member:ghost:minutes": "minutes"}
# Addresses refused as a 422 whatever the asset.
MALFORMED = ["bogus:x:points", "system:bank:points", "member:m0", "m0", "member:" + "x" * 200]
ASSET_OF = {a: asset for asset, accounts in ACCOUNTS.items() for a in accounts} | GHOSTS
BAD_AMOUNTS: list[Any] = [0, -1, 1.5, 2.0, 10**13, MAX_AMOUNT + 1, "5", True, None]
Expected = tuple[int, str | None]  # status, and the problem code if it is an error
_databases = itertools.count()


# --- what to do -------------------------------------------------------------------------


def weighted(*options: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of `options`, each drawn in proportion to its weight.

    (`st.one_of` would not do: it draws its branches about evenly, and merges repeats.)
    """
    slots = [strategy for weight, strategy in options for _ in range(weight)]
    return st.integers(0, len(slots) - 1).flatmap(lambda i: slots[i])


amounts = weighted((6, st.integers(1, 30)), (3, st.integers(1, 300)), (1, st.just(MAX_AMOUNT)))


@st.composite
def posting(draw: st.DrawFn) -> dict[str, Any]:
    """A posting the service accepts on its own (it may still over-spend)."""
    asset = draw(st.sampled_from(["points", "minutes"]))
    source = draw(st.sampled_from(ACCOUNTS[asset]))
    destination = draw(st.sampled_from([a for a in ACCOUNTS[asset] if a != source]))
    return {"source": source, "destination": destination, "asset": asset, "amount": draw(amounts)}


# One thing wrong with the first posting, the posting list, or the hold.
flaw = weighted(
    (2, st.tuples(st.just("amount"), st.sampled_from(BAD_AMOUNTS))),
    (
        2,
        st.tuples(
            st.sampled_from(["source", "destination"]), st.sampled_from([*GHOSTS, *MALFORMED])
        ),
    ),
    (1, st.tuples(st.sampled_from(["asset", "self", "ttl", "empty", "many"]), st.just(None))),
)
new_transaction = st.tuples(
    weighted(
        (3, st.lists(posting(), min_size=1, max_size=1)),
        (1, st.lists(posting(), min_size=2, max_size=3)),
    ),
    weighted((4, st.none()), (1, flaw)),
    st.sampled_from([None, None, None, {}, {"ttl_s": 3600}]),
    st.sampled_from([None, "soap", {"k": 1}]),
)
ref = st.integers(0, 10**6)
post_amount = weighted(
    (5, st.sampled_from([("none",), ("empty",), ("null",), ("full",), ("over",)])),
    (3, st.tuples(st.just("part"), st.integers(0, 1000))),
    (1, st.tuples(st.just("bad"), st.sampled_from([0, -1, 1.5, "5", 10**13]))),
)
batch_item = weighted(
    (3, st.tuples(st.just("new"), new_transaction)),
    (1, st.tuples(st.just("replay"), ref, st.booleans())),
)
operation = weighted(
    (8, st.tuples(st.just("create"), new_transaction)),
    (3, st.tuples(st.just("post"), ref, post_amount)),
    (2, st.tuples(st.just("void"), ref)),
    (2, st.tuples(st.just("reverse"), ref)),
    (2, st.tuples(st.just("replay"), ref, st.booleans())),
    (1, st.tuples(st.just("batch"), st.lists(batch_item, min_size=1, max_size=5), st.booleans())),
    (1, st.tuples(st.just("expire"))),
)


def transaction(
    tx_id: str,
    postings: list[dict[str, Any]],
    fault: tuple[str, Any] | None,
    pending: dict[str, Any] | None,
    memo: str | dict[str, Any] | None,
) -> dict[str, Any]:
    """The body of a create, with `fault` (if any) worked into it."""
    body: dict[str, Any] = {"id": tx_id, "postings": [dict(p) for p in postings]}
    first = body["postings"][0]
    if pending is not None:
        body["pending"] = pending
    if isinstance(memo, str):
        body["memo"] = memo
    elif memo is not None:
        body["metadata"] = memo
    match fault:
        case ("asset", _):
            first["asset"] = "minutes" if first["asset"] == "points" else "points"
        case ("self", _):
            first["destination"] = first["source"]
        case ("ttl", _):
            body["pending"] = {"ttl_s": 0}
        case ("empty", _):
            body["postings"] = []
        case ("many", _):
            body["postings"] = [first] * 65
        case (key, value):
            first[key] = value
    return body


# --- the model ----------------------------------------------------------------------------


@dataclass
class Tx:
    id: str
    status: str
    postings: list[dict[str, Any]]  # posted; reserved while pending or once voided
    reserved: list[dict[str, Any]] | None = None
    expires: bool = False
    request: str | None = None  # the creating request, canonical, to recognise replays
    created: dict[str, Any] | None = None  # the creating response, which replays repeat
    reversal: str | None = None
    reversal_of: str | None = None


def canonical(body: dict[str, Any]) -> str:
    """The request as the service compares replays: an absent field and a null are alike."""
    trimmed = {k: v for k, v in body.items() if v is not None}
    return json.dumps(trimmed | {"pending": body.get("pending")}, sort_keys=True)


def valid_amount(amount: Any) -> bool:
    return type(amount) is int and 1 <= amount <= MAX_AMOUNT


def net(postings: list[dict[str, Any]]) -> Counter[str]:
    change: Counter[str] = Counter()
    for p in postings:
        change[p["source"]] -= p["amount"]
        change[p["destination"]] += p["amount"]
    return change


def swapped(postings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p | {"source": p["destination"], "destination": p["source"]} for p in postings]


def malformed(body: dict[str, Any]) -> bool:
    """Refused as a 422, by the wire decoder or by the core's posting checks."""
    pending = body.get("pending")
    if pending is not None and pending.get("ttl_s") is not None and pending["ttl_s"] < 1:
        return True
    if not 1 <= len(body["postings"]) <= 64:
        return True
    for p in body["postings"]:
        if not valid_amount(p["amount"]) or p["source"] == p["destination"]:
            return True
        if any(ASSET_OF.get(p[side]) != p["asset"] for side in ("source", "destination")):
            return True
    return False


@dataclass
class Model:
    """Balances and transactions as the service should have them."""

    posted: Counter[str] = field(default_factory=Counter)
    held: Counter[str] = field(default_factory=Counter)
    txs: dict[str, Tx] = field(default_factory=dict)
    opened: set[str] = field(default_factory=set)

    def fits(self, postings: list[dict[str, Any]], *, floor_mode: bool) -> bool:
        """Every member account it debits stays at or above its minimum: the baseline
        for a spend of points, the floor (0) for a reversal, 0 for minutes."""
        for address, change in net(postings).items():
            if change >= 0 or not address.startswith("member:"):
                continue
            minimum = BASELINE if address.endswith(":points") and not floor_mode else 0
            if self.posted[address] - self.held[address] + change < minimum:
                return False
        return True

    def hold(self, postings: list[dict[str, Any]], sign: int) -> None:
        for address, change in net(postings).items():
            if change < 0 and address.startswith("member:"):
                self.held[address] -= sign * change

    def post(self, postings: list[dict[str, Any]]) -> None:
        self.posted.update(net(postings))

    def expect_create(self, body: dict[str, Any]) -> Expected:
        """In the service's order: the body, the id, the accounts, the limits."""
        if malformed(body):
            return 422, "validation_error"
        existing = self.txs.get(body["id"])
        if existing is not None:
            same = existing.request == canonical(body)
            return (200, None) if same else (409, "idempotency_conflict")
        if any(p[side] in GHOSTS for p in body["postings"] for side in ("source", "destination")):
            return 404, "not_found"
        if not self.fits(body["postings"], floor_mode=False):
            return 409, "insufficient_points"
        return 201, None

    def apply_new(self, body: dict[str, Any]) -> Tx:
        """The effect of creating `body`: posted at once, or held."""
        postings = body["postings"]
        pending = body.get("pending") is not None
        if pending:
            self.hold(postings, +1)
        else:
            self.post(postings)
        self.opened |= {p[side] for p in postings for side in ("source", "destination")}
        tx = Tx(
            id=body["id"],
            status="pending" if pending else "posted",
            postings=postings,
            reserved=postings if pending else None,
            expires=pending and body["pending"].get("ttl_s") is not None,
            request=canonical(body),
        )
        self.txs[body["id"]] = tx
        return tx

    def created(self, body: dict[str, Any], data: dict[str, Any]) -> None:
        """Takes in a transaction the service wrote, after checking what it returned."""
        tx = self.apply_new(body)
        assert (data["id"], data["status"]) == (tx.id, tx.status), data
        assert (data["kind"], data["reversal_of"], data["postings"]) == (
            "transfer",
            None,
            body["postings"],
        ), data
        tx.created = data


# --- the walk -----------------------------------------------------------------------------


def posting_of(source: str, destination: str, amount: int, asset: str) -> dict[str, Any]:
    return {"source": source, "destination": destination, "asset": asset, "amount": amount}


class Walk:
    def __init__(self, client: AsyncTestClient[Any], pool: asyncpg.Pool) -> None:
        self.client = client
        self.pool = pool  # this loop's own: the app's pool lives in the client's loop
        self.model = Model()
        self.ids: list[str] = ["nope"]  # every id an operation may refer to
        self.bodies: list[dict[str, Any]] = []  # every create sent, for replays
        self.refused: set[str] = set()  # ids only ever refused: they must not exist
        self.log: list[str] = []

    async def setup(self) -> None:
        """Members m0..m2, each with points above the baseline and banked minutes."""
        r = await self.client.post("/v1/communities", json={"id": "walk", "name": "Walk"})
        assert r.status_code == 201, r.text
        r = await self.client.post(f"{C}/households", json={"id": "h0", "property_company": "acme"})
        assert r.status_code == 201, r.text
        model = self.model
        for m in MEMBERS:
            r = await self.client.post(f"{C}/members", json={"id": m, "household": "h0"})
            assert r.status_code == 201, r.text
            opening = [
                posting_of("system:opening:points", f"member:{m}:points", BASELINE, "points")
            ]
            model.post(opening)
            model.txs[f"{m}:opening"] = Tx(id=f"{m}:opening", status="posted", postings=opening)
            model.opened |= {"system:opening:points", f"member:{m}:points", f"member:{m}:minutes"}
            self.ids.append(f"{m}:opening")
        for n, m in enumerate(MEMBERS):
            for source, asset, amount in [
                ("system:issuance:points", "points", 100 * (n + 1)),
                ("system:timebank:minutes", "minutes", 120),
            ]:
                body = {"id": f"s{n}{asset}", "postings": []}
                body["postings"].append(posting_of(source, f"member:{m}:{asset}", amount, asset))
                await self.create(body)

    # -- checking answers

    def _answer(self, r: Any, expected: Expected) -> dict[str, Any]:
        """Checks the status and problem code; returns the body."""
        where = f"after {self.log[-1]}: {r.status_code} {r.text[:500]}"
        assert r.status_code < 500, where
        data: dict[str, Any] = r.json()
        code = None
        if r.status_code >= 400:
            assert r.headers["content-type"].startswith("application/problem+json"), where
            code = data.get("code")
            assert isinstance(code, str) and data.get("status") == r.status_code, where
        assert (r.status_code, code) == expected, f"expected {expected} {where}"
        return data

    def _settle_create(self, body: dict[str, Any], status: int, data: dict[str, Any]) -> None:
        if status == 200:
            assert data == self.model.txs[body["id"]].created, self.log[-1]
        elif status == 201:
            self.model.created(body, data)
            self.refused.discard(body["id"])
        elif body["id"] not in self.model.txs:
            self.refused.add(body["id"])

    def _ref(self, n: int, prefer: str | None = None) -> str:
        """Any id ever sent (or none at all) a quarter of the time; else a stored
        transaction, half the time one with status `prefer`."""
        stored = list(self.model.txs)
        preferred = [t for t in stored if self.model.txs[t].status == prefer]
        choices = [self.ids, stored, preferred or stored, preferred or stored][n % 4]
        return choices[n // 4 % len(choices)]

    def _body(self, item: tuple[Any, ...]) -> dict[str, Any]:
        """A new create body, or an earlier one again (maybe with another memo)."""
        if item[0] == "new":
            self.ids.append(f"t{len(self.ids)}")
            return transaction(self.ids[-1], *item[1])
        if not self.bodies:
            return {}
        body = self.bodies[item[1] % len(self.bodies)]
        return body | {"memo": f"changed {len(self.log)}"} if item[2] else body

    # -- operations

    async def run(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        if kind in ("create", "replay"):
            body = self._body(("new", op[1]) if kind == "create" else op)
            if body:
                await self.create(body)
        elif kind == "post":
            await self.post(self._ref(op[1], "pending"), op[2])
        elif kind == "void":
            await self.void(self._ref(op[1], "pending"))
        elif kind == "reverse":
            await self.reverse(self._ref(op[1], "posted"))
        elif kind == "batch":
            await self.batch([self._body(item) for item in op[1]], atomic=op[2])
        elif kind == "expire":
            await self.expire()
        await self.check_balances()

    async def create(self, body: dict[str, Any]) -> None:
        self.log.append(f"create {json.dumps(body)}")
        self.bodies.append(body)
        expected = self.model.expect_create(body)
        data = self._answer(await self.client.post(f"{C}/transactions", json=body), expected)
        self._settle_create(body, expected[0], data)

    async def batch(self, bodies: list[dict[str, Any]], *, atomic: bool) -> None:
        """Items are applied in order, each on its own; `atomic`: all of them or none,
        and the answer is the first refusal (a malformed item before all others)."""
        bodies = [b for b in bodies if b]
        if not bodies:
            return
        self.log.append(f"batch atomic={atomic} {json.dumps(bodies)}")
        self.bodies.extend(bodies)
        trial = copy.deepcopy(self.model)
        outcomes: list[Expected] = []
        for body in bodies:
            outcomes.append(trial.expect_create(body))
            if outcomes[-1][0] == 201:
                trial.apply_new(body)
        refusals = [i for i, o in enumerate(outcomes) if o[0] >= 400]
        malformed_items = [i for i, o in enumerate(outcomes) if o[0] == 422]
        request = {"transactions": bodies, "atomic": atomic}
        r = await self.client.post(f"{C}/transactions:batch", json=request)
        if atomic and refusals:
            first = (malformed_items or refusals)[0]
            data = self._answer(r, outcomes[first])
            assert data.get("index") == first, data
            for body in bodies:
                if body["id"] not in self.model.txs:
                    self.refused.add(body["id"])
            return
        results = self._answer(r, (200, None))["results"]
        assert len(results) == len(bodies), results
        for body, result in zip(bodies, results, strict=True):
            expected = self.model.expect_create(body)
            problem = result["problem"]
            got = (result["status"], problem["code"] if problem else None)
            assert got == expected, f"item {body['id']}: expected {expected}, got {result}"
            self._settle_create(body, expected[0], result["transaction"])

    def _expect_post(self, tx: Tx | None, amount: Any) -> Expected:
        if amount is not None and not valid_amount(amount):
            return 422, "validation_error"
        if tx is None:
            return 404, "not_found"
        if tx.status == "posted":
            same = len(tx.postings) == 1 and tx.postings[0]["amount"] == amount
            return (200, None) if amount is None or same else (409, "invalid_state")
        if tx.status == "voided":
            return 409, "invalid_state"
        assert tx.reserved is not None
        if amount is not None and (len(tx.reserved) != 1 or amount > tx.reserved[0]["amount"]):
            return 422, "validation_error"
        return 200, None

    async def post(self, tx_id: str, spec: tuple[Any, ...]) -> None:
        tx = self.model.txs.get(tx_id)
        held = tx.postings[0]["amount"] if tx else 7
        amount: Any = {
            "full": held,
            "over": held + 1,
            "part": 1 + spec[-1] % held if spec[0] == "part" else None,
            "bad": spec[-1],
        }.get(spec[0])
        content = {"none": b"", "empty": b"{}", "null": b'{"amount": null}'}.get(spec[0])
        if content is None:
            content = json.dumps({"amount": amount}).encode()
        self.log.append(f"post {tx_id} {content!r}")
        expected = self._expect_post(tx, amount)
        r = await self.client.post(f"{C}/transactions/{tx_id}/post", content=content)
        data = self._answer(r, expected)
        if tx is None or expected[0] != 200:
            return
        if tx.status == "pending":
            assert r.headers.get("idempotent-replayed") is None, self.log[-1]
            assert tx.reserved is not None
            final = tx.reserved if amount is None else [tx.reserved[0] | {"amount": amount}]
            self.model.hold(tx.reserved, -1)
            self.model.post(final)
            tx.status, tx.postings = "posted", final
        else:
            assert r.headers.get("idempotent-replayed") == "true", self.log[-1]
        assert data["status"] == "posted" and data["postings"] == tx.postings, data

    async def void(self, tx_id: str) -> None:
        self.log.append(f"void {tx_id}")
        tx = self.model.txs.get(tx_id)
        expected: Expected = (200, None)
        if tx is None:
            expected = (404, "not_found")
        elif tx.status == "posted":
            expected = (409, "invalid_state")
        r = await self.client.post(f"{C}/transactions/{tx_id}/void")
        data = self._answer(r, expected)
        if tx is None or expected[0] != 200:
            return
        replay = "true" if tx.status == "voided" else None
        assert r.headers.get("idempotent-replayed") == replay, self.log[-1]
        if tx.status == "pending":
            assert tx.reserved is not None
            self.model.hold(tx.reserved, -1)
            tx.status = "voided"
        assert data["status"] == "voided" and data["postings"] == tx.postings, data

    async def reverse(self, tx_id: str) -> None:
        self.log.append(f"reverse {tx_id}")
        model = self.model
        tx = model.txs.get(tx_id)
        undo = swapped(tx.postings) if tx else []
        if tx is None:
            expected: Expected = (404, "not_found")
        elif tx.status != "posted":
            expected = (409, "invalid_state")
        elif tx.reversal is not None:
            expected = (200, None)
        elif not model.fits(undo, floor_mode=True):
            expected = (409, "insufficient_points")
        else:
            expected = (201, None)
        data = self._answer(await self.client.post(f"{C}/transactions/{tx_id}/reverse"), expected)
        if tx is None or expected[0] >= 400:
            return
        if expected[0] == 200:
            assert tx.reversal is not None
            assert data == model.txs[tx.reversal].created, self.log[-1]
            return
        rev_id = f"{tx_id}:reversal"
        assert (data["id"], data["kind"], data["reversal_of"]) == (rev_id, "reversal", tx_id)
        assert data["status"] == "posted" and data["postings"] == undo, data
        model.post(undo)
        tx.reversal = rev_id
        model.txs[rev_id] = Tx(
            id=rev_id, status="posted", postings=undo, created=data, reversal_of=tx_id
        )
        self.ids.append(rev_id)

    async def expire(self) -> None:
        """The expiry job, run as if two hours had passed: every hold with a ttl goes."""
        self.log.append("expire")
        due = [tx for tx in self.model.txs.values() if tx.status == "pending" and tx.expires]
        later = datetime.now(UTC) + timedelta(hours=2)
        assert await expire_due(self.pool, now=later) == len(due)
        for tx in due:
            assert tx.reserved is not None
            self.model.hold(tx.reserved, -1)
            tx.status = "voided"

    # -- checking state

    async def check_balances(self) -> None:
        model = self.model
        for m in MEMBERS:
            r = await self.client.get(f"{C}/members/{m}/balance")
            assert r.status_code == 200, r.text
            got = r.json()
            points, minutes = f"member:{m}:points", f"member:{m}:minutes"
            score, held = model.posted[points], model.held[points]
            expected = {
                "points": {
                    "score": score,
                    "held": held,
                    "baseline": BASELINE,
                    "redeemable": max(0, score - held - BASELINE),
                    "expiring": [],
                },
                "minutes": {
                    "balance": model.posted[minutes],
                    "held": model.held[minutes],
                    "expiring": [],
                },
            }
            assert got == expected, f"{m} after {self.log[-1:]}"
            assert got["points"]["redeemable"] >= 0
            assert got["points"]["score"] - got["points"]["held"] >= 0  # the floor
            assert got["minutes"]["balance"] - got["minutes"]["held"] >= 0

    async def check_end(self) -> None:
        """Every account, every transaction and the audit agree with the model."""
        model = self.model
        totals: Counter[str] = Counter()
        for address in sorted(model.opened):
            r = await self.client.get(f"{C}/accounts/{address}")
            assert r.status_code == 200, (address, r.text)
            assert r.json()["posted"] == model.posted[address], (address, r.json())
            totals[r.json()["asset"]] += r.json()["posted"]
        assert set(totals.values()) == {0}, totals
        for tx in model.txs.values():
            r = await self.client.get(f"{C}/transactions/{tx.id}")
            assert r.status_code == 200, r.text
            got = r.json()
            assert (got["status"], got["postings"]) == (tx.status, tx.postings), got
            assert (got["reversed_by"], got["reversal_of"]) == (tx.reversal, tx.reversal_of), got
        for tx_id in sorted(self.refused):
            r = await self.client.get(f"{C}/transactions/{tx_id}")
            assert r.status_code == 404, (tx_id, r.text)
        r = await self.client.get(f"{C}/audit/verify")
        assert r.status_code == 200 and r.json()["ok"] is True, r.text


# --- one example: a fresh database, the real app ------------------------------------------


async def _walk(databases: Databases, ops: list[tuple[Any, ...]]) -> None:
    dsn = await databases.create(f"walk_{os.getpid()}_{next(_databases)}")
    try:
        app_settings = msgspec.structs.replace(
            load_settings(), admin_key=ADMIN_KEY, pool_min_size=1, pool_max_size=4
        )
        app = create_app(app_settings, dsn=dsn, scheduler=False)
        pool = await create_pool(dsn, min_size=1, max_size=1)
        try:
            async with AsyncTestClient(app) as client:
                client.headers.update(bearer(ADMIN_KEY))
                walk = Walk(client, pool)
                await walk.setup()
                for op in ops:
                    await walk.run(op)
                await walk.check_end()
        finally:
            await pool.close()
        await audit_all(dsn)  # seals everything, then audits again
    finally:
        await databases.drop(dsn)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(ops=st.lists(operation, min_size=30, max_size=60))
def test_random_walk_matches_the_model(databases: Databases, ops: list[tuple[Any, ...]]) -> None:
    asyncio.run(_walk(databases, ops))
