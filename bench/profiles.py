"""How big and how long: the full run, --quick and --smoke."""

from __future__ import annotations

from typing import TypedDict

import msgspec

from bench.scenarios import Spec
from bench.seed import COMMUNITY, NEIGHBOUR, Keys


class Profile(msgspec.Struct, kw_only=True):
    name: str
    seconds: float  # measured time per scenario
    warmup_s: float
    members: int
    statement_entries: int
    scale_members: int
    scale_postings: int
    scale_statement_entries: int = 10_000
    grace_s: float = 30.0  # how long requests may still run after a scenario's end
    # How long a webhook scenario's delivery backlog may take to drain afterwards.
    webhook_drain_s: float = 120.0
    batch_size: int = 1000


PROFILES = {
    "full": Profile(
        name="full",
        seconds=30,
        warmup_s=3,
        members=10_000,
        statement_entries=10_000,
        scale_members=1_000_000,
        scale_postings=10_000_000,
        grace_s=120,
        webhook_drain_s=600,
    ),
    "quick": Profile(
        name="quick",
        seconds=3,
        warmup_s=1,
        members=1_000,
        statement_entries=2_000,
        scale_members=10_000,
        scale_postings=100_000,
        scale_statement_entries=2_000,
        grace_s=15,
    ),
    "smoke": Profile(
        name="smoke",
        seconds=2,
        warmup_s=0.5,
        members=500,
        statement_entries=2_000,
        scale_members=5_000,
        scale_postings=50_000,
        scale_statement_entries=2_000,
        grace_s=10,
        batch_size=100,
        webhook_drain_s=60,
    ),
}

# name, title, step; the scale scenarios run against the bulk-loaded community.
# Scenarios 9 and 10 run with the key of the client that makes them in life (a
# property company's billing system, a store's till: consent, SPEC section 10),
# and again with the admin key, which needs none (KEYS). A `_webhook` scenario runs
# its twin's step while an endpoint listens to the events it writes (WEBHOOKS).
SMALL = [
    ("s1_transfer", "1 transfer issuance → member, uniform", "transfer"),
    ("s1_transfer_webhook", "1w transfer, a webhook on transaction.posted", "transfer"),
    ("s2_hot", "2 hot: member → store / issuance → member", "hot"),
    ("s3_race", "3 spends racing the limit, 100 members", "race"),
    ("s4_pending_post", "4a pending then post (flows)", "pending_post"),
    ("s4_pending_void", "4b pending then void (flows)", "pending_void"),
    ("s5_balance", "5a balance read", "balance"),
    ("s5_statement", "5b statement page, 50 of {statement:,}", "statement"),
    ("s6_batch", "6 batch of {batch:,} transfers (postings)", "batch"),
    ("s8_event", "8 event → rule award", "event"),
    ("s9_offset", "9a offset hold then apply, property key + mandate (flows)", "offset"),
    ("s9_offset_operator", "9b offset hold then apply, admin key (flows)", "offset"),
    (
        "s10_redemption",
        "10a redemption: resident's spend code, store key",
        "redemption_consented",
    ),
    ("s10_redemption_operator", "10b redemption, admin key", "redemption"),
    (
        "s10_redemption_webhook",
        "10w redemption, admin key, a webhook on redemption.created + transaction.posted",
        "redemption",
    ),
    (
        "s11_network_redemption",
        "11 redemption by a member of another community of the district, admin key",
        "network_redemption",
    ),
]
# Scenarios that run at the neighbour community's store for bench's members.
NETWORK = {"s11_network_redemption"}
# The webhook scenarios (SPEC section 12): their endpoint's events, and the twin
# they are compared with (bench/report.py, outbox_costs).
WEBHOOKS = {
    "s1_transfer_webhook": (["transaction.posted"], "s1_transfer"),
    "s10_redemption_webhook": (
        ["redemption.created", "transaction.posted"],
        "s10_redemption_operator",
    ),
}
# Which of the seeded keys a scenario sends; the others send the admin key.
KEYS = {"s9_offset": "property", "s10_redemption": "store"}
# The HTTP stack alone (bench/stack_apps.py), answering the balance read's URL.
STACK = [
    ("stack_asgi", "HTTP stack: bare ASGI app, constant body", "asgi"),
    ("stack_litestar", "HTTP stack: bare Litestar route, constant body", "litestar"),
    ("stack_litestar_pg", "HTTP stack: bare Litestar route + the balance query", "litestar_pg"),
]
SCALE = [
    ("s7_balance", "7a balance read, scale data", "balance"),
    ("s7_statement", "7b statement page, 50 of {statement:,}, scale data", "statement"),
]


class _Timing(TypedDict):
    seconds: float
    warmup_s: float
    grace_s: float


def _timing(profile: Profile) -> _Timing:
    """How long each scenario runs: the same for every kind of spec."""
    return {
        "seconds": profile.seconds,
        "warmup_s": profile.warmup_s,
        "grace_s": profile.grace_s,
    }


def _key(keys: Keys, name: str) -> str:
    role = KEYS.get(name)
    return "" if role is None else str(getattr(keys, role))


def small_specs(profile: Profile, run_id: str, port: int, key: str, keys: Keys) -> list[Spec]:
    return [
        Spec(
            name=name,
            title=title.format(statement=profile.statement_entries, batch=profile.batch_size),
            step=step,
            community=NEIGHBOUR if name in NETWORK else COMMUNITY,
            member_community=COMMUNITY if name in NETWORK else None,
            members=profile.members,
            statement_member="stmt",
            **_timing(profile),
            batch_size=profile.batch_size,
            run_id=run_id,
            port=port,
            admin_key=key,
            key=_key(keys, name),
            residents=keys.residents if step == "redemption_consented" else [],
            webhook=WEBHOOKS[name][0] if name in WEBHOOKS else [],
        )
        for name, title, step in SMALL
    ]


def stack_spec(profile: Profile, name: str, title: str, run_id: str, port: int) -> Spec:
    """The balance step against one of the stack servers: same URLs, same clients."""
    return Spec(
        name=name,
        title=title,
        step="balance",
        community="bench",
        members=profile.members,
        **_timing(profile),
        run_id=run_id,
        port=port,
    )


def scale_specs(profile: Profile, run_id: str, port: int, key: str) -> list[Spec]:
    return [
        Spec(
            name=name,
            title=title.format(statement=profile.scale_statement_entries),
            step=step,
            community="scale",
            members=profile.scale_members,
            member_prefix="s",
            statement_member="s0",
            **_timing(profile),
            run_id=run_id,
            port=port,
            admin_key=key,
        )
        for name, title, step in SCALE
    ]
