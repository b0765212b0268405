"""The limits on event attributes that the static cost bound of expressions relies on.

An expression's cost depends on the values it reads: `event.tags.exists(t, …)` runs
once per element, and every read of an attribute copies it (the `cel` package converts
the value at each access). `cost.py` can only promise an upper bound if attributes are
bounded too, so an event is refused (422, naming the attribute) unless:

- it has at most `MAX_ATTRIBUTES` attributes;
- lists and maps nest at most `MAX_DEPTH` deep inside an attribute;
- a list has at most `MAX_LIST_ITEMS` elements, a map at most `MAX_MAP_ENTRIES`;
- a string (a key too) has at most `MAX_STRING_CHARS` characters;
- all attributes together hold at most `MAX_VALUES` values (each number, string,
  boolean, null, list and map counts one) and `MAX_TOTAL_CHARS` characters of strings
  and keys.

From these, `VALUE_WEIGHT` bounds the weight (see `cost.py`) of any value an
expression can read from `event`. The check is pure: `problem` says what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

MAX_ATTRIBUTES: Final = 64
MAX_DEPTH: Final = 4
MAX_LIST_ITEMS: Final = 100
MAX_MAP_ENTRIES: Final = 64
MAX_STRING_CHARS: Final = 1_000
MAX_VALUES: Final = 256
MAX_TOTAL_CHARS: Final = 4_096

# A string weighs one unit plus one per `CHARS_PER_UNIT` characters: copying a
# 1,000-character string costs about as much as copying 30 integers (measured).
CHARS_PER_UNIT: Final = 32
VALUE_WEIGHT: Final = MAX_VALUES + MAX_TOTAL_CHARS // CHARS_PER_UNIT


def string_weight(chars: int) -> int:
    """The weight of a string of `chars` characters."""
    return 1 + chars // CHARS_PER_UNIT


class _Tally:
    """What the attributes hold so far, to refuse them as soon as a total is passed."""

    __slots__ = ("chars", "values")

    def __init__(self) -> None:
        self.values = 0
        self.chars = 0


def problem(attributes: Mapping[str, Any]) -> str | None:
    """The first limit above that `attributes` pass, naming the attribute; or None."""
    if len(attributes) > MAX_ATTRIBUTES:
        return f"an event has at most {MAX_ATTRIBUTES} attributes"
    tally = _Tally()
    for name, value in attributes.items():
        found = _string(name, tally) or _value(value, 0, tally)
        if found is not None:
            return f"attribute {name[:64]!r}: {found}"
    return None


def _string(text: str, tally: _Tally) -> str | None:
    tally.chars += len(text)
    if len(text) > MAX_STRING_CHARS:
        return f"a string or key has at most {MAX_STRING_CHARS} characters"
    if tally.chars > MAX_TOTAL_CHARS:
        return f"all attributes together have at most {MAX_TOTAL_CHARS} characters of text"
    return None


def _value(value: Any, depth: int, tally: _Tally) -> str | None:
    """The first limit `value` (at `depth` containers down) passes, or None."""
    tally.values += 1
    if tally.values > MAX_VALUES:
        return f"all attributes together hold at most {MAX_VALUES} values"
    if isinstance(value, str):
        return _string(value, tally)
    if not isinstance(value, list | dict):
        return None
    if depth == MAX_DEPTH:
        return f"lists and maps nest at most {MAX_DEPTH} deep"
    if isinstance(value, list):
        if len(value) > MAX_LIST_ITEMS:
            return f"a list has at most {MAX_LIST_ITEMS} elements"
        entries = [(None, item) for item in value]
    elif len(value) > MAX_MAP_ENTRIES:
        return f"a map has at most {MAX_MAP_ENTRIES} entries"
    else:
        entries = list(value.items())
    for key, item in entries:
        found = (_string(key, tally) if key is not None else None) or _value(item, depth + 1, tally)
        if found is not None:
            return found
    return None
