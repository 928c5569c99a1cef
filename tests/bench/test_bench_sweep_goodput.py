"""Pure parts of the sized sweep and of goodput: the bound from the target, the saturation stop, which
requests meet the SLO, the highest concurrency meeting it, the capacity-under-SLO verdict, the stack
outputs' ``slo``, and when a closed-loop phase stops."""

from __future__ import annotations

import pytest

from kvstack.bench.checks import goodput
from kvstack.bench.checks.batching import (
    goodput_concurrency,
    goodput_figures,
    meets_slo,
    saturated,
    sweep_bound,
)
from kvstack.bench.client import RequestOutcome
from kvstack.bench.config import Slo, SweepWorkload, VerifyConfig, from_stack_outputs
from kvstack.bench.figures import GoodputCapacityFigures, GoodputFigures, KvCapacityFigures, PhaseFigures
from kvstack.bench.load import ClosedLoop
from kvstack.bench.report import Verdict
from kvstack.bench.stats import Distribution
from kvstack.errors import ConfigError

CONFIG = VerifyConfig(endpoint="http://127.0.0.1:1")


def outcome(ttft_s: float, e2e_s: float, tokens: int, ok: bool = True) -> RequestOutcome:
    return RequestOutcome(phase="sweep_c1", ok=ok, ttft=ttft_s, e2e=e2e_s, output_tokens=tokens)


def level(c: int, tput: float, ttft_p50: float, fraction: float | None = None) -> PhaseFigures:
    d = Distribution(count=1, p50_ms=ttft_p50)
    gp = None
    if fraction is not None:
        gp = GoodputFigures(requests=10, met=0, fraction=fraction, request_throughput=0, output_throughput=0)
    return PhaseFigures(
        concurrency=c,
        requests=10,
        failed=0,
        wall_s=2.0,
        output_tokens=100,
        output_throughput=tput,
        request_throughput=5,
        ttft=d,
        tpot=d,
        itl=d,
        e2e=d,
        goodput=gp,
    )


def capacity(max_conc: float | None, server: float | None = None, kv_tokens: int = 0) -> KvCapacityFigures:
    return KvCapacityFigures(
        block_size=16,
        num_blocks=1000,
        kv_tokens=kv_tokens,
        max_model_len=2048,
        max_concurrency=max_conc,
        server_max_concurrency=server,
        engines=1,
        prefix_caching_enabled=True,
        kv_cache_memory_bytes=None,
        cache_dtype=None,
    )


def test_a_request_meets_the_slo_on_ttft_and_tpot() -> None:
    slo = Slo(ttft_ms=500, itl_ms=50)
    assert meets_slo(outcome(0.4, 0.4 + 9 * 0.04, 10), slo)  # TPOT 40 ms
    assert not meets_slo(outcome(0.6, 0.6 + 9 * 0.04, 10), slo)  # TTFT too slow
    assert not meets_slo(outcome(0.4, 0.4 + 9 * 0.06, 10), slo)  # TPOT 60 ms
    assert not meets_slo(outcome(0.1, 0.2, 10, ok=False), slo)
    assert meets_slo(outcome(0.4, 0.4, 1), slo)  # one token: no TPOT
    assert meets_slo(outcome(9.0, 9.5, 10), Slo(itl_ms=100))  # only the ITL objective is set


def test_goodput_counts_only_requests_within_every_objective() -> None:
    slo = Slo(ttft_ms=500, itl_ms=50)
    outs = [
        outcome(0.4, 0.76, 10),
        outcome(0.4, 0.76, 10),
        outcome(0.9, 1.26, 10),
        outcome(0, 0, 0, ok=False),
    ]
    gp = goodput_figures(outs, 2.0, slo)
    assert (gp.requests, gp.met) == (3, 2)
    assert gp.fraction == pytest.approx(2 / 3)
    assert gp.request_throughput == pytest.approx(1.0)
    assert gp.output_throughput == pytest.approx(10.0)


def test_highest_concurrency_meeting_the_slo() -> None:
    levels = [level(1, 10, 10, 1.0), level(2, 20, 10, 0.95), level(4, 30, 20, 0.85), level(8, 31, 40, 0.5)]
    assert goodput_concurrency(levels, 0.9) == 2
    assert goodput_concurrency(levels, 0.8) == 4
    assert goodput_concurrency(levels, 0.99) == 1
    assert goodput_concurrency([level(1, 10, 10)], 0.9) is None  # no SLO figures


def test_saturation_needs_a_small_gain_and_a_growing_ttft() -> None:
    assert saturated(level(8, 100, 50), level(16, 105, 90), 0.10) is not None
    assert saturated(level(8, 100, 50), level(16, 150, 90), 0.10) is None  # still paying
    assert saturated(level(8, 100, 50), level(16, 105, 40), 0.10) is None  # TTFT did not grow
    why = saturated(level(8, 100, 50), level(16, 95, 90), 0.10)
    assert why is not None
    assert "c8 -> c16" in why
    assert "-5.0%" in why


def test_the_bound_is_the_smallest_the_target_gives() -> None:
    bound = sweep_bound(SweepWorkload(), capacity(45.5, 91.0))
    assert (bound.concurrency, bound.source) == (45, "kv_cache_max_concurrency")
    bound = sweep_bound(SweepWorkload(max_num_seqs=32), capacity(45.5))
    assert (bound.concurrency, bound.source) == (32, "max_num_seqs")
    bound = sweep_bound(SweepWorkload(max_num_seqs=256, max_concurrency=8), capacity(300.0))
    assert (bound.concurrency, bound.source) == (8, "sweep.max_concurrency")
    assert sweep_bound(SweepWorkload(), capacity(None, 91.0)).concurrency == 91  # the server's label
    # with the KV token count known, the bound is what the cache holds of the sweep's own requests
    # (48 + 16 tokens each by default), not the worst case at max_model_len
    bound = sweep_bound(SweepWorkload(), capacity(45.5, 91.0, kv_tokens=16000))
    assert (bound.concurrency, bound.source) == (250, "KV tokens / tokens per request")
    bound = sweep_bound(SweepWorkload(max_num_seqs=64), capacity(45.5, 91.0, kv_tokens=16000))
    assert (bound.concurrency, bound.source) == (64, "max_num_seqs")
    unknown = sweep_bound(SweepWorkload(), None)
    assert unknown.concurrency == 16
    assert "target unknown" in unknown.source
    assert sweep_bound(SweepWorkload(levels=[1, 3]), capacity(45.5)).concurrency == 3


def test_levels_double_up_to_the_bound_and_include_the_floor() -> None:
    cfg = SweepWorkload()
    assert cfg.resolved_levels(45) == [1, 2, 4, 8, 16, 32, 45]
    assert cfg.resolved_levels(256, floor=24) == [1, 2, 4, 8, 16, 24, 32, 64, 128, 256]
    assert cfg.resolved_levels(16, floor=64) == [1, 2, 4, 8, 16]  # a floor above the bound is not tried
    assert SweepWorkload(max_concurrency=4).resolved_levels() == [1, 2, 4]


def _cap_fig(
    got: int | None, floor: int | None, ttft: float | None = 500, bound: int = 64
) -> GoodputCapacityFigures:
    return GoodputCapacityFigures(
        slo_ttft_ms=ttft,
        slo_itl_ms=None,
        min_fraction=0.9,
        floor=floor,
        goodput_concurrency=got,
        levels_measured=[1, 2, 4, 8, 16],
        sweep_stop="saturation",
        upper_bound=bound,
    )


def test_capacity_under_slo_verdicts() -> None:
    assert goodput.judge(_cap_fig(16, 8), CONFIG).verdict is Verdict.PASS
    assert goodput.judge(_cap_fig(8, 8), CONFIG).verdict is Verdict.PASS
    short = goodput.judge(_cap_fig(4, 8), CONFIG)
    assert short.verdict is Verdict.FAIL
    assert "4 < floor 8" in short.reason
    assert goodput.judge(_cap_fig(None, 8), CONFIG).verdict is Verdict.FAIL
    unreachable = goodput.judge(_cap_fig(16, 128, bound=64), CONFIG)
    assert unreachable.verdict is Verdict.FAIL
    assert "above the sweep's upper bound 64" in unreachable.reason
    no_slo = goodput.judge(_cap_fig(None, 8, ttft=None), CONFIG)
    assert no_slo.verdict is Verdict.SKIPPED
    assert "no SLO given" in no_slo.reason
    no_floor = goodput.judge(_cap_fig(16, None), CONFIG)
    assert no_floor.verdict is Verdict.SKIPPED
    assert "16" in no_floor.reason


def test_stack_outputs_slo_is_read_and_its_absence_tolerated() -> None:
    tree = from_stack_outputs(
        {
            "served_model_name": "m",
            "slo": {
                "ttft_seconds": 2.0,
                "itl_seconds": 0.1,
                "min_goodput_concurrency": 32,
                "max_num_seqs": 256,
            },
        }
    )
    assert tree["slo"] == {"ttft_ms": 2000.0, "itl_ms": 100.0, "min_goodput_concurrency": 32}
    assert tree["sweep"] == {"max_num_seqs": 256}
    assert "slo" not in from_stack_outputs({"served_model_name": "m"})
    partial = from_stack_outputs(
        {"served_model_name": "m", "slo": {"ttft_seconds": 1, "min_goodput_concurrency": None}}
    )
    assert partial["slo"] == {"ttft_ms": 1000.0}
    with pytest.raises(ConfigError, match=r"o\.json: slo\.itl_seconds must be a number"):
        from_stack_outputs({"served_model_name": "m", "slo": {"itl_seconds": "fast"}}, source="o.json")
    with pytest.raises(ConfigError, match="'slo' must be a mapping"):
        from_stack_outputs({"served_model_name": "m", "slo": [1]})


def test_a_closed_loop_phase_needs_both_floors() -> None:
    shape = ClosedLoop(concurrency=4, min_requests=8, min_duration_s=2.0)
    assert not shape.should_stop(started=8, elapsed_s=1.0)
    assert not shape.should_stop(started=7, elapsed_s=5.0)
    assert shape.should_stop(started=8, elapsed_s=2.0)
