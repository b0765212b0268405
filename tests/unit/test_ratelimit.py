"""The token buckets behind the rate limits, on a fake clock."""

from __future__ import annotations

import pytest

from service.config import Rate
from service.errors import RateLimited
from service.ratelimit import Buckets
from tests.helpers import FakeClock


def test_a_bucket_refills_at_its_rate_and_says_when() -> None:
    clock = FakeClock()
    buckets = Buckets(Rate(count=3, per_s=30), "writes", clock)
    for _ in range(3):
        buckets.take("k", "writes")
    with pytest.raises(RateLimited) as refused:
        buckets.take("k", "writes")
    assert refused.value.retry_after_s == 10
    buckets.take("other", "writes")  # one key's bucket is its own
    clock.now += 10
    buckets.take("k", "writes")
    with pytest.raises(RateLimited):
        buckets.take("k", "writes")


def test_spend_never_raises_and_check_takes_nothing() -> None:
    clock = FakeClock()
    buckets = Buckets(Rate(count=2, per_s=10), "auth_address", clock)
    buckets.check("a", "failures")
    for _ in range(5):
        buckets.spend("a")
    with pytest.raises(RateLimited):
        buckets.check("a", "failures")
    clock.now += 5
    buckets.check("a", "failures")
