"""`check_json`: the nesting scan is exact for JSON, and what it lets through never
sends a decoder into deep recursion or invalid UTF-8."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.errors import ValidationFailed
from service.inbound import MAX_NESTING, _depth, check_json

# Text full of the characters the scan must see through: brackets, quotes, backslashes.
TRICKY = st.text(alphabet='[]{}"\\/ au\n\té', max_size=8)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | TRICKY,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TRICKY, inner, max_size=3),
    max_leaves=30,
)


def reference_depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(reference_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(reference_depth, value.values()), default=0)
    return 0


def chain(value: Any, levels: int) -> Any:
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


@settings(max_examples=300, deadline=None)
@given(value=VALUES, wrap=st.integers(0, 70), ascii_only=st.booleans())
def test_depth_is_exact_for_json(value: Any, wrap: int, ascii_only: bool) -> None:
    document = chain(value, wrap)
    raw = json.dumps(document, ensure_ascii=ascii_only).encode()
    assert _depth(raw) == reference_depth(document)


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps(chain(1, MAX_NESTING - 1)).encode(),
        json.dumps(chain(1, MAX_NESTING)).encode(),
        json.dumps(["[" * 100, "{" * 100]).encode(),
        b"[" * 40 + b'"\\"' + b"[" * 40,  # brackets in an open string are its text
    ],
)
def test_up_to_the_bound_passes(raw: bytes) -> None:
    check_json(raw)


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps(chain(1, MAX_NESTING + 1)).encode(),
        b"[" * 100_000,
        b'["\\\\",' * 70,  # an escaped backslash does not escape the quote after it
    ],
)
def test_beyond_the_bound_is_refused(raw: bytes) -> None:
    with pytest.raises(ValidationFailed, match=f"deeper than {MAX_NESTING}"):
        check_json(raw)


PIECES = [b"[", b"]", b"{", b"}", b'"', b"\\", b",", b":", b"1", b'"a":', b"\xc3\xa9", b" "]
NOISE = st.tuples(
    st.integers(0, 1500).map(lambda n: b"[" * n),
    st.lists(st.sampled_from(PIECES), max_size=200).map(b"".join),
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(raw=NOISE)
def test_what_passes_never_recurses_deeply(raw: bytes) -> None:
    """Malformed text too: whatever the scan lets through, msgspec refuses or
    decodes without a RecursionError or a UnicodeDecodeError."""
    try:
        check_json(raw)
    except ValidationFailed:
        return
    with contextlib.suppress(msgspec.DecodeError):
        msgspec.json.decode(raw)
