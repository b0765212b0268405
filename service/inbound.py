"""The checks a client's bytes pass before any decoder sees them.

msgspec raises `UnicodeDecodeError` (not a `DecodeError`) for invalid UTF-8 inside a
string, and `RecursionError` for nesting near the interpreter's recursion limit,
which also depends on how deep the stack already is; a batch's items arrive as
`msgspec.Raw` spans that were skipped over unchecked and are decoded later. So the
whole body is checked once, up front: UTF-8, no NUL, and at most `MAX_NESTING`
levels of arrays and objects, a bound far below any recursion limit and the same
for YAML rule sets (`rules/model.py`).
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Final

from service.errors import ValidationFailed

MAX_NESTING: Final = 64

# A JSON \u0000 escape (not an escaped backslash followed by "u0000"): PostgreSQL
# text cannot hold NUL, so refuse it before it reaches the database.
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
# Everything but brackets and quotes goes; braces become brackets, one kind of level.
_NOT_STRUCTURE: Final = bytes(b for b in range(256) if b not in b'[]{}"')
_ONE_KIND: Final = bytes.maketrans(b"{}", b"[]")
# A bracket as the signed byte it adds to the depth: 1 for `[`, -1 (0xff) for `]`.
_STEPS: Final = bytes.maketrans(b"[]", b"\x01\xff")


def check_json(raw: bytes) -> None:
    """Refuses a body no decoder should see: not UTF-8, a NUL, or too deep.

    A transfer is ~200 bytes with three brackets, so the common case costs an
    `isascii`, a substring test and two `count`s; only a body with more opening
    brackets than `MAX_NESTING` is scanned for its real depth."""
    if not raw.isascii():
        check_utf8(raw)
    if b"\\u0000" in raw and _NUL_ESCAPE.search(raw):  # the regex only where it may match
        raise ValidationFailed("text may not contain NUL characters (\\u0000)")
    if raw.count(b"[") + raw.count(b"{") > MAX_NESTING and _depth(raw) > MAX_NESTING:
        raise ValidationFailed(
            f"the body nests arrays and objects deeper than {MAX_NESTING} levels"
        )


def check_utf8(raw: bytes) -> str:
    """The text of `raw`, or 422 naming the first byte that is not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        byte = f"byte {err.start} (0x{raw[err.start]:02x}): {err.reason}"
        raise ValidationFailed(f"the body is not UTF-8 text; {byte}") from None


def _depth(raw: bytes) -> int:
    """How many arrays and objects the JSON text `raw` holds open at once at most,
    in byte operations that run in C (at worst, 1 MiB of brackets, ~25 ms).

    Escaped backslashes, then escaped quotes, go first, pair by pair from the left
    as a decoder reads them, so that every quote left opens or closes a string. Of
    the rest only brackets and quotes are kept; an empty string `""` goes at once
    (that keeps every bracket on its side of every quote), and what lies between a
    pair of quotes is a string's text. Malformed text may be miscounted after its
    first fault, but the decoder stops at that fault and recurses no further."""
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    kept = raw.translate(_ONE_KIND, _NOT_STRUCTURE).replace(b'""', b"")
    brackets = b"".join(kept.split(b'"')[::2])
    passes, brackets = _peel(brackets)
    steps = memoryview(brackets.translate(_STEPS)).cast("b")
    return passes + max(accumulate(steps, initial=0))


def _peel(brackets: bytes) -> tuple[int, bytes]:
    """Removes the innermost level (every `[]`) while that shrinks the text by a
    quarter or more: a batch of transfers is `[[[]]]` a thousand times over, gone
    in three passes. Each pass lowers the greatest depth of a well-formed text by
    exactly one, and any text's by at most one, so the passes plus the depth of
    what is left is the depth, or more for a malformed text (never less). A text
    that peels badly is walked as it is, at about 25 ns a byte."""
    passes = 0
    while b"[]" in brackets:
        peeled = brackets.replace(b"[]", b"")
        passes += 1
        enough = len(peeled) * 4 <= len(brackets) * 3
        brackets = peeled
        if not enough:
            break
    return passes, brackets
