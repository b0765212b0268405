"""How long one request may spend evaluating rules, checked between rule evaluations.

The `cel` package holds the GIL while it evaluates and cannot be interrupted, so the
static bounds (`cost.py`, `limits.py`) keep each event's evaluation to a few tens of
milliseconds; a request with many events (a simulation, a batch) could still add
those up to seconds, during which nothing else on the event loop runs. So each such
request yields to the loop between events and carries a `Deadline`: evaluation time
(not time spent waiting on the database) is summed, and once it passes
`EVALUATION_LIMIT_S` the next rule evaluation raises `ValidationFailed` instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final

from service.errors import ValidationFailed

EVALUATION_LIMIT_S: Final = 2.0


class Deadline:
    """The evaluation time left to one request."""

    __slots__ = ("_clock", "_limit_s", "_since", "_spent_s")

    def __init__(
        self, limit_s: float = EVALUATION_LIMIT_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limit_s = limit_s
        self._clock = clock
        self._spent_s = 0.0
        self._since: float | None = None

    @contextmanager
    def running(self) -> Iterator[None]:
        """Counts the time inside the block as evaluation time."""
        self._since = self._clock()
        try:
            yield
        finally:
            self._spent_s += self._clock() - self._since
            self._since = None

    def check(self) -> None:
        """Raises `ValidationFailed` once the request has evaluated for too long."""
        spent = self._spent_s + (self._clock() - self._since if self._since is not None else 0.0)
        if spent > self._limit_s:
            raise ValidationFailed(
                f"the rule set took longer than {self._limit_s:g} s to evaluate these events;"
                " send fewer events per request or simplify the rules"
            )
