"""What a scenario measured: counts, throughput and latency percentiles."""

from __future__ import annotations

import math
from typing import Any

import msgspec


class Latency(msgspec.Struct, kw_only=True):
    """Milliseconds, nearest-rank percentiles."""

    count: int
    p50: float
    p95: float
    p99: float
    max: float
    mean: float


class ScenarioResult(msgspec.Struct, kw_only=True):
    name: str
    title: str
    clients: int
    seconds: float
    requests: int
    ok: int
    expected: int  # refusals the scenario expects (409 insufficient_points in the race)
    errors: int
    unfinished: int  # requests still unanswered `grace_s` after the end (cancelled)
    error_samples: list[str]
    ops: int  # transfers (postings for the batch, completed flows for pending)
    ops_per_s: float
    all_ops: int  # warm-up and the grace after the end included: what the database saw
    requests_per_s: float
    latency: Latency  # every measured request
    by_kind: dict[str, Latency]
    cpu_cores: dict[str, float] = msgspec.field(default_factory=dict)
    db: dict[str, Any] = msgspec.field(default_factory=dict)  # xids, WAL, top statements
    settle_s: float | None = None  # time until the seal queue was empty afterwards
    ratio_to_floor: float | None = None


def percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered) - 1e-9)))
    return ordered[rank - 1]


def latency(samples_s: list[float]) -> Latency:
    ordered = sorted(samples_s)
    ms = 1000.0
    return Latency(
        count=len(ordered),
        p50=round(percentile(ordered, 0.50) * ms, 2),
        p95=round(percentile(ordered, 0.95) * ms, 2),
        p99=round(percentile(ordered, 0.99) * ms, 2),
        max=round((ordered[-1] if ordered else 0.0) * ms, 2),
        mean=round(sum(ordered) / len(ordered) * ms, 2) if ordered else 0.0,
    )
