"""The pure values: account addresses, the points balance, list cursors.

No database: these are the rules the service checks before it writes anything.
"""

from __future__ import annotations

import base64
from typing import Annotated

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.errors import ValidationFailed
from service.ledger.model import (
    COMMUNITY_PATTERN,
    ID_PATTERN,
    SYSTEM_NAMES,
    AccountRef,
    parse_address,
    points_balance,
)
from service.ledger.reads import decode_cursor, encode_cursor

SEGMENT_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
segment = st.text(alphabet=SEGMENT_CHARS, min_size=1, max_size=20)


def _cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# --- parse_address: what is accepted --------------------------------------------------


@pytest.mark.parametrize("asset", ["points", "minutes"])
def test_member_accounts_hold_either_asset_and_are_limited(asset: str) -> None:
    ref = parse_address(f"member:m-17:{asset}")
    assert ref == AccountRef(address=f"member:m-17:{asset}", asset=asset, member_id="m-17")
    assert ref.limited


@pytest.mark.parametrize("name", sorted(SYSTEM_NAMES))
@pytest.mark.parametrize("asset", ["points", "minutes"])
def test_every_system_account_is_known_and_unlimited(name: str, asset: str) -> None:
    ref = parse_address(f"system:{name}:{asset}")
    assert ref == AccountRef(address=f"system:{name}:{asset}", asset=asset, member_id=None)
    assert not ref.limited


def test_system_names_are_the_documented_ones() -> None:
    assert set(SYSTEM_NAMES) == {
        "issuance",
        "opening",
        "penalties",
        "expired",
        "timebank",
        "conversion",
        "adjustments",
    }


@pytest.mark.parametrize(
    "address", ["property:acme:offsets", "store:s1:redemptions", "store:A.b_c-9:redemptions"]
)
def test_property_and_store_accounts_hold_points_without_limits(address: str) -> None:
    ref = parse_address(address)
    assert ref == AccountRef(address=address, asset="points", member_id=None)
    assert not ref.limited


def test_an_address_of_exactly_200_characters_is_accepted() -> None:
    address = "member:" + "x" * (200 - len("member::points")) + ":points"
    assert len(address) == 200
    assert parse_address(address).member_id == "x" * 186


@given(member=segment, asset=st.sampled_from(["points", "minutes"]))
def test_any_member_id_of_segment_characters_parses(member: str, asset: str) -> None:
    ref = parse_address(f"member:{member}:{asset}")
    assert (ref.member_id, ref.asset, ref.limited) == (member, asset, True)


# --- parse_address: one test per kind of rejection ------------------------------------


@pytest.mark.parametrize("address", ["", "member", "points"])
def test_fewer_than_two_segments_is_refused(address: str) -> None:
    with pytest.raises(ValidationFailed, match="2-6 segments"):
        parse_address(address)


@pytest.mark.parametrize("address", ["a:b:c:d:e:f:g", "member:m0:points:a:b:c:d"])
def test_more_than_six_segments_is_refused(address: str) -> None:
    with pytest.raises(ValidationFailed, match="2-6 segments"):
        parse_address(address)


def test_more_than_200_characters_is_refused() -> None:
    address = "member:" + "x" * (201 - len("member::points")) + ":points"
    assert len(address) == 201
    with pytest.raises(ValidationFailed, match="200"):
        parse_address(address)


@pytest.mark.parametrize(
    "address",
    [
        "member::points",  # an empty segment
        "member:m 0:points",
        "member:m/0:points",
        "member:m0:points ",
        "member:李:points",
        "member:m０:points",  # a full-width digit is not [0-9]
        "member:m0%:points",
        "member:m0\t:points",
    ],
)
def test_a_character_outside_the_segment_alphabet_is_refused(address: str) -> None:
    with pytest.raises(ValidationFailed, match="segment outside"):
        parse_address(address)


@pytest.mark.parametrize(
    "address",
    ["member:m0\n:points", "property:acme\n:offsets", "system:issuance\n:points"],
)
def test_a_segment_ending_in_a_newline_is_refused(address: str) -> None:
    """Python's `$` also matches before a final newline: a segment checked with
    `^…$` let the API open an account `property:acme\\n:offsets` (201, not 422)."""
    with pytest.raises(ValidationFailed):
        parse_address(address)


@pytest.mark.parametrize(
    "address", ["bank:x:points", "Member:m0:points", "members:m0:points", "member:m0", "x:y"]
)
def test_an_unknown_prefix_or_shape_is_refused(address: str) -> None:
    with pytest.raises(ValidationFailed, match="not a known account"):
        parse_address(address)


@pytest.mark.parametrize(
    "address", ["system:bank:points", "system:Issuance:points", "system:issuance-2:minutes"]
)
def test_an_unknown_system_name_is_refused(address: str) -> None:
    with pytest.raises(ValidationFailed, match="not a known account"):
        parse_address(address)


@pytest.mark.parametrize(
    "address",
    [
        "member:m0:fen",
        "member:m0:Points",
        "system:issuance:offsets",
        "property:acme:points",
        "property:acme:redemptions",
        "store:s1:offsets",
        "store:s1:points",
    ],
)
def test_a_wrong_asset_suffix_is_refused(address: str) -> None:
    with pytest.raises(ValidationFailed, match="not a known account"):
        parse_address(address)


@given(st.text(max_size=250))
def test_any_string_either_parses_to_itself_or_is_a_validation_error(address: str) -> None:
    try:
        ref = parse_address(address)
    except ValidationFailed:
        return
    assert ref.address == address
    assert len(address) <= 200
    assert ref.asset in ("points", "minutes")


# --- identifier patterns as the wire decodes them -------------------------------------


@pytest.mark.parametrize(
    ("pattern", "value"),
    [(ID_PATTERN, "t1\n"), (ID_PATTERN, "m9\n"), (COMMUNITY_PATTERN, "green\n")],
    ids=["transaction-id", "member-id", "community-id"],
)
def test_an_identifier_ending_in_a_newline_is_refused(pattern: str, value: str) -> None:
    """msgspec searches the pattern, and Python's `$` matches before a final newline:
    patterns ending in a bare `$` let POST /transactions with id "t2\\n" and
    POST /members with id "m9\\n" through (201, not 422)."""
    wire = Annotated[str, msgspec.Meta(pattern=pattern)]
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(msgspec.json.encode(value), type=wire)


@pytest.mark.parametrize("value", ["t1", "A.b_c-9", "x" * 64])
def test_identifier_pattern_accepts_its_alphabet(value: str) -> None:
    wire = Annotated[str, msgspec.Meta(pattern=ID_PATTERN)]
    assert msgspec.json.decode(msgspec.json.encode(value), type=wire) == value


# --- points_balance -------------------------------------------------------------------


def test_redeemable_is_what_lies_above_baseline_and_holds() -> None:
    assert points_balance(150, 40, 100).redeemable == 10
    assert points_balance(100, 0, 100).redeemable == 0


@given(
    score=st.integers(-(10**13), 10**13),
    held=st.integers(0, 10**13),
    baseline=st.integers(0, 10**6),
)
def test_redeemable_is_never_negative(score: int, held: int, baseline: int) -> None:
    balance = points_balance(score, held, baseline)
    assert balance.redeemable == max(0, score - held - baseline)
    assert balance.redeemable >= 0
    assert (balance.score, balance.held, balance.baseline) == (score, held, baseline)


# --- list cursors ---------------------------------------------------------------------


@given(st.integers(0, 2**63 - 1))
def test_cursor_round_trips(seq: int) -> None:
    cursor = encode_cursor(seq)
    assert decode_cursor(cursor) == seq
    assert "=" not in cursor and "/" not in cursor and "+" not in cursor


def test_no_cursor_starts_after_every_entry() -> None:
    assert decode_cursor(None) == 2**63 - 1


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "!!!",
        "not a cursor",
        "ä",
        _cursor(b"x12"),  # wrong prefix
        _cursor(b"e"),  # no number
        _cursor(b"eabc"),
        _cursor(b"e1.5"),
        _cursor(b"\xff\xfe"),  # not UTF-8
        _cursor(b"e" + b"9" * 5000),  # more digits than int() accepts
    ],
)
def test_garbage_cursor_is_a_validation_error(cursor: str) -> None:
    with pytest.raises(ValidationFailed):
        decode_cursor(cursor)


@pytest.mark.parametrize("raw", [b"e-1", b"e" + str(2**63).encode(), b"e" + b"9" * 30])
def test_cursor_outside_the_sequence_range_is_a_validation_error(raw: bytes) -> None:
    """No entry has such a seq. Taken as is, one beyond bigint reached SQL and came
    back as asyncpg's "invalid input for query argument $3" rather than this message."""
    with pytest.raises(ValidationFailed):
        decode_cursor(_cursor(raw))


@given(st.text(max_size=40))
def test_any_cursor_string_decodes_to_an_int_or_is_a_validation_error(cursor: str) -> None:
    try:
        assert isinstance(decode_cursor(cursor), int)
    except ValidationFailed:
        return
