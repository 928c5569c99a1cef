"""Samples -> statistics: pure functions, no numpy needed.

Percentiles use linear interpolation between closest ranks, the same definition as ``numpy.percentile``'s
default (and so as ``vllm bench serve``'s figures).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of ``samples`` with linear interpolation. Raises on an empty input."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be within 0..100, got {q}")
    ordered = sorted(samples)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    if lo == hi:
        return ordered[lo]
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def median(samples: Sequence[float]) -> float:
    return percentile(samples, 50.0)


class Distribution(BaseModel):
    """Summary of one latency distribution, in milliseconds."""

    count: int
    mean_ms: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None


def distribution_ms(samples_s: Sequence[float]) -> Distribution:
    """Summarise samples given in seconds as a ``Distribution`` in milliseconds."""
    if not samples_s:
        return Distribution(count=0)
    ms = [s * 1000.0 for s in samples_s]
    return Distribution(
        count=len(ms),
        mean_ms=sum(ms) / len(ms),
        p50_ms=percentile(ms, 50),
        p90_ms=percentile(ms, 90),
        p99_ms=percentile(ms, 99),
        max_ms=max(ms),
    )


@dataclass(frozen=True, slots=True)
class LevelPoint:
    """One concurrency level of a sweep, reduced to what the knee needs."""

    concurrency: int
    throughput: float  # output tokens/s
    latency: float  # a per-request latency, any unit (the same at every level)


@dataclass(frozen=True, slots=True)
class Knee:
    concurrency: int  # first level whose latency grew faster than its throughput
    previous: int  # the level before it: the last one where adding load still paid
    throughput_growth: float
    latency_growth: float


def find_knee(points: Sequence[LevelPoint]) -> Knee | None:
    """The first step of a sweep where latency grows by a larger factor than throughput.

    Past that point more concurrency buys less throughput than it costs in latency. ``None`` when every
    step paid (no knee up to the largest level measured) or when there are fewer than two usable levels.
    """
    usable = [p for p in sorted(points, key=lambda p: p.concurrency) if p.throughput > 0 and p.latency > 0]
    for prev, cur in itertools.pairwise(usable):
        t_growth = cur.throughput / prev.throughput
        l_growth = cur.latency / prev.latency
        if l_growth > t_growth:
            return Knee(
                concurrency=cur.concurrency,
                previous=prev.concurrency,
                throughput_growth=t_growth,
                latency_growth=l_growth,
            )
    return None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator
