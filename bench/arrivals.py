"""Open-loop arrival schedules: when each request is sent, independent of when earlier ones finish.

Closed-loop load (a semaphore of N in flight) waits for answers, so a slow server is sent less work;
production traffic does not wait. An open-loop phase sends request ``i`` at ``offsets[i]`` seconds after
the phase starts, whatever is still in flight.

The schedule is ``vllm bench serve``'s (``vllm/benchmarks/serve.py``, ``get_request``), on the standard
library's generator instead of numpy's global one:

- the gap before each request (the first included) is drawn from a gamma distribution with shape
  ``burstiness`` and scale ``1 / (rate * burstiness)``, so its mean is ``1 / rate``; ``burstiness = 1`` is a
  Poisson process (exponential gaps), below 1 burstier, above 1 more even, ``inf`` a constant gap;
- the cumulative sums are rescaled so that the last request is sent at exactly ``count / rate`` seconds,
  which keeps the offered rate of a short schedule from drifting a few percent with the seed.

Pure and seeded: the same (rate, count, burstiness, seed) gives the same schedule on every machine.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ArrivalSchedule:
    """Send offsets (seconds from the phase start, non-decreasing) of one open-loop phase."""

    rate: float  # requests/s offered
    burstiness: float
    seed: int
    offsets: tuple[float, ...]

    @property
    def count(self) -> int:
        return len(self.offsets)

    @property
    def span_s(self) -> float:
        return self.offsets[-1] if self.offsets else 0.0


def schedule_count(rate: float, max_requests: int, max_duration_s: float | None) -> int:
    """Requests of one phase: ``max_requests``, or fewer when ``rate x max_duration_s`` is (at least 1)."""
    if rate <= 0 or max_requests < 1:
        raise ValueError("rate must be > 0 and max_requests >= 1")
    if max_duration_s is None:
        return max_requests
    return max(1, min(max_requests, math.floor(rate * max_duration_s)))


def rate_seed(seed: int, rate: float) -> int:
    """A seed per rate, so that two rates of one run do not share their gaps (stable across runs)."""
    return seed * 1_000_003 + round(rate * 1000)


def poisson_schedule(rate: float, count: int, seed: int, burstiness: float = 1.0) -> ArrivalSchedule:
    """``count`` send offsets at ``rate`` requests/s: gamma gaps (Poisson when ``burstiness`` is 1)."""
    if not rate > 0 or math.isinf(rate):
        raise ValueError(f"rate must be a finite number > 0, got {rate}")
    if not burstiness > 0:
        raise ValueError(f"burstiness must be > 0, got {burstiness}")
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if math.isinf(burstiness):
        gaps = [1.0 / rate] * count
    else:
        rng = random.Random(seed)
        theta = 1.0 / (rate * burstiness)
        gaps = [rng.gammavariate(burstiness, theta) for _ in range(count)]
    offsets: list[float] = []
    total = 0.0
    for gap in gaps:
        total += gap
        offsets.append(total)
    if offsets[-1] > 0:
        factor = (count / rate) / offsets[-1]
        offsets = [o * factor for o in offsets]
    return ArrivalSchedule(rate=rate, burstiness=burstiness, seed=seed, offsets=tuple(offsets))
