"""The scenarios' requests. Each step is one client's unit of work: it sends one
request (two for the pending, offset and consented redemption flows) through
`Ctx.call` and returns how many operations it completed (transfers, postings of
a batch, flows or redemptions).

Each client's connection carries the scenario's key (`Spec.key`: a store's till,
a property company's billing system, or the admin key, which needs no consent);
the residents' phones of scenario 10 share a second connection per client and
send their own key with each request."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from bench.httpclient import Connection

ISSUANCE: Final = "system:issuance:points"
STORE: Final = "store:s1:redemptions"
INSUFFICIENT: Final = b"insufficient_points"


class Spec(msgspec.Struct, kw_only=True):
    """One scenario run, as the harness sends it to the load generator."""

    name: str
    title: str
    step: str  # a key of STEPS
    community: str
    members: int  # members m0 … m{members-1} (or the scale set)
    member_prefix: str = "m"
    statement_member: str = "stmt"
    race_members: int = 100
    batch_size: int = 1000
    households: int = 100  # member m{i} lives in household h{i % households}
    skus: int = 100  # store s1 sells sku0 … sku{skus-1}
    clients: int = 32
    seconds: float = 10.0
    warmup_s: float = 1.0
    grace_s: float = 30.0  # how long requests may still run after the end
    run_id: str = "run"
    port: int = 0
    admin_key: str = ""
    key: str = ""  # the key each client's connection sends; empty: admin_key
    # (member, resident key): the members whose phones issue spend codes
    residents: list[tuple[str, str]] = msgspec.field(default_factory=list)
    # Event types an endpoint listens to while the scenario runs (bench/outbox.py);
    # the harness's business, the load generator ignores it.
    webhook: list[str] = msgspec.field(default_factory=list)
    # The members' community when the scenario runs in another (s11: `community` is
    # the store's, the neighbour of bench).
    member_community: str | None = None


@dataclass
class Ctx:
    """One client's state; `call` times and classifies a request."""

    spec: Spec
    conn: Connection
    client: int
    rng: random.Random
    record: Callable[[str, float, str, int, bytes], None]
    fail: Callable[[str], None]  # an error found inside a successful response
    clock: Callable[[], float]
    phone: Connection | None = None  # for the residents' requests: no fixed key
    n: int = 0
    base: str = field(init=False)
    phones: list[tuple[str, bytes]] = field(init=False)  # (member, its key's header)

    def __post_init__(self) -> None:
        self.base = f"/v1/communities/{self.spec.community}"
        self.phones = [
            (member, f"Authorization: Bearer {key}\r\n".encode())
            for member, key in self.spec.residents
        ]

    def next_id(self) -> str:
        self.n += 1
        return f"{self.spec.run_id}-{self.spec.name}-{self.client}-{self.n}"

    def member(self) -> str:
        return f"{self.spec.member_prefix}{self.rng.randrange(self.spec.members)}"

    async def call(
        self,
        kind: str,
        method: str,
        path: str,
        body: bytes | None,
        ok: int,
        allow_409: bool = False,
        via: Connection | None = None,
        headers: bytes = b"",
    ) -> tuple[str, bytes]:
        conn = self.conn if via is None else via
        start = self.clock()
        status, payload = await conn.request(method, self.base + path, body, headers)
        elapsed = self.clock() - start
        if status == ok:
            outcome = "ok"
        elif allow_409 and status == 409 and INSUFFICIENT in payload:
            outcome = "expected"
        else:
            outcome = "error"
        self.record(kind, elapsed, outcome, status, payload)
        return outcome, payload


def transfer(tx_id: str, source: str, destination: str, amount: int = 1, **extra: Any) -> bytes:
    posting = {"source": source, "destination": destination, "asset": "points", "amount": amount}
    return msgspec.json.encode({"id": tx_id, "postings": [posting], **extra})


def points(member: str) -> str:
    return f"member:{member}:points"


async def s_transfer(ctx: Ctx) -> int:
    body = transfer(ctx.next_id(), ISSUANCE, points(ctx.member()))
    outcome, _ = await ctx.call("transfer", "POST", "/transactions", body, 201)
    return int(outcome == "ok")


async def s_hot(ctx: Ctx) -> int:
    """Spends into one store account and awards from one issuance account, in turn."""
    member = points(ctx.member())
    if ctx.n % 2:
        body, kind = transfer(ctx.next_id(), member, STORE), "spend"
    else:
        body, kind = transfer(ctx.next_id(), ISSUANCE, member), "award"
    outcome, _ = await ctx.call(kind, "POST", "/transactions", body, 201)
    return int(outcome == "ok")


async def s_race(ctx: Ctx) -> int:
    """Spends and awards of one point in turn on 100 members near their baseline:
    a spend the member cannot cover must be refused with 409."""
    member = points(f"r{ctx.rng.randrange(ctx.spec.race_members)}")
    if ctx.n % 2:
        body = transfer(ctx.next_id(), member, STORE)
        outcome, _ = await ctx.call("spend", "POST", "/transactions", body, 201, allow_409=True)
    else:
        body = transfer(ctx.next_id(), ISSUANCE, member)
        outcome, _ = await ctx.call("award", "POST", "/transactions", body, 201)
    return int(outcome == "ok")


async def _pending_then(ctx: Ctx, action: str) -> int:
    tx_id = ctx.next_id()
    body = transfer(tx_id, points(ctx.member()), STORE, pending={"ttl_s": 60})
    outcome, _ = await ctx.call("pending", "POST", "/transactions", body, 201)
    if outcome != "ok":
        return 0
    outcome, _ = await ctx.call(action, "POST", f"/transactions/{tx_id}/{action}", b"{}", 200)
    return int(outcome == "ok")


async def s_pending_post(ctx: Ctx) -> int:
    return await _pending_then(ctx, "post")


async def s_pending_void(ctx: Ctx) -> int:
    return await _pending_then(ctx, "void")


async def s_balance(ctx: Ctx) -> int:
    outcome, _ = await ctx.call("balance", "GET", f"/members/{ctx.member()}/balance", None, 200)
    return int(outcome == "ok")


async def s_statement(ctx: Ctx) -> int:
    path = f"/members/{ctx.spec.statement_member}/statement?limit=50"
    outcome, _ = await ctx.call("statement", "GET", path, None, 200)
    return int(outcome == "ok")


class _ItemResult(msgspec.Struct):
    status: int


class _BatchOut(msgspec.Struct):
    results: list[_ItemResult]


_decode_batch = msgspec.json.Decoder(_BatchOut).decode


async def s_batch(ctx: Ctx) -> int:
    """`batch_size` transfers in one request; every item must be created."""
    items = [
        {
            "id": ctx.next_id(),
            "postings": [
                {
                    "source": ISSUANCE,
                    "destination": points(ctx.member()),
                    "asset": "points",
                    "amount": 1,
                }
            ],
        }
        for _ in range(ctx.spec.batch_size)
    ]
    body = msgspec.json.encode({"transactions": items, "atomic": False})
    outcome, payload = await ctx.call("batch", "POST", "/transactions:batch", body, 200)
    if outcome != "ok":
        return 0
    created = sum(1 for r in _decode_batch(payload).results if r.status == 201)
    if created != len(items):
        ctx.fail(f"batch: {len(items) - created} of {len(items)} items not created")
    return created


_EVENT_TIME = "2026-01-15T12:00:00+08:00"  # one month: the rule's cap period


async def s_event(ctx: Ctx) -> int:
    """An event the bench rule set awards a point for (`bench-award`, capped per
    month far above what a run reaches): the rules engine and the ledger together."""
    event = {
        "id": ctx.next_id(),
        "type": "bench.helped",
        "member": ctx.member(),
        "occurred_at": _EVENT_TIME,
        "attributes": {"minutes": 30},
    }
    outcome, _ = await ctx.call("event", "POST", "/events", msgspec.json.encode(event), 201)
    return int(outcome == "ok")


async def s_offset(ctx: Ctx) -> int:
    """A property-fee offset held, then applied: one op is the flow. With a
    property key, the member's mandate (seeded) is checked on the hold."""
    i = ctx.rng.randrange(ctx.spec.members)
    offset_id = ctx.next_id()
    body = {
        "id": offset_id,
        "member": f"{ctx.spec.member_prefix}{i}",
        "household": f"h{i % ctx.spec.households}",
        "bill_amount_fen": 10_000,
        "points": 1,
        "hold": True,
    }
    outcome, _ = await ctx.call("hold", "POST", "/offsets", msgspec.json.encode(body), 201)
    if outcome != "ok":
        return 0
    outcome, _ = await ctx.call("apply", "POST", f"/offsets/{offset_id}/apply", b"{}", 200)
    return int(outcome == "ok")


def _basket(ctx: Ctx, member: str, **consent: Any) -> bytes:
    body = {
        "id": ctx.next_id(),
        "store": "s1",
        "member": member,
        "items": [{"sku": f"sku{ctx.rng.randrange(ctx.spec.skus)}", "qty": 1}],
        **consent,
    }
    return msgspec.json.encode(body)


async def s_redemption(ctx: Ctx) -> int:
    """A love-supermarket redemption of one item, of 100 the store sells, with
    no consent (an operator's or admin's key)."""
    body = _basket(ctx, ctx.member())
    outcome, _ = await ctx.call("redeem", "POST", "/redemptions", body, 201)
    return int(outcome == "ok")


class _SpendCode(msgspec.Struct):
    code: str


_decode_code = msgspec.json.Decoder(_SpendCode).decode
# What the phone asks for: a ceiling above the basket's one point, for store s1.
_SPEND_CODE = msgspec.json.encode({"max_points": 10, "ttl_s": 120, "store": "s1"})


async def s_redemption_consented(ctx: Ctx) -> int:
    """As a till does it: the resident's phone issues a spend code (kind `code`,
    the resident's key), the till redeems with it (kind `redeem`, the store's
    key). One op is the redemption."""
    member, auth = ctx.phones[ctx.rng.randrange(len(ctx.phones))]
    path = f"/members/{member}/spend-codes"
    outcome, payload = await ctx.call(
        "code", "POST", path, _SPEND_CODE, 201, via=ctx.phone, headers=auth
    )
    if outcome != "ok":
        return 0
    body = _basket(ctx, member, consent={"spend_code": _decode_code(payload).code})
    outcome, _ = await ctx.call("redeem", "POST", "/redemptions", body, 201)
    return int(outcome == "ok")


async def s_network_redemption(ctx: Ctx) -> int:
    """s_redemption by a member of another community of the district, at this
    community's district-wide store (SPEC section 16): both communities' books
    change in the one database transaction."""
    body = _basket(ctx, ctx.member(), member_community=ctx.spec.member_community)
    outcome, _ = await ctx.call("redeem", "POST", "/redemptions", body, 201)
    return int(outcome == "ok")


Step = Callable[[Ctx], Awaitable[int]]
STEPS: Final[dict[str, Step]] = {
    "transfer": s_transfer,
    "hot": s_hot,
    "race": s_race,
    "pending_post": s_pending_post,
    "pending_void": s_pending_void,
    "balance": s_balance,
    "statement": s_statement,
    "batch": s_batch,
    "event": s_event,
    "offset": s_offset,
    "redemption": s_redemption,
    "redemption_consented": s_redemption_consented,
    "network_redemption": s_network_redemption,
}
