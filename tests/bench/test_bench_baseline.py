"""The baseline gate's pure parts: reading reports, workload identity, the noise intervals, the comparison."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from kvstack.bench.baseline import (
    METRICS,
    BaselineError,
    BaselineFigures,
    Better,
    RunSamples,
    bootstrap_noise,
    compare_metric,
    compare_runs,
    compared_figures,
    judge_baseline,
    quantile_noise,
    quantile_ranks,
    read_report,
    run_noise,
    run_side,
    samples_to_bound,
    unbounded_figures,
    workload_differences,
)
from kvstack.bench.config import VerifyConfig
from kvstack.bench.stats import percentile

THROUGHPUT = next(m for m in METRICS if m.key == "peak_output_throughput")
TTFT_P99 = next(m for m in METRICS if m.key == "ttft_p99_ms")


def _report(
    peak: float, ttft_p99: float, speedup: float, config: dict[str, Any] | None = None
) -> dict[str, Any]:
    cfg = config or VerifyConfig(endpoint="http://127.0.0.1:8000").model_dump(mode="json")
    dist = {"count": 10, "p50_ms": ttft_p99 / 2, "p99_ms": ttft_p99}
    return {
        "report_version": "kvstack.verify/v1",
        "kvstack_version": "0.1.0",
        "started_at": "2026-12-02T05:00:00+00:00",
        "complete": True,
        "endpoint": "http://127.0.0.1:8000",
        "config": cfg,
        "server": {"endpoint": "http://127.0.0.1:8000", "model": "m", "models": ["m"], "version": "0.32.0"},
        "checks": [
            {
                "name": "sweep",
                "figures": {
                    "peak_throughput": peak,
                    "peak_concurrency": 8,
                    "levels": [
                        {
                            "concurrency": 1,
                            "requests": 2,
                            "failed": 0,
                            "output_throughput": peak / 4,
                            "ttft": {"count": 2, "p50_ms": 50.0, "p99_ms": 60.0},
                            "tpot": {"count": 2, "p50_ms": 20.0, "p99_ms": 21.0},
                        },
                        {
                            "concurrency": 8,
                            "requests": 16,
                            "failed": 0,
                            "output_throughput": peak,
                            "ttft": dist,
                            "tpot": {"count": 16, "p50_ms": 30.0, "p99_ms": 40.0},
                        },
                        {"concurrency": 16, "requests": 32, "failed": 32, "output_throughput": 0.0},
                    ],
                },
            },
            {"name": "prefix_caching", "figures": {"speedup": speedup}},
        ],
    }


def test_figures_are_read_from_the_report_json() -> None:
    fig = compared_figures(_report(200.0, 900.0, 4.0))
    assert fig.peak_output_throughput == 200.0
    assert fig.peak_concurrency == 8
    assert fig.ttft_p99_ms == 900.0
    assert fig.ttft_p50_ms == 450.0
    assert fig.tpot_p99_ms == 40.0
    assert fig.prefix_speedup == 4.0
    assert fig.goodput_concurrency is None  # no capacity check in this report
    assert fig.latency_concurrency == 8  # latency is read at the peak level
    at_one = compared_figures(_report(200.0, 900.0, 4.0), latency_concurrency=1)
    assert (at_one.ttft_p50_ms, at_one.tpot_p99_ms, at_one.latency_concurrency) == (50.0, 21.0, 1)
    not_measured = compared_figures(_report(200.0, 900.0, 4.0), latency_concurrency=64)
    assert (not_measured.ttft_p50_ms, not_measured.latency_concurrency) == (None, None)
    side = run_side(_report(200.0, 900.0, 4.0), "prev.json")
    assert side.sweep.concurrency == [1, 8]  # the level where every request failed is left out
    assert side.model == "m"


def test_a_regression_must_exceed_both_the_noise_and_the_floor() -> None:
    # throughput 100 -> 85: 15% worse
    assert compare_metric(THROUGHPUT, 100.0, 85.0, noise=0.05, floor=0.10).regressed
    assert not compare_metric(THROUGHPUT, 100.0, 85.0, noise=0.20, floor=0.10).regressed
    assert not compare_metric(THROUGHPUT, 100.0, 85.0, noise=0.05, floor=0.20).regressed
    assert not compare_metric(THROUGHPUT, 100.0, 85.0, noise=None, floor=0.20).regressed
    assert compare_metric(THROUGHPUT, 100.0, 85.0, noise=None, floor=0.10).regressed
    # better is never a regression, however large
    assert not compare_metric(THROUGHPUT, 100.0, 300.0, noise=0.0, floor=0.0).regressed


def test_the_tolerance_is_the_noise_of_the_difference_of_two_runs() -> None:
    # 12% worse, one run's noise 9%: a difference of two such runs spreads 12.7%, so not a regression
    m = compare_metric(THROUGHPUT, 100.0, 88.0, noise=0.09, floor=0.10)
    assert m.tolerance == pytest.approx(0.09 * math.sqrt(2))
    assert not m.regressed
    assert compare_metric(THROUGHPUT, 100.0, 86.0, noise=0.09, floor=0.10).regressed


def test_direction_of_latency_figures_is_lower_is_better() -> None:
    worse = compare_metric(TTFT_P99, 100.0, 150.0, noise=0.1, floor=0.1)
    assert TTFT_P99.better is Better.LOWER
    assert worse.regressed
    assert worse.change == pytest.approx(0.5)
    assert worse.regression == pytest.approx(0.5)
    assert worse.tolerance == pytest.approx(math.sqrt(2) * 0.1)  # the noise of a difference of two runs
    better = compare_metric(TTFT_P99, 100.0, 50.0, noise=0.1, floor=0.1)
    assert not better.regressed
    assert better.regression == pytest.approx(-0.5)


def test_missing_figures_are_not_compared_and_say_why() -> None:
    m = compare_metric(THROUGHPUT, None, 85.0, noise=0.05, floor=0.10)
    assert not m.regressed
    assert m.change is None
    assert "baseline" in m.note


def test_compare_runs_and_judge() -> None:
    base = run_side(_report(200.0, 900.0, 4.0), "prev.json")
    same = run_side(_report(195.0, 950.0, 3.9), "this run")
    worse = run_side(_report(60.0, 4000.0, 3.9), "this run")
    noise: dict[str, float | None] = {"peak_output_throughput": 0.08, "ttft_p99_ms": 0.3}
    ok = compare_runs(base, same, noise, floor=0.10, confidence=0.95, resamples=1000)
    passed, reason = judge_baseline(ok)
    assert passed is True, reason
    assert len(ok.compared) == 6  # goodput concurrency is in neither report
    bad = compare_runs(base, worse, noise, floor=0.10, confidence=0.95, resamples=1000)
    passed, reason = judge_baseline(bad)
    assert passed is False
    assert {m.key for m in bad.regressions} == {"peak_output_throughput", "ttft_p50_ms", "ttft_p99_ms"}
    assert "peak output throughput 200 -> 60.00 tok/s (+70.0% worse" in reason


def test_latency_percentiles_have_their_own_floor() -> None:
    """TTFT 900 -> 1,035 ms (+15%, what identical H200 runs showed) passes the 20% latency floor, while
    the same +15% on throughput's 10% floor fails; the latency floor defaults to the floor."""
    base = run_side(_report(200.0, 900.0, 4.0), "prev.json")
    slower_ttft = run_side(_report(200.0, 1035.0, 4.0), "this run")
    fig = compare_runs(base, slower_ttft, {}, floor=0.10, latency_floor=0.20, confidence=0.95, resamples=1000)
    assert judge_baseline(fig)[0] is True
    assert {m.key: m.tolerance for m in fig.metrics}["ttft_p50_ms"] == 0.20
    assert {m.key: m.tolerance for m in fig.metrics}["peak_output_throughput"] == 0.10
    assert fig.latency_floor == 0.20
    same_floor = compare_runs(base, slower_ttft, {}, floor=0.10, confidence=0.95, resamples=1000)
    assert {m.key for m in same_floor.regressions} == {"ttft_p50_ms", "ttft_p99_ms"}
    assert same_floor.latency_floor == 0.10


def test_nothing_comparable_cannot_be_judged() -> None:
    empty = _report(0.0, 0.0, 0.0)
    empty["checks"] = []
    side = run_side(empty, "x")
    fig = compare_runs(side, side, {}, floor=0.1, confidence=0.95, resamples=1000)
    assert judge_baseline(fig)[0] is None


def test_bootstrap_noise_is_seeded_and_matches_an_independent_computation() -> None:
    samples = [1.0, 2.0, 4.0, 8.0, 3.0]

    def mean(xs: Sequence[float]) -> float:
        return sum(xs) / len(xs)

    rng = random.Random(42)
    stats = []
    for _ in range(200):
        draw = [samples[rng.randrange(5)] for _ in range(5)]
        stats.append(sum(draw) / 5)
    expected = (percentile(stats, 97.5) - percentile(stats, 2.5)) / 2 / mean(samples)
    got = bootstrap_noise(samples, mean, resamples=200, confidence=0.95, seed=42)
    assert got == pytest.approx(expected, rel=1e-12)
    assert bootstrap_noise([5.0], mean, resamples=200, confidence=0.95, seed=42) is None


def test_noise_shrinks_with_more_samples() -> None:
    rng = random.Random(1)
    few = RunSamples(peak_level_output_rates=[rng.gauss(30, 3) for _ in range(8)])
    many = RunSamples(peak_level_output_rates=[rng.gauss(30, 3) for _ in range(400)])
    n_few = run_noise(few, resamples=500, confidence=0.95, seed=0)["peak_output_throughput"]
    n_many = run_noise(many, resamples=500, confidence=0.95, seed=0)["peak_output_throughput"]
    assert n_few is not None
    assert n_many is not None
    assert n_many < n_few / 3  # ~ 1/sqrt(n): sqrt(400/8) ~ 7
    assert run_noise(RunSamples(), resamples=500, confidence=0.95, seed=0)["ttft_p99_ms"] is None


def test_prefix_noise_resamples_pairs() -> None:
    pairs = [(100.0, 20.0), (110.0, 25.0), (90.0, 22.0), (120.0, 21.0), (105.0, 30.0)]
    noise = run_noise(RunSamples(prefix_pairs=pairs), resamples=500, confidence=0.95, seed=0)
    speedup_noise = noise["prefix_speedup"]
    assert speedup_noise is not None
    assert 0 < speedup_noise < 1


def test_workload_differences_name_the_fields_and_ignore_where_and_how_strict() -> None:
    base = VerifyConfig(endpoint="http://a:8000").model_dump(mode="json")
    moved = VerifyConfig.model_validate(
        {
            "endpoint": "http://b:9000",
            "thresholds": {"min_prefix_speedup": 2.0},
            "timeouts": {"run_s": 60},
            "baseline": {"report": "prev.json", "floor": 0.2},
            "fleet": {"prometheus_url": "http://127.0.0.1:9090"},  # where counters are read
        }
    ).model_dump(mode="json")
    assert workload_differences(base, moved) == []
    other = VerifyConfig.model_validate(
        {"endpoint": "http://a:8000", "sweep": {"rounds": 3, "output_tokens": 32}}
    ).model_dump(mode="json")
    diffs = workload_differences(base, other)
    assert len(diffs) == 2
    assert diffs[0].startswith("sweep.output_tokens: 16 in the baseline, 32 now")
    assert diffs[1].startswith(f"sweep.rounds: {base['sweep']['rounds']} in the baseline, 3 now")


def test_read_report_refuses_what_is_not_a_complete_report(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_report(1.0, 1.0, 1.0)))
    assert read_report(good)["complete"] is True
    cases = {
        "missing.json": None,
        "garbage.json": "{not json",
        "other.json": json.dumps({"report_version": "something/v1"}),
        "partial.json": json.dumps(_report(1.0, 1.0, 1.0) | {"complete": False}),
    }
    for name, text in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        with pytest.raises(BaselineError, match=name):
            read_report(path)


def test_goodput_concurrency_is_read_from_the_capacity_under_slo_check() -> None:
    report = _report(200.0, 900.0, 4.0)
    report["checks"].append({"name": "goodput_capacity", "figures": {"goodput_concurrency": 16}})
    assert compared_figures(report).goodput_concurrency == 16.0
    halved = _report(200.0, 900.0, 4.0)
    halved["checks"].append({"name": "goodput_capacity", "figures": {"goodput_concurrency": 8}})
    fig = compare_runs(
        run_side(report, "prev"), run_side(halved, "now"), {}, floor=0.1, confidence=0.95, resamples=1000
    )
    assert [m.key for m in fig.regressions] == ["goodput_concurrency"]


def _binomial_cdf(k: int, n: int, p: float) -> float:
    """P(Binomial(n, p) <= k), by exact integer coefficients: an independent computation."""
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


@pytest.mark.parametrize(("n", "q"), [(6, 50), (32, 50), (101, 90), (500, 99), (32, 75)])
def test_quantile_ranks_are_the_tightest_with_tails_within_the_confidence(n: int, q: float) -> None:
    ranks = quantile_ranks(n, q, 0.95)
    assert ranks is not None
    low, high = ranks
    p = q / 100
    assert _binomial_cdf(low - 1, n, p) <= 0.025 < _binomial_cdf(low, n, p)  # X(low) above the truth
    assert 1 - _binomial_cdf(high - 1, n, p) <= 0.025 < 1 - _binomial_cdf(high - 2, n, p)  # X(high) below


def test_the_median_interval_of_32_is_the_textbook_one() -> None:
    # order statistics 10 and 23 of 32 hold the median with 98% (tables of the sign test's interval)
    assert quantile_ranks(32, 50, 0.95) == (10, 23)
    assert samples_to_bound(50, 0.95) == 6
    assert quantile_ranks(5, 50, 0.95) is None  # 2 x 0.5^5 = 6.25% > 5%: five samples cannot bound it


@pytest.mark.parametrize("q", [1, 25, 50, 90, 95, 99, 99.9])
@pytest.mark.parametrize("confidence", [0.8, 0.9, 0.95, 0.99])
def test_samples_to_bound_is_where_the_ranks_first_exist(q: float, confidence: float) -> None:
    need = samples_to_bound(q, confidence)
    assert quantile_ranks(need, q, confidence) is not None
    assert quantile_ranks(need - 1, q, confidence) is None


def test_the_percentile_interval_covers_the_truth_as_often_as_it_says() -> None:
    rng = random.Random(7)
    true_p90 = -math.log(0.1)  # exponential(1): latency-like, skewed
    low, high = quantile_ranks(200, 90, 0.95) or (0, 0)
    hits = 0
    for _ in range(1000):
        xs = sorted(rng.expovariate(1.0) for _ in range(200))
        hits += xs[low - 1] <= true_p90 <= xs[high - 1]
    assert 0.95 <= hits / 1000 <= 0.99  # at least the confidence, not far above (the ranks are tight)


def test_quantile_noise_is_the_half_width_of_the_rank_interval() -> None:
    samples = [float(x) for x in range(1, 33)]  # 1..32
    # median 16.5; X(10) = 10, X(23) = 23: half-width 6.5
    assert quantile_noise(samples, 50, 0.95) == pytest.approx(6.5 / 16.5)
    assert quantile_noise(samples, 99, 0.95) is None  # 32 samples cannot bound a p99
    assert quantile_noise([], 50, 0.95) is None


def test_a_p99_of_too_few_requests_is_shown_and_not_judged() -> None:
    """The CI failure this guards: 32 TTFTs at c16, an identical rerun whose slowest request took 758 ms
    where the first run's took 396 ms. A p99 of 32 requests is about their largest; the bootstrap called
    its noise 0.1% and the gate failed the rerun on +92%. Now the p99s are shown, marked, and not judged,
    and the p50s, which 32 requests do bound, still are."""
    rng = random.Random(3)
    ttft = [rng.uniform(0.30, 0.39) for _ in range(31)] + [0.758]
    samples = RunSamples(ttft_s=ttft, tpot_s=[rng.uniform(0.03, 0.05) for _ in range(32)])
    unbounded = unbounded_figures(samples, 0.95)
    assert set(unbounded) == {"ttft_p99_ms", "tpot_p99_ms"}
    assert "32 requests cannot bound a p99 at 95% confidence, 368 can" in unbounded["ttft_p99_ms"]
    assert "--min-phase-requests" in unbounded["ttft_p99_ms"]
    base = run_side(_report(200.0, 396.0, 4.0), "prev.json")
    rerun = _report(200.0, 758.0, 4.0)
    rerun["checks"][0]["figures"]["levels"][1]["ttft"]["p50_ms"] = 198.0  # the p50s unchanged
    noise = run_noise(samples, resamples=500, confidence=0.95, seed=0)

    def gate(current: dict[str, Any]) -> BaselineFigures:
        return compare_runs(
            base,
            run_side(current, "this run"),
            noise,
            floor=0.5,
            latency_floor=0.2,
            confidence=0.95,
            resamples=500,
            unbounded=unbounded,
        )

    fig = gate(rerun)
    p99 = next(m for m in fig.metrics if m.key == "ttft_p99_ms")
    assert p99.change == pytest.approx(758 / 396 - 1)  # shown
    assert (p99.judged, p99.regressed, p99.tolerance) == (False, False, None)
    assert p99.note == unbounded["ttft_p99_ms"]
    assert {m.key for m in fig.judged} == {
        "peak_output_throughput",
        "ttft_p50_ms",
        "tpot_p50_ms",
        "prefix_speedup",
    }
    passed, reason = judge_baseline(fig)
    assert passed is True, reason
    assert "2 shown but not judged" in reason
    # the same +92% on a p50 (which 32 requests bound) still fails
    bad = gate(_report(200.0, 758.0, 4.0))
    assert [m.key for m in bad.regressions] == ["ttft_p50_ms"]


def test_enough_requests_judge_the_p99() -> None:
    rng = random.Random(5)
    samples = RunSamples(ttft_s=[rng.expovariate(3.0) for _ in range(400)])
    assert "ttft_p99_ms" not in unbounded_figures(samples, 0.95)
    assert "tpot_p99_ms" not in unbounded_figures(samples, 0.95)  # no TPOT samples: nothing to say
    noise = run_noise(samples, resamples=500, confidence=0.95, seed=0)["ttft_p99_ms"]
    assert noise is not None
    assert 0 < noise < 1


def test_a_gate_of_only_unjudged_figures_cannot_judge() -> None:
    report = _report(200.0, 900.0, 4.0)
    side = run_side(report, "prev.json")
    everything = {spec.key: "not judged: too few" for spec in METRICS}
    fig = compare_runs(side, side, {}, floor=0.1, confidence=0.95, resamples=1000, unbounded=everything)
    passed, reason = judge_baseline(fig)
    assert passed is None
    assert "could be judged" in reason


def test_a_baseline_of_too_few_requests_leaves_its_p99_unjudged() -> None:
    """Phases are sized by time, so the same workload can complete fewer requests in the baseline run
    (a slower server): the fewer of the two counts decides."""
    rng = random.Random(6)
    samples = RunSamples(ttft_s=[rng.expovariate(3.0) for _ in range(400)])
    baseline = compared_figures(_report(200.0, 900.0, 4.0))  # 10 TTFTs, 16 TPOTs at its peak level
    assert (baseline.ttft_count, baseline.tpot_count) == (10, 16)
    unbounded = unbounded_figures(samples, 0.95, baseline)
    assert "400 requests (the baseline 10) cannot bound a p99" in unbounded["ttft_p99_ms"]
    assert "ttft_p50_ms" not in unbounded  # 10 bound a median
    assert "ttft_p99_ms" not in unbounded_figures(samples, 0.95)  # this run alone has enough
