"""bench.fleet and bench.routing's pure parts: per-engine counters, deltas, reusable tokens, the verdict."""

from __future__ import annotations

import pytest

from kvstack.bench.figures import RoutingFigures, TurnFigures
from kvstack.bench.fleet import EngineCounters, fleet_delta, parse_engine_counters, prometheus_queries
from kvstack.bench.routing import RoutingThresholds, judge_routing, whole_blocks
from tests.bench.bench_helpers import CPU_METRICS


def test_engine_counters_from_a_real_cpu_exposition() -> None:
    counters = parse_engine_counters(CPU_METRICS.read_text(encoding="utf-8"))
    # the fixture's own values (lines 75 and 81 of the exposition, and its request_success series)
    assert counters.prefix_queries == 5757.0
    assert counters.prefix_hits == 2304.0
    assert counters.requests == 51.0  # 4 stop + 47 length
    assert parse_engine_counters(CPU_METRICS.read_text(encoding="utf-8"), "another-model") == EngineCounters()


def test_fleet_delta_sums_engines_and_flags_restarts() -> None:
    before = {"a": EngineCounters(100, 50, 10), "b": EngineCounters(200, 20, 5)}
    after = {
        "a": EngineCounters(400, 250, 20),
        "b": EngineCounters(10, 0, 1),  # went down: restarted in between
        "c": EngineCounters(30, 3, 2),  # new engine
    }
    delta = fleet_delta(before, after)
    assert delta.restarted == ("b",)
    assert delta.engines["a"] == EngineCounters(300, 200, 10)
    assert delta.engines["b"] == EngineCounters(10, 0, 1)
    assert delta.engines["c"] == EngineCounters(30, 3, 2)
    assert delta.prefix_queries == 340
    assert delta.prefix_hit_ratio == pytest.approx(203 / 340)
    assert delta.request_shares() == {
        "a": pytest.approx(10 / 13),
        "b": pytest.approx(1 / 13),
        "c": pytest.approx(2 / 13),
    }


def test_prometheus_queries_sum_per_pod_over_the_selector() -> None:
    queries = prometheus_queries('namespace="llm"', "pod")
    assert (
        queries["vllm:prefix_cache_hits_total"]
        == 'sum by (pod) (vllm:prefix_cache_hits_total{namespace="llm"})'
    )
    assert prometheus_queries("", "instance")["vllm:request_success_total"] == (
        "sum by (instance) (vllm:request_success_total)"
    )


@pytest.mark.parametrize(
    ("tokens", "block", "expected"),
    [(0, 16, 0), (1, 16, 0), (16, 16, 0), (17, 16, 16), (33, 16, 32), (300, 128, 256), (257, 128, 256)],
)
def test_whole_blocks_never_counts_the_last_token(tokens: int, block: int, expected: int) -> None:
    assert whole_blocks(tokens, block) == expected


def _figures(
    hits: float, queried: float, reusable: int, prompt: int, shares: dict[str, float]
) -> RoutingFigures:
    turns = (
        TurnFigures(turn=1, requests=8, ttft_median_ms=400.0, prompt_tokens=prompt // 2, reusable_tokens=0),
        TurnFigures(
            turn=2, requests=8, ttft_median_ms=100.0, prompt_tokens=prompt // 2, reusable_tokens=reusable
        ),
    )
    return RoutingFigures(
        engines=len(shares),
        requests_ok=16,
        requests_failed=0,
        prompt_tokens=prompt,
        reusable_tokens=reusable,
        hit_tokens=hits,
        queried_tokens=queried,
        block_size=16,
        turns=turns,
        engine_shares=shares,
    )


def test_a_router_that_reuses_what_can_be_reused_passes() -> None:
    figures = _figures(hits=665, queried=1000, reusable=700, prompt=1000, shares={"a": 0.5, "b": 0.5})
    verdict = judge_routing(figures, RoutingThresholds())
    assert figures.efficiency == pytest.approx(0.95)
    assert figures.later_turn_ttft_ratio == pytest.approx(0.25)
    assert verdict.passed, verdict.failures


def test_a_router_that_spreads_sessions_fails_on_efficiency() -> None:
    figures = _figures(hits=420, queried=1000, reusable=700, prompt=1000, shares={"a": 0.5, "b": 0.5})
    verdict = judge_routing(figures, RoutingThresholds())
    assert not verdict.passed
    assert any("routing efficiency 0.60 < 0.90" in f for f in verdict.failures)


def test_a_router_that_starves_an_engine_fails_on_balance() -> None:
    figures = _figures(hits=700, queried=1000, reusable=700, prompt=1000, shares={"a": 0.9, "b": 0.1})
    verdict = judge_routing(figures, RoutingThresholds())
    assert not verdict.passed
    assert verdict.failures == ("engine b served 10% of the requests (< 25%)",)


def test_no_counter_movement_cannot_pass() -> None:
    figures = _figures(hits=0, queried=0, reusable=700, prompt=1000, shares={"a": 1.0})
    assert not judge_routing(figures, RoutingThresholds()).passed


def test_later_turn_ttft_limit_is_opt_in() -> None:
    figures = _figures(hits=630, queried=1000, reusable=700, prompt=1000, shares={"a": 0.5, "b": 0.5})
    assert judge_routing(figures, RoutingThresholds(max_later_turn_ttft_ratio=0.2)).failures == (
        "later turns' median TTFT is 0.25x the first turn's (> 0.20x)",
    )
