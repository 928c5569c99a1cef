"""Open-loop arrivals: at each configured rate, requests sent on a seeded Poisson (gamma) schedule.

Closed-loop levels (the sweep) wait for answers before sending more; production traffic does not. Here
request ``i`` of a rate is sent at its scheduled offset (``bench.arrivals``) whatever is still in flight,
so a server that cannot keep up builds a queue and its TTFT grows. Per rate the figures give the offered
and achieved request rates, output throughput, TTFT/TPOT/E2E percentiles and, with an SLO, the goodput
(the sweep's rule: a request meets the SLO by ``batching.meets_slo``, a rate meets it when at least
``slo.min_fraction`` of its requests do) and the highest offered rate meeting it.

Runs only when rates are given (``verify.checks_for``). Fails only on failed requests: the figures are
for people, the SLO verdict per rate is reported, not gated (the capacity-under-SLO check gates).
"""

from __future__ import annotations

from kvstack.bench.arrivals import poisson_schedule, rate_seed, schedule_count
from kvstack.bench.checks.batching import _prompt_units, _requests, goodput_figures
from kvstack.bench.checks.pipeline import Check, Deps, Judgement, Probe
from kvstack.bench.config import Slo, VerifyConfig
from kvstack.bench.figures import OpenLoopFigures, RateFigures
from kvstack.bench.load import BatchResult, StreamRequest, run_batch
from kvstack.bench.report import Verdict
from kvstack.bench.stats import distribution_ms

NAME = "open_loop"
TITLE = "Open-loop arrivals"


def rate_figures(rate: float, seed: int, span_s: float, result: BatchResult, slo: Slo) -> RateFigures:
    """Reduce one rate's outcomes to figures (goodput under ``slo`` when one is given): pure."""
    ok = result.ok
    goodput = goodput_figures(result.outcomes, result.wall_s, slo) if slo.given else None
    return RateFigures(
        rate=rate,
        seed=seed,
        requests=len(result.outcomes),
        failed=len(result.failed),
        schedule_span_s=span_s,
        wall_s=result.wall_s,
        achieved_request_rate=len(ok) / result.wall_s if result.wall_s > 0 else 0.0,
        output_throughput=result.output_throughput,
        ttft=distribution_ms([o.ttft for o in ok if o.ttft is not None]),
        tpot=distribution_ms([t for t in (o.tpot for o in ok) if t is not None]),
        e2e=distribution_ms([o.e2e for o in ok if o.e2e is not None]),
        goodput=goodput,
        meets_slo=None
        if goodput is None
        else goodput.fraction is not None and goodput.fraction >= slo.min_fraction,
    )


def max_rate_meeting_slo(rates: list[RateFigures]) -> float | None:
    """The highest offered rate whose requests met the SLO (``None``: none did, or no SLO): pure."""
    return max((r.rate for r in rates if r.meets_slo), default=None)


async def _run_rate(
    probe: Probe, title: str, requests: list[StreamRequest], offsets: tuple[float, ...]
) -> BatchResult:
    """Send ``requests`` at their ``offsets``, whatever is in flight (as many in flight as requests)."""
    bar = probe.display.phase(title, len(requests))
    try:
        result = await run_batch(
            probe.client, requests, len(requests), on_done=lambda _o: bar.advance(), send_offsets=offsets
        )
    finally:
        bar.close()
    probe.outcomes.extend(result.outcomes)
    return result


async def measure(probe: Probe, _deps: Deps) -> OpenLoopFigures:
    cfg = probe.config.open_loop
    slo = probe.config.slo
    units, prompt_tokens = await _prompt_units(probe, cfg.prompt_tokens)
    rates: list[RateFigures] = []
    for rate in cfg.rates:
        seed = rate_seed(probe.config.seed, rate)
        count = schedule_count(rate, cfg.max_requests, cfg.max_duration_s)
        schedule = poisson_schedule(rate, count, seed, cfg.burstiness)
        requests = _requests(probe, f"open_loop_r{rate:g}", count, units, cfg.output_tokens)
        result = await _run_rate(
            probe, f"open loop: {count} requests at {rate:g}/s", requests, schedule.offsets
        )
        rates.append(rate_figures(rate, seed, schedule.span_s, result, slo))
    return OpenLoopFigures(
        burstiness=cfg.burstiness,
        prompt_tokens=prompt_tokens,
        output_tokens=cfg.output_tokens,
        rates=rates,
        slo_ttft_ms=slo.ttft_ms,
        slo_itl_ms=slo.itl_ms,
        slo_min_fraction=slo.min_fraction if slo.given else None,
        max_rate_meeting_slo=max_rate_meeting_slo(rates) if slo.given else None,
    )


def judge(fig: OpenLoopFigures, _config: VerifyConfig) -> Judgement:
    """Pure: fails only on failed requests; names the highest rate meeting the SLO when one is given."""
    requests = sum(r.requests for r in fig.rates)
    failed = sum(r.failed for r in fig.rates)
    summary = " | ".join(
        f"{r.rate:g}/s offered, {r.achieved_request_rate:.2f}/s achieved, {r.output_throughput:.0f} tok/s"
        for r in fig.rates
    )
    if failed * 4 > requests:
        return Judgement(Verdict.ERROR, f"{failed} of {requests} requests failed", summary)
    per_rate = ", ".join(
        f"{r.rate:g}/s: TTFT p50 {r.ttft.p50_ms or 0:.0f} ms, {r.output_throughput:.0f} tok/s"
        for r in fig.rates
    )
    slo_part = ""
    if fig.slo_min_fraction is not None:
        best = fig.max_rate_meeting_slo
        slo_part = f"; highest rate meeting the SLO: {f'{best:g}/s' if best is not None else 'none'}"
    if failed:
        return Judgement(
            Verdict.FAIL, f"{failed} of {requests} requests failed; {per_rate}{slo_part}", summary
        )
    return Judgement(Verdict.PASS, f"{len(fig.rates)} rate(s): {per_rate}{slo_part}", summary)


CHECK = Check(NAME, TITLE, OpenLoopFigures, measure, judge)
