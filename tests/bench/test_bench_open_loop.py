"""The open-loop check's pure parts: figures per rate with goodput under the run's SLO (the sweep's
rule), the highest rate meeting it, the judge; and which checks a config runs."""

from __future__ import annotations

from kvstack.bench.checks import baseline, open_loop, routing
from kvstack.bench.checks.open_loop import judge, max_rate_meeting_slo, rate_figures
from kvstack.bench.client import RequestOutcome
from kvstack.bench.config import Slo, VerifyConfig
from kvstack.bench.figures import OpenLoopFigures
from kvstack.bench.load import BatchResult
from kvstack.bench.report import Verdict
from kvstack.bench.verify import checks_for


def _out(ttft_s: float, ok: bool = True) -> RequestOutcome:
    # 11 tokens in ttft + 1 s: TPOT = (e2e - ttft) / 10 = 100 ms
    return RequestOutcome(phase="open_loop_r1", ok=ok, ttft=ttft_s, e2e=ttft_s + 1.0, output_tokens=11)


SLO = Slo(ttft_ms=500, itl_ms=150, min_fraction=0.75)


def _result(ttfts: list[float], wall_s: float = 4.0) -> BatchResult:
    return BatchResult(outcomes=[_out(t) for t in ttfts], wall_s=wall_s, concurrency=len(ttfts))


def test_rate_figures_judge_goodput_with_the_sweeps_rule() -> None:
    meets = rate_figures(1.0, 7, 3.5, _result([0.1, 0.2, 0.3, 0.9]), SLO)  # 3 of 4 within TTFT 500 ms
    misses = rate_figures(4.0, 8, 0.9, _result([0.1, 0.6, 0.7, 0.9]), SLO)  # 1 of 4
    assert meets.goodput is not None
    assert (meets.goodput.met, meets.goodput.requests, meets.goodput.fraction) == (3, 4, 0.75)
    assert meets.goodput.request_throughput == 3 / 4.0
    assert meets.goodput.output_throughput == 33 / 4.0
    assert meets.meets_slo is True
    assert misses.meets_slo is False
    assert meets.achieved_request_rate == 1.0
    assert meets.output_throughput == 44 / 4.0
    assert meets.tpot.p50_ms is not None
    assert round(meets.tpot.p50_ms) == 100
    assert max_rate_meeting_slo([meets, misses]) == 1.0
    assert max_rate_meeting_slo([misses]) is None


def test_without_an_slo_no_goodput_is_judged() -> None:
    fig = rate_figures(1.0, 7, 3.5, _result([0.1, 5.0]), Slo())
    assert fig.goodput is None
    assert fig.meets_slo is None


def test_judge_names_the_highest_rate_meeting_the_slo_and_fails_on_failed_requests() -> None:
    rates = [
        rate_figures(1.0, 1, 1.0, _result([0.1, 0.2, 0.3, 0.4]), SLO),
        rate_figures(2.0, 2, 1.0, _result([0.1, 0.2, 0.3, 0.4]), SLO),
        rate_figures(4.0, 3, 1.0, _result([0.9, 0.9, 0.9, 0.9]), SLO),
    ]
    fig = OpenLoopFigures(
        burstiness=1.0,
        prompt_tokens=48,
        output_tokens=11,
        rates=rates,
        slo_ttft_ms=500,
        slo_itl_ms=150,
        slo_min_fraction=0.75,
        max_rate_meeting_slo=max_rate_meeting_slo(rates),
    )
    config = VerifyConfig(endpoint="http://127.0.0.1:1")
    verdict = judge(fig, config)
    assert verdict.verdict is Verdict.PASS
    assert "highest rate meeting the SLO: 2/s" in verdict.reason
    failed = rates[0].model_copy(update={"failed": 1})
    assert judge(fig.model_copy(update={"rates": [failed, *rates[1:]]}), config).verdict is Verdict.FAIL
    broken = [r.model_copy(update={"failed": r.requests}) for r in rates]
    assert judge(fig.model_copy(update={"rates": broken}), config).verdict is Verdict.ERROR


def test_open_loop_and_baseline_run_only_when_asked() -> None:
    plain = [c.name for c in checks_for(VerifyConfig(endpoint="http://127.0.0.1:1"))]
    assert open_loop.NAME not in plain
    assert baseline.NAME not in plain
    assert routing.NAME not in plain
    both = VerifyConfig.model_validate(
        {"endpoint": "http://127.0.0.1:1", "open_loop": {"rates": [2, 1]}, "baseline": {"report": "p.json"}}
    )
    names = [c.name for c in checks_for(both)]
    assert names.index(open_loop.NAME) == names.index("sweep") + 1
    assert names[-1] == baseline.NAME
    assert both.open_loop.rates == [1.0, 2.0]
