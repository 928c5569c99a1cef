"""bench.stats: percentiles as numpy defines them, distributions, the knee of a sweep."""

from __future__ import annotations

import pytest

from kvstack.bench.stats import LevelPoint, distribution_ms, find_knee, median, percentile, ratio


def test_percentile_linear_interpolation() -> None:
    data = [15.0, 20.0, 35.0, 40.0, 50.0]
    # numpy.percentile(data, q) values
    assert percentile(data, 0) == 15.0
    assert percentile(data, 40) == pytest.approx(29.0)
    assert percentile(data, 50) == 35.0
    assert percentile(data, 90) == pytest.approx(46.0)
    assert percentile(data, 99) == pytest.approx(49.6)
    assert percentile(data, 100) == 50.0
    assert median([3.0, 1.0, 2.0, 10.0]) == 2.5


def test_percentile_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)
    with pytest.raises(ValueError, match=r"0\.\.100"):
        percentile([1.0], 101)


def test_distribution_in_ms() -> None:
    d = distribution_ms([0.1, 0.2, 0.3])
    assert d.count == 3
    assert d.p50_ms == pytest.approx(200.0)
    assert d.mean_ms == pytest.approx(200.0)
    assert d.max_ms == pytest.approx(300.0)
    empty = distribution_ms([])
    assert empty.count == 0
    assert empty.p99_ms is None


def test_knee_is_the_first_step_where_latency_outgrows_throughput() -> None:
    points = [
        LevelPoint(1, 30, 500),
        LevelPoint(2, 58, 540),  # x1.93 vs x1.08
        LevelPoint(4, 100, 600),
        LevelPoint(8, 160, 780),  # x1.6 vs x1.3
        LevelPoint(16, 200, 1270),  # x1.25 vs x1.63 -> knee
        LevelPoint(32, 210, 2500),
    ]
    knee = find_knee(points)
    assert knee is not None
    assert (knee.previous, knee.concurrency) == (8, 16)
    assert knee.throughput_growth == pytest.approx(1.25)
    assert knee.latency_growth == pytest.approx(1270 / 780)


def test_no_knee_when_every_step_pays() -> None:
    assert find_knee([LevelPoint(1, 10, 100), LevelPoint(2, 20, 110), LevelPoint(4, 39, 150)]) is None
    assert find_knee([LevelPoint(1, 10, 100)]) is None
    # unsorted input and unusable levels (no throughput) are handled
    knee = find_knee([LevelPoint(4, 20, 400), LevelPoint(1, 10, 100), LevelPoint(2, 0, 0)])
    assert knee is not None
    assert knee.concurrency == 4


def test_ratio() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(3.0, 0.0) is None
    assert ratio(None, 2.0) is None
