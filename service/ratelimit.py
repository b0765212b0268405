"""Token buckets for the rate limits: failed authentication per client address and
per key, and writes per key.

Each process keeps its own buckets in memory. Nothing is shared between worker
processes or replicas, on purpose: a shared counter would be a row that every
request must update, or a store beside PostgreSQL. So with W workers and R
replicas, one client may get up to W × R times a limit, depending on where its
connections land; `docs/operations.md` says so and names the ingress setting that
gives a hard global limit. The limits exist to turn a flood into 429s before it
reaches the database; a key's strength (256 random bits, or an admin key of at
least 32 characters) is what makes guessing hopeless.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Final

from service.auth import key_id_of
from service.config import Rate, RateLimits
from service.errors import RateLimited
from service.metrics import RATE_LIMITED

# A bucket per key or address: past this many, the full (idle) ones are dropped,
# then all of them, so that a scan from many addresses cannot grow memory without end.
_MAX_BUCKETS: Final = 100_000


class Buckets:
    """One token bucket per name: `count` tokens, refilled at `count / per_s` a second."""

    __slots__ = ("_clock", "_full_after_s", "_label", "_per_token_s", "_size", "_state")

    def __init__(self, rate: Rate, label: str, clock: Callable[[], float] = time.monotonic):
        self._size = float(rate.count)
        self._per_token_s = rate.per_s / rate.count
        self._full_after_s = rate.per_s
        self._label = label
        self._clock = clock
        # name -> (tokens, when they were counted)
        self._state: dict[str, tuple[float, float]] = {}

    def __bool__(self) -> bool:
        """Whether any name has spent a token (and so might have none left)."""
        return bool(self._state)

    def _tokens(self, name: str, now: float) -> float:
        found = self._state.get(name)
        if found is None:
            return self._size
        tokens, at = found
        return min(self._size, tokens + (now - at) / self._per_token_s)

    def check(self, name: str, what: str) -> None:
        """Raises `RateLimited` while `name` has no token left; takes none."""
        tokens = self._tokens(name, self._clock())
        if tokens < 1:
            self._refuse(tokens, what)

    def spend(self, name: str) -> None:
        """Takes a token for `name` if it has one (a failure already answered)."""
        now = self._clock()
        tokens = self._tokens(name, now)
        if len(self._state) >= _MAX_BUCKETS:
            self._forget_idle(now)
        self._state[name] = (max(0.0, tokens - 1), now)

    def take(self, name: str, what: str) -> None:
        """Takes a token for `name`, or raises `RateLimited` when there is none."""
        now = self._clock()
        tokens = self._tokens(name, now)
        if tokens < 1:
            self._refuse(tokens, what)
        if len(self._state) >= _MAX_BUCKETS:
            self._forget_idle(now)
        self._state[name] = (tokens - 1, now)

    def _refuse(self, tokens: float, what: str) -> None:
        RATE_LIMITED.labels(self._label).inc()
        retry_after_s = max(1, math.ceil((1 - tokens) * self._per_token_s))
        raise RateLimited(f"too many {what}; retry in {retry_after_s} s", retry_after_s)

    def _forget_idle(self, now: float) -> None:
        idle = [n for n, (_, at) in self._state.items() if now - at >= self._full_after_s]
        for name in idle:
            del self._state[name]
        if len(self._state) > _MAX_BUCKETS // 2:  # so that the next scan is far off
            self._state.clear()


class Limits:
    """The rate limits of one process: failed authentication per client address and
    per key id, writes per key. Off (`LEDGER_RATE_LIMITS=off`) for the benchmark."""

    def __init__(self, config: RateLimits, clock: Callable[[], float] = time.monotonic):
        self.enabled = config.enabled
        self.failures_by_address = Buckets(config.auth_failures_per_address, "auth_address", clock)
        self.failures_by_key = Buckets(config.auth_failures_per_key, "auth_key", clock)
        self.writes = Buckets(config.writes_per_key, "writes", clock)

    def admit(self, address: str, authorization: str | None) -> None:
        """Raises `RateLimited` while `address`, or the key id in `authorization`,
        has failed to authenticate too often. The key id is parsed only once some
        key id has failed: a request with a good key pays a dictionary lookup."""
        if not self.enabled:
            return
        self.failures_by_address.check(address, "failed authentications from this address")
        if self.failures_by_key and (key_id := key_id_of(authorization)) is not None:
            self.failures_by_key.check(key_id, "failed authentications with this key id")

    def failed(self, address: str, authorization: str | None) -> None:
        """Counts a failed authentication against `address` and its key id."""
        if not self.enabled:
            return
        self.failures_by_address.spend(address)
        if (key_id := key_id_of(authorization)) is not None:
            self.failures_by_key.spend(key_id)

    def write(self, key_id: str) -> None:
        """Counts a write by `key_id`, or raises `RateLimited` past its rate."""
        if self.enabled:
            self.writes.take(key_id, "writes with this key")
