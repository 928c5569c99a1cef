"""Open-loop schedules: seeded, Poisson by default, gamma burstiness as ``vllm bench serve`` defines it."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from kvstack.bench.arrivals import poisson_schedule, rate_seed, schedule_count


def _independent_poisson(rate: float, count: int, seed: int) -> list[float]:
    """Exponential gaps from the uniform draws themselves (inverse CDF), then vLLM's rescaling."""
    rng = random.Random(seed)
    offsets: list[float] = []
    total = 0.0
    for _ in range(count):
        total += -math.log(1.0 - rng.random()) / rate
        offsets.append(total)
    factor = (count / rate) / offsets[-1]
    return [o * factor for o in offsets]


def test_same_seed_same_schedule_with_values_computed_independently() -> None:
    schedule = poisson_schedule(rate=2.0, count=6, seed=7)
    expected = _independent_poisson(2.0, 6, 7)
    assert schedule.offsets == pytest.approx(expected, rel=1e-12)
    assert poisson_schedule(rate=2.0, count=6, seed=7) == schedule
    assert poisson_schedule(rate=2.0, count=6, seed=8).offsets != schedule.offsets


def test_last_request_lands_at_count_over_rate_and_offsets_never_go_back() -> None:
    schedule = poisson_schedule(rate=4.0, count=40, seed=3)
    assert schedule.span_s == pytest.approx(10.0)
    assert schedule.count == 40
    assert all(b >= a for a, b in zip(schedule.offsets, schedule.offsets[1:], strict=False))
    assert schedule.offsets[0] > 0  # like vLLM, the first request also waits one gap


def test_infinite_burstiness_is_a_constant_gap() -> None:
    schedule = poisson_schedule(rate=5.0, count=4, seed=1, burstiness=math.inf)
    assert schedule.offsets == pytest.approx([0.2, 0.4, 0.6, 0.8])


def test_lower_burstiness_gives_more_uneven_gaps() -> None:
    def gap_cv(burstiness: float) -> float:
        offsets = poisson_schedule(rate=1.0, count=2000, seed=11, burstiness=burstiness).offsets
        gaps = [b - a for a, b in zip((0.0, *offsets), offsets, strict=False)]
        return statistics.pstdev(gaps) / statistics.fmean(gaps)

    # gamma(shape k): coefficient of variation 1/sqrt(k)
    assert gap_cv(0.25) == pytest.approx(2.0, rel=0.15)
    assert gap_cv(1.0) == pytest.approx(1.0, rel=0.1)
    assert gap_cv(4.0) == pytest.approx(0.5, rel=0.1)


def test_count_is_bounded_by_requests_and_duration() -> None:
    assert schedule_count(rate=2.0, max_requests=50, max_duration_s=10.0) == 20
    assert schedule_count(rate=2.0, max_requests=8, max_duration_s=10.0) == 8
    assert schedule_count(rate=0.05, max_requests=8, max_duration_s=10.0) == 1
    assert schedule_count(rate=2.0, max_requests=8, max_duration_s=None) == 8


def test_each_rate_of_a_run_gets_its_own_stable_seed() -> None:
    assert rate_seed(0, 1.0) != rate_seed(0, 2.0)
    assert rate_seed(5, 0.5) == rate_seed(5, 0.5)


@pytest.mark.parametrize(
    ("rate", "count", "burstiness", "named"),
    [(0.0, 3, 1.0, "rate"), (1.0, 0, 1.0, "count"), (1.0, 3, 0.0, "burstiness")],
)
def test_bad_parameters_are_refused(rate: float, count: int, burstiness: float, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        poisson_schedule(rate=rate, count=count, seed=0, burstiness=burstiness)
