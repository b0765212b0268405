"""The pure planning core: postings are checked, then turned into a lock-ordered plan.

A plan is what the database applies under row locks, so these tests pin down its
arithmetic: which accounts, in which order, by how much, and with which limit.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.errors import ValidationFailed
from service.ledger import posting
from service.ledger.model import MAX_AMOUNT, MAX_POSTINGS, Posting, RuleParams
from service.ledger.posting import check_postings, reversed_postings

PARAMS = RuleParams(baseline=100, floor=0)


def p(source: str, destination: str, amount: int, asset: str = "points") -> Posting:
    return Posting(source=source, destination=destination, asset=asset, amount=amount)  # type: ignore[arg-type]


class Columns:
    """A plan's accounts and legs as columns, which most of these checks read."""

    def __init__(self, plan: posting.Plan) -> None:
        self.plan = plan
        self.addresses = [a.address for a in plan.accounts]
        self.assets = [a.asset for a in plan.accounts]
        self.limited = [a.member for a in plan.accounts]
        self.posted = [a.posted for a in plan.accounts]
        self.held = [a.held for a in plan.accounts]
        self.minimum = [a.minimum for a in plan.accounts]
        self.leg_account = [leg.account for leg in plan.legs]
        self.leg_amount = [leg.amount for leg in plan.legs]


def plan_create(
    postings: tuple[Posting, ...], params: RuleParams, *, pending: bool, mode: str = "spend"
) -> Columns:
    return Columns(posting.plan_create(postings, params, pending=pending, mode=mode))  # type: ignore[arg-type]


def plan_post_pending(
    reserved: tuple[Posting, ...], amount: int | None
) -> tuple[Columns, tuple[Posting, ...]]:
    plan, postings = posting.plan_post_pending(reserved, amount)
    return Columns(plan), postings


def plan_void(reserved: tuple[Posting, ...]) -> Columns:
    return Columns(posting.plan_void(reserved))


def by_address(plan: Columns) -> dict[str, tuple[int, int, int | None]]:
    """Each account's (posted change, held change, minimum)."""
    return {
        a: (plan.posted[i], plan.held[i], plan.minimum[i]) for i, a in enumerate(plan.addresses)
    }


def legs(plan: Columns) -> list[tuple[str, int]]:
    return [
        (plan.addresses[i - 1], amount)
        for i, amount in zip(plan.leg_account, plan.leg_amount, strict=True)
    ]


# --- check_postings -------------------------------------------------------------------


@pytest.mark.parametrize("amount", [1, 7, MAX_AMOUNT])
def test_amounts_within_bounds_are_accepted(amount: int) -> None:
    refs = check_postings([p("system:issuance:points", "member:m0:points", amount)])
    assert set(refs) == {"system:issuance:points", "member:m0:points"}
    assert refs["member:m0:points"].member_id == "m0"


@pytest.mark.parametrize("amount", [0, -1, -(10**12), MAX_AMOUNT + 1, 10**13])
def test_amounts_outside_bounds_are_refused(amount: int) -> None:
    with pytest.raises(ValidationFailed, match="outside 1"):
        check_postings([p("system:issuance:points", "member:m0:points", amount)])


def test_one_bad_amount_among_good_postings_refuses_all() -> None:
    good = p("system:issuance:points", "member:m0:points", 5)
    with pytest.raises(ValidationFailed, match="outside 1"):
        check_postings([good, good, p("member:m0:points", "store:s1:redemptions", 0)])


def test_a_transfer_to_itself_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="to itself"):
        check_postings([p("member:m0:points", "member:m0:points", 5)])


@pytest.mark.parametrize(
    ("source", "destination", "asset"),
    [
        ("member:m0:points", "member:m1:minutes", "points"),
        ("member:m0:minutes", "member:m1:minutes", "points"),
        ("system:timebank:minutes", "member:m0:points", "minutes"),
        ("system:timebank:minutes", "property:acme:offsets", "minutes"),
        ("store:s1:redemptions", "member:m0:minutes", "minutes"),
    ],
)
def test_an_asset_the_account_does_not_hold_is_refused(
    source: str, destination: str, asset: str
) -> None:
    with pytest.raises(ValidationFailed, match="holds"):
        check_postings([p(source, destination, 5, asset)])


def test_an_address_is_refused_with_the_address_rules() -> None:
    with pytest.raises(ValidationFailed, match="not a known account"):
        check_postings([p("bank:x:points", "member:m0:points", 5)])


def test_no_postings_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="not 0"):
        check_postings([])


def test_64_postings_are_accepted_and_65_refused() -> None:
    one = p("system:issuance:points", "member:m0:points", 1)
    assert len(check_postings([one] * MAX_POSTINGS)) == 2
    with pytest.raises(ValidationFailed, match=f"not {MAX_POSTINGS + 1}"):
        check_postings([one] * (MAX_POSTINGS + 1))


# --- plan_create ----------------------------------------------------------------------


def test_lock_order_is_sorted_addresses_each_once() -> None:
    postings = (
        p("system:issuance:points", "member:m2:points", 5),
        p("member:m1:points", "store:s1:redemptions", 3),
        p("member:m0:points", "member:m2:points", 4),
        p("system:timebank:minutes", "member:m1:minutes", 9, "minutes"),
    )
    plan = plan_create(postings, PARAMS, pending=False)
    assert plan.addresses == sorted(
        {
            "system:issuance:points",
            "member:m2:points",
            "member:m1:points",
            "store:s1:redemptions",
            "member:m0:points",
            "system:timebank:minutes",
            "member:m1:minutes",
        }
    )
    assert plan.assets == [
        "minutes" if a.endswith(":minutes") else "points" for a in plan.addresses
    ]
    assert plan.limited == [a.startswith("member:") for a in plan.addresses]


def test_an_account_in_several_postings_gets_its_net_change() -> None:
    postings = (
        p("member:m0:points", "store:s1:redemptions", 10),
        p("system:issuance:points", "member:m0:points", 4),
        p("member:m0:points", "member:m1:points", 3),
        p("member:m1:points", "member:m0:points", 1),
    )
    plan = plan_create(postings, PARAMS, pending=False)
    assert by_address(plan) == {
        "member:m0:points": (-8, 0, 100),
        "member:m1:points": (2, 0, 100),
        "store:s1:redemptions": (10, 0, None),
        "system:issuance:points": (-4, 0, None),
    }
    # Every posting becomes two legs, source first, in the order given.
    assert legs(plan) == [
        ("member:m0:points", -10),
        ("store:s1:redemptions", 10),
        ("system:issuance:points", -4),
        ("member:m0:points", 4),
        ("member:m0:points", -3),
        ("member:m1:points", 3),
        ("member:m1:points", -1),
        ("member:m0:points", 1),
    ]


def test_pending_holds_only_net_debits_of_member_accounts() -> None:
    postings = (
        p("member:m0:points", "property:acme:offsets", 40),
        p("member:m1:points", "member:m0:points", 15),  # m0 nets -25, m1 -15
        p("system:issuance:points", "member:m2:points", 7),  # credit: nothing held
        p("member:m3:points", "member:m4:points", 5),
        p("member:m4:points", "member:m3:points", 5),  # m3 and m4 net 0: nothing held
        p("system:timebank:minutes", "member:m0:minutes", 30, "minutes"),
        p("member:m1:minutes", "system:conversion:minutes", 12, "minutes"),
    )
    plan = plan_create(postings, PARAMS, pending=True)
    held = dict(zip(plan.addresses, plan.held, strict=True))
    assert {a: h for a, h in held.items() if h} == {
        "member:m0:points": 25,
        "member:m1:points": 15,
        "member:m1:minutes": 12,
    }
    # A system account's debit is never held: it has no limit to protect.
    assert held["system:issuance:points"] == 0
    assert held["system:timebank:minutes"] == 0
    assert plan.posted == [0] * len(plan.addresses)
    assert plan.leg_account == [] and plan.leg_amount == []


@pytest.mark.parametrize("pending", [False, True])
def test_minimum_is_baseline_for_spends_zero_for_minutes_none_for_system(pending: bool) -> None:
    params = RuleParams(baseline=120, floor=-5)
    postings = (
        p("member:m0:points", "store:s1:redemptions", 1),
        p("member:m0:minutes", "system:timebank:minutes", 1, "minutes"),
        p("system:issuance:points", "property:acme:offsets", 1),
    )
    plan = plan_create(postings, params, pending=pending)
    assert {a: m for a, (_, _, m) in by_address(plan).items()} == {
        "member:m0:points": 120,
        "member:m0:minutes": 0,
        "store:s1:redemptions": None,
        "system:timebank:minutes": None,
        "system:issuance:points": None,
        "property:acme:offsets": None,
    }


def test_minimum_is_floor_in_floor_mode() -> None:
    params = RuleParams(baseline=120, floor=7)
    postings = (
        p("member:m0:points", "system:issuance:points", 1),
        p("member:m1:minutes", "system:timebank:minutes", 1, "minutes"),
    )
    plan = plan_create(postings, params, pending=False, mode="floor")
    assert {a: m for a, (_, _, m) in by_address(plan).items()} == {
        "member:m0:points": 7,
        "member:m1:minutes": 0,
        "system:issuance:points": None,
        "system:timebank:minutes": None,
    }


def test_plan_create_checks_its_postings() -> None:
    with pytest.raises(ValidationFailed):
        plan_create((p("member:m0:points", "member:m0:points", 1),), PARAMS, pending=False)
    with pytest.raises(ValidationFailed):
        plan_create((), PARAMS, pending=True)


# --- plan_post_pending, plan_void -----------------------------------------------------


def test_posting_in_full_releases_the_hold_and_posts_everything() -> None:
    reserved = (
        p("member:m0:points", "property:acme:offsets", 40),
        p("system:issuance:points", "member:m1:points", 5),
    )
    plan, postings = plan_post_pending(reserved, None)
    assert postings == reserved
    assert by_address(plan) == {
        "member:m0:points": (-40, -40, None),
        "member:m1:points": (5, 0, None),
        "property:acme:offsets": (40, 0, None),
        "system:issuance:points": (-5, 0, None),
    }
    assert legs(plan) == [
        ("member:m0:points", -40),
        ("property:acme:offsets", 40),
        ("system:issuance:points", -5),
        ("member:m1:points", 5),
    ]


@pytest.mark.parametrize("amount", [1, 25, 40])
def test_posting_part_of_a_single_posting_releases_all_of_the_hold(amount: int) -> None:
    reserved = (p("member:m0:points", "property:acme:offsets", 40),)
    plan, postings = plan_post_pending(reserved, amount)
    assert postings == (p("member:m0:points", "property:acme:offsets", amount),)
    assert by_address(plan) == {
        "member:m0:points": (-amount, -40, None),
        "property:acme:offsets": (amount, 0, None),
    }
    assert legs(plan) == [("member:m0:points", -amount), ("property:acme:offsets", amount)]


@pytest.mark.parametrize("amount", [0, -1, 41, MAX_AMOUNT + 1])
def test_a_partial_amount_outside_1_to_the_held_amount_is_refused(amount: int) -> None:
    with pytest.raises(ValidationFailed, match="amount must be"):
        plan_post_pending((p("member:m0:points", "property:acme:offsets", 40),), amount)


def test_a_partial_amount_needs_a_single_posting() -> None:
    reserved = (
        p("member:m0:points", "property:acme:offsets", 40),
        p("member:m0:points", "store:s1:redemptions", 1),
    )
    with pytest.raises(ValidationFailed, match="single-posting"):
        plan_post_pending(reserved, 10)


def test_void_releases_only_what_was_held() -> None:
    reserved = (
        p("member:m0:points", "property:acme:offsets", 40),
        p("member:m1:points", "member:m0:points", 15),
        p("system:timebank:minutes", "member:m2:minutes", 9, "minutes"),
    )
    plan = plan_void(reserved)
    assert by_address(plan) == {
        "member:m0:points": (0, -25, None),
        "member:m1:points": (0, -15, None),
        "member:m2:minutes": (0, 0, None),
        "property:acme:offsets": (0, 0, None),
        "system:timebank:minutes": (0, 0, None),
    }
    assert plan.leg_account == [] and plan.leg_amount == []


# --- reversed_postings ----------------------------------------------------------------


def test_reversal_swaps_every_posting_and_keeps_the_rest() -> None:
    postings = (
        p("member:m0:points", "store:s1:redemptions", 10),
        p("system:timebank:minutes", "member:m1:minutes", 3, "minutes"),
    )
    assert reversed_postings(postings) == (
        p("store:s1:redemptions", "member:m0:points", 10),
        p("member:m1:minutes", "system:timebank:minutes", 3, "minutes"),
    )
    assert reversed_postings(reversed_postings(postings)) == postings


# --- properties over any valid postings -----------------------------------------------

POINTS = [
    "member:m0:points",
    "member:m1:points",
    "member:m2:points",
    "system:issuance:points",
    "system:penalties:points",
    "property:acme:offsets",
    "store:s1:redemptions",
]
MINUTES = ["member:m0:minutes", "member:m1:minutes", "system:timebank:minutes"]


@st.composite
def valid_posting(draw: st.DrawFn) -> Posting:
    asset = draw(st.sampled_from(["points", "minutes"]))
    accounts = POINTS if asset == "points" else MINUTES
    source, destination = draw(
        st.lists(st.sampled_from(accounts), min_size=2, max_size=2, unique=True)
    )
    amount = draw(st.one_of(st.integers(1, 1000), st.integers(1, MAX_AMOUNT)))
    return p(source, destination, amount, asset)


valid_postings = st.lists(valid_posting(), min_size=1, max_size=MAX_POSTINGS).map(tuple)


def _net(postings: tuple[Posting, ...]) -> Counter[str]:
    net: Counter[str] = Counter()
    for x in postings:
        net[x.source] -= x.amount
        net[x.destination] += x.amount
    return net


@given(postings=valid_postings, mode=st.sampled_from(["spend", "floor"]))
def test_a_posted_plan_balances_per_asset_and_its_legs_sum_to_zero(
    postings: tuple[Posting, ...], mode: str
) -> None:
    plan = plan_create(postings, PARAMS, pending=False, mode=mode)  # type: ignore[arg-type]
    assert plan.addresses == sorted(set(plan.addresses))
    assert sum(plan.leg_amount) == 0
    assert len(plan.leg_account) == len(plan.leg_amount) == 2 * len(postings)
    for asset in ("points", "minutes"):
        assert sum(d for d, a in zip(plan.posted, plan.assets, strict=True) if a == asset) == 0
    # Each account's change is the sum of its legs, and each leg stays in its asset.
    per_account: Counter[str] = Counter()
    for address, amount in legs(plan):
        per_account[address] += amount
    assert dict(zip(plan.addresses, plan.posted, strict=True)) == {
        a: per_account[a] for a in plan.addresses
    }
    net = _net(postings)
    assert set(plan.addresses) == set(net)
    assert all(per_account[a] == net[a] for a in plan.addresses)
    for k in range(0, len(plan.leg_account), 2):
        src, dst = plan.leg_account[k] - 1, plan.leg_account[k + 1] - 1
        assert plan.assets[src] == plan.assets[dst]
        assert plan.leg_amount[k] == -plan.leg_amount[k + 1] < 0
    assert plan.held == [0] * len(plan.addresses)


@given(postings=valid_postings)
def test_pending_then_post_or_void_leaves_nothing_held(postings: tuple[Posting, ...]) -> None:
    hold = plan_create(postings, PARAMS, pending=True)
    assert all(h >= 0 for h in hold.held)
    assert all(h == 0 for h, lim in zip(hold.held, hold.limited, strict=True) if not lim)
    net = _net(postings)
    assert dict(zip(hold.addresses, hold.held, strict=True)) == {
        a: max(0, -net[a]) if a.startswith("member:") else 0 for a in hold.addresses
    }
    posted = plan_create(postings, PARAMS, pending=False)
    plan, final = plan_post_pending(postings, None)
    assert final == postings
    assert plan.addresses == hold.addresses
    assert [a + b for a, b in zip(hold.held, plan.held, strict=True)] == [0] * len(plan.held)
    assert plan.posted == posted.posted
    assert (plan.leg_account, plan.leg_amount) == (posted.leg_account, posted.leg_amount)
    void = plan_void(postings)
    assert void.held == plan.held and void.posted == [0] * len(void.posted)


@given(postings=valid_postings)
def test_a_reversal_plan_undoes_the_original(postings: tuple[Posting, ...]) -> None:
    original = plan_create(postings, PARAMS, pending=False)
    undo = plan_create(reversed_postings(postings), PARAMS, pending=False, mode="floor")
    assert undo.addresses == original.addresses
    assert [a + b for a, b in zip(original.posted, undo.posted, strict=True)] == [0] * len(
        undo.posted
    )


@given(amount=st.integers(1, 10**6), partial=st.integers(1, 10**6))
def test_a_partial_post_moves_the_partial_amount_and_releases_the_full_hold(
    amount: int, partial: int
) -> None:
    reserved = (p("member:m0:points", "store:s1:redemptions", amount),)
    if partial > amount:
        with pytest.raises(ValidationFailed):
            plan_post_pending(reserved, partial)
        return
    plan, _ = plan_post_pending(reserved, partial)
    assert by_address(plan)["member:m0:points"] == (-partial, -amount, None)
    assert sum(plan.posted) == 0 and sum(plan.leg_amount) == 0
