"""Continuous batching: the same number of distinct prompts one at a time, then all at once, plus a sweep.

Output length is fixed (``ignore_eos`` + ``max_tokens``) and output tokens are counted from the server's
usage chunks, so the two phases do the same work and the ratio of their tokens/s is the batching gain.
Every prompt of every phase and sweep level starts with its own fresh nonce (``new_nonce()`` per prompt),
so no two prompts share a cacheable first block: the all-at-once prompts must not find the one-at-a-time
prompts in the prefix cache, nor each other (their common opening words come after the nonce).
Every phase is a closed loop sized by time and requests (``phases``): it keeps its concurrency until it has
lasted ``min_duration_s`` and completed its request floor, so a fast GPU gets as long a phase as a CPU.

The sweep's levels are 1, 2, 4, ... up to a bound taken from the target (``sweep_bound``: the KV max
concurrency from the cache-config info metric, the server's ``max_num_seqs``, an explicit cap: the
smallest), each completing at least ``max(rounds x level, min_requests)`` requests. It stops early at
saturation (``saturation``: a step up gained less than ``saturation_gain`` output tok/s while the
median TTFT grew) or on failed requests, and records where and why (``SweepStop``). It reports
throughput, TTFT, TPOT, ITL, end-to-end latency and goodput under the SLO per level, the knee (the first
level where latency grew by a larger factor than throughput) and the highest level meeting the SLO.
"""

from __future__ import annotations

from collections.abc import Callable

from kvstack.bench.checks import kv_capacity
from kvstack.bench.checks.pipeline import Check, Deps, Judgement, Probe
from kvstack.bench.client import RequestOutcome
from kvstack.bench.config import Slo, SweepWorkload, VerifyConfig
from kvstack.bench.discovery import fit_units
from kvstack.bench.figures import (
    BatchingFigures,
    GoodputFigures,
    KvCapacityFigures,
    PhaseFigures,
    SweepBound,
    SweepFigures,
    SweepStop,
)
from kvstack.bench.load import BatchResult, ClosedLoop, StreamRequest, completion_payload, run_closed_loop
from kvstack.bench.prompts import distinct_prompt, new_nonce
from kvstack.bench.report import Verdict
from kvstack.bench.stats import LevelPoint, distribution_ms, find_knee

NAME = "batching"
TITLE = "Continuous batching"


def meets_slo(outcome: RequestOutcome, slo: Slo) -> bool:
    """A successful request whose TTFT and mean inter-token latency (TPOT) are within the objectives
    (an objective left unset is met; a single-token answer has no TPOT and meets the ITL one): pure."""
    if not outcome.ok:
        return False
    if slo.ttft_ms is not None and (outcome.ttft is None or outcome.ttft * 1000 > slo.ttft_ms):
        return False
    return not (slo.itl_ms is not None and outcome.tpot is not None and outcome.tpot * 1000 > slo.itl_ms)


def goodput_figures(outcomes: list[RequestOutcome], wall_s: float, slo: Slo) -> GoodputFigures:
    """Requests/s and output tok/s of the requests that met every objective, over the phase's wall
    time, and their share of the successful requests: pure."""
    ok = [o for o in outcomes if o.ok]
    met = [o for o in ok if meets_slo(o, slo)]
    return GoodputFigures(
        requests=len(ok),
        met=len(met),
        fraction=len(met) / len(ok) if ok else None,
        request_throughput=len(met) / wall_s if wall_s > 0 else 0.0,
        output_throughput=sum(o.output_tokens or 0 for o in met) / wall_s if wall_s > 0 else 0.0,
    )


def phase_figures(result: BatchResult, slo: Slo | None = None) -> PhaseFigures:
    """Reduce one phase's outcomes to figures (goodput when an SLO is given): pure."""
    ok = result.ok
    itl: list[float] = []
    for o in ok:
        itl.extend(o.itl)
    return PhaseFigures(
        concurrency=result.concurrency,
        requests=len(result.outcomes),
        failed=len(result.failed),
        wall_s=result.wall_s,
        output_tokens=result.output_tokens,
        output_throughput=result.output_throughput,
        request_throughput=len(ok) / result.wall_s if result.wall_s > 0 else 0.0,
        ttft=distribution_ms([o.ttft for o in ok if o.ttft is not None]),
        tpot=distribution_ms([t for t in (o.tpot for o in ok) if t is not None]),
        itl=distribution_ms(itl),
        e2e=distribution_ms([o.e2e for o in ok if o.e2e is not None]),
        goodput=goodput_figures(result.outcomes, result.wall_s, slo)
        if slo is not None and slo.given
        else None,
    )


def kv_concurrency(cfg: SweepWorkload, capacity: KvCapacityFigures | None) -> tuple[float | None, str]:
    """How many of the sweep's requests the KV cache holds at once, and where that figure comes from: pure.

    PagedAttention sizes capacity by the tokens a request actually uses, so the bound for this workload is
    KV tokens / (prompt + output tokens of a sweep request). ``kv_cache_max_concurrency`` (the server's
    figure at ``max_model_len``) is the worst case of requests that fill the whole context; it is used only
    when the KV token count is unknown. (On an H200 at max_model_len 16,384 it is 55, while the same
    server runs 256 sequences of 416 tokens at once.)"""
    if capacity is None:
        return None, ""
    per_request = cfg.prompt_tokens + cfg.output_tokens
    if capacity.kv_tokens > 0 and per_request > 0:
        return capacity.kv_tokens / per_request, "KV tokens / tokens per request"
    kv = capacity.max_concurrency or capacity.server_max_concurrency
    return kv, "kv_cache_max_concurrency"


def sweep_bound(cfg: SweepWorkload, capacity: KvCapacityFigures | None) -> SweepBound:
    """The sweep's upper bound: the smallest of what the KV cache holds of the sweep's requests
    (:func:`kv_concurrency`), ``max_num_seqs`` and an explicit cap; the fallback when none is known: pure."""
    kv, kv_source = kv_concurrency(cfg, capacity)
    candidates: list[tuple[str, int]] = []
    if kv is not None:
        candidates.append((kv_source, max(1, int(kv))))
    if cfg.max_num_seqs is not None:
        candidates.append(("max_num_seqs", cfg.max_num_seqs))
    if cfg.max_concurrency is not None:
        candidates.append(("sweep.max_concurrency", cfg.max_concurrency))
    if cfg.levels is not None:
        candidates = [("sweep.levels", max(cfg.levels))]
    if not candidates:
        candidates.append(("sweep.fallback_max_concurrency (target unknown)", cfg.fallback_max_concurrency))
    bound = min(value for _, value in candidates)
    return SweepBound(
        concurrency=bound,
        source=", ".join(name for name, value in candidates if value == bound),
        kv_max_concurrency=kv,
        max_num_seqs=cfg.max_num_seqs,
        configured=cfg.max_concurrency,
    )


def saturation_rule(gain: float) -> str:
    return (
        f"stop after a level whose output tok/s is less than {gain:.0%} above the previous level's "
        "while its median TTFT is higher (levels below the SLO floor always run)"
    )


def saturated(previous: PhaseFigures, current: PhaseFigures, gain: float) -> str | None:
    """Why ``current`` is past saturation (see ``saturation_rule``), or ``None``: pure."""
    if previous.output_throughput <= 0 or previous.ttft.p50_ms is None or current.ttft.p50_ms is None:
        return None
    growth = current.output_throughput / previous.output_throughput - 1
    if growth < gain and current.ttft.p50_ms > previous.ttft.p50_ms:
        return (
            f"c{previous.concurrency} -> c{current.concurrency}: output tok/s {growth:+.1%} (< {gain:.0%}), "
            f"TTFT p50 {previous.ttft.p50_ms:.0f} -> {current.ttft.p50_ms:.0f} ms"
        )
    return None


def goodput_concurrency(levels: list[PhaseFigures], min_fraction: float) -> int | None:
    """The highest level at which at least ``min_fraction`` of the requests met the SLO: pure."""
    meeting = [
        lv.concurrency
        for lv in levels
        if lv.goodput is not None and lv.goodput.fraction is not None and lv.goodput.fraction >= min_fraction
    ]
    return max(meeting, default=None)


def sweep_summary(levels: list[PhaseFigures]) -> tuple[int | None, str, float | None, int | None]:
    """(knee concurrency, knee note, peak throughput, its concurrency) from the sweep's levels: pure."""
    points = [
        LevelPoint(concurrency=lv.concurrency, throughput=lv.output_throughput, latency=lv.e2e.p50_ms or 0.0)
        for lv in levels
        if lv.requests > lv.failed
    ]
    peak = max(points, key=lambda p: p.throughput, default=None)
    knee = find_knee(points)
    if knee is None:
        note = (
            f"no knee up to concurrency {points[-1].concurrency}: throughput grew at least as fast as latency"
            if len(points) >= 2
            else "too few levels for a knee"
        )
        return None, note, peak.throughput if peak else None, peak.concurrency if peak else None
    note = (
        f"concurrency {knee.previous} -> {knee.concurrency}: throughput x{knee.throughput_growth:.2f}, "
        f"median end-to-end latency x{knee.latency_growth:.2f}; beyond {knee.previous} latency grows faster"
    )
    return knee.concurrency, note, peak.throughput if peak else None, peak.concurrency if peak else None


def _request(probe: Probe, phase: str, i: int, units: int, output_tokens: int) -> StreamRequest:
    """One request whose prompt starts with its own nonce (see the module docstring)."""
    return StreamRequest(
        "/v1/completions",
        completion_payload(
            probe.model, distinct_prompt(i, units, probe.config.seed, new_nonce()), output_tokens
        ),
        phase,
    )


def _requests(probe: Probe, phase: str, count: int, units: int, output_tokens: int) -> list[StreamRequest]:
    """``count`` requests, each prompt with its own nonce at its very start (see the module docstring)."""
    return [_request(probe, phase, i, units, output_tokens) for i in range(count)]


async def _run_phase(
    probe: Probe, title: str, phase: str, shape: ClosedLoop, *, units: int, output_tokens: int
) -> BatchResult:
    bar = probe.display.phase(title, shape.min_requests)
    done: Callable[[RequestOutcome], None] = lambda _o: bar.advance()  # noqa: E731
    try:
        result = await run_closed_loop(
            probe.client, shape, lambda i: _request(probe, phase, i, units, output_tokens), on_done=done
        )
    finally:
        bar.close()
    probe.outcomes.extend(result.outcomes)
    return result


async def _prompt_units(probe: Probe, target_tokens: int) -> tuple[int, int]:
    placeholder = "0" * 12
    return await fit_units(
        probe.client,
        probe.model,
        lambda u: distinct_prompt(0, u, probe.config.seed, placeholder),
        target_tokens,
        probe.server.tokenizer_endpoint,
    )


def _token_mismatch(result: BatchResult, expected: int) -> str | None:
    off = [o.output_tokens or 0 for o in result.ok if o.output_tokens != expected]
    if not off:
        return None
    return (
        f"{len(off)} request(s) returned {sorted(set(off))} output tokens instead of {expected} "
        "(is ignore_eos honoured?)"
    )


async def measure(probe: Probe, _deps: Deps) -> BatchingFigures:
    cfg = probe.config.batching
    sizing = probe.config.phases
    floor = max(cfg.prompts, sizing.min_requests)
    units, prompt_tokens = await _prompt_units(probe, cfg.prompt_tokens)
    seq = await _run_phase(
        probe,
        f"batching: {cfg.prompts} prompts one at a time",
        "batching_sequential",
        ClosedLoop(1, floor, sizing.min_duration_s),
        units=units,
        output_tokens=cfg.output_tokens,
    )
    conc = await _run_phase(
        probe,
        f"batching: {cfg.prompts} prompts all at once",
        "batching_concurrent",
        ClosedLoop(cfg.prompts, floor, sizing.min_duration_s),
        units=units,
        output_tokens=cfg.output_tokens,
    )
    seq_fig = phase_figures(seq)
    conc_fig = phase_figures(conc)
    speedup = (
        conc_fig.output_throughput / seq_fig.output_throughput if seq_fig.output_throughput > 0 else None
    )
    notes = [
        n for n in (_token_mismatch(seq, cfg.output_tokens), _token_mismatch(conc, cfg.output_tokens)) if n
    ]
    return BatchingFigures(
        prompts=cfg.prompts,
        prompt_tokens=prompt_tokens,
        output_tokens_per_request=cfg.output_tokens,
        sequential=seq_fig,
        concurrent=conc_fig,
        speedup=speedup,
        notes=notes,
    )


def judge(fig: BatchingFigures, config: VerifyConfig) -> Judgement:
    """Pure: the speed-up and the all-at-once throughput against the thresholds."""
    th = config.thresholds
    seq_fig, conc_fig, speedup = fig.sequential, fig.concurrent, fig.speedup
    summary = (
        f"{fig.prompts} x {fig.output_tokens_per_request} tokens: one at a time "
        f"{seq_fig.output_throughput:.1f} tok/s, all at once {conc_fig.output_throughput:.1f} tok/s"
        + (f" ({speedup:.2f}x)" if speedup is not None else "")
    )
    failed = seq_fig.failed + conc_fig.failed
    if failed * 4 > seq_fig.requests + conc_fig.requests:
        verdict, reason = Verdict.ERROR, f"{failed} of {seq_fig.requests + conc_fig.requests} requests failed"
    elif speedup is None:
        verdict, reason = Verdict.ERROR, "no output tokens were counted one at a time"
    else:
        problems = []
        if speedup < th.min_batching_speedup:
            problems.append(f"speedup {speedup:.2f}x < {th.min_batching_speedup:g}x")
        if conc_fig.output_throughput < th.min_batching_throughput:
            problems.append(f"{conc_fig.output_throughput:.1f} tok/s < {th.min_batching_throughput:g} tok/s")
        if problems:
            verdict, reason = Verdict.FAIL, "; ".join(problems)
        else:
            verdict = Verdict.PASS
            reason = (
                f"all at once is {speedup:.2f}x one at a time (>= {th.min_batching_speedup:g}x) "
                f"at {conc_fig.output_throughput:.1f} tok/s (>= {th.min_batching_throughput:g})"
            )
        if failed:
            reason += f"; {failed} request(s) failed and were left out"
    return Judgement(verdict, reason, summary)


CHECK = Check(NAME, TITLE, BatchingFigures, measure, judge)


SWEEP_NAME = "sweep"
SWEEP_TITLE = "Concurrency sweep"


async def measure_sweep(probe: Probe, deps: Deps) -> SweepFigures:
    """Throughput, latency and goodput per concurrency level up to the target's bound or saturation."""
    cfg = probe.config.sweep
    slo = probe.config.slo
    sizing = probe.config.phases
    bound = sweep_bound(cfg, deps.figures(kv_capacity.CHECK))
    floor = slo.min_goodput_concurrency if slo.given else None
    units, prompt_tokens = await _prompt_units(probe, cfg.prompt_tokens)
    levels: list[PhaseFigures] = []
    stop: SweepStop | None = None
    for level in cfg.resolved_levels(bound.concurrency, floor):
        if level > bound.concurrency:
            break
        shape = ClosedLoop(level, max(cfg.rounds * level, sizing.min_requests), sizing.min_duration_s)
        result = await _run_phase(
            probe,
            f"sweep: concurrency {level}",
            f"sweep_c{level}",
            shape,
            units=units,
            output_tokens=cfg.output_tokens,
        )
        fig = phase_figures(result, slo)
        levels.append(fig)
        if fig.failed:
            stop = SweepStop(reason="errors", concurrency=level, detail=f"{fig.failed} request(s) failed")
            break
        why = saturated(levels[-2], fig, cfg.saturation_gain) if len(levels) >= 2 else None
        if why is not None and (floor is None or level >= floor):
            stop = SweepStop(reason="saturation", concurrency=level, detail=why)
            break
    if stop is None:
        last = levels[-1].concurrency if levels else None
        stop = SweepStop(
            reason="upper bound", concurrency=last, detail=f"bound {bound.concurrency} from {bound.source}"
        )
    knee, note, peak, peak_c = sweep_summary(levels)
    return SweepFigures(
        prompt_tokens=prompt_tokens,
        output_tokens=cfg.output_tokens,
        rounds=cfg.rounds,
        levels=levels,
        knee_concurrency=knee,
        knee_note=note,
        peak_throughput=peak,
        peak_concurrency=peak_c,
        min_duration_s=sizing.min_duration_s,
        min_requests=sizing.min_requests,
        bound=bound,
        stop=stop,
        saturation_rule=saturation_rule(cfg.saturation_gain),
        slo_ttft_ms=slo.ttft_ms,
        slo_itl_ms=slo.itl_ms,
        slo_min_fraction=slo.min_fraction if slo.given else None,
        goodput_concurrency=goodput_concurrency(levels, slo.min_fraction) if slo.given else None,
    )


def judge_sweep(sweep: SweepFigures, _config: VerifyConfig) -> Judgement:
    """Pure: the sweep fails only on failed requests (its figures are reported, not gated)."""
    levels = sweep.levels
    requests = sum(lv.requests for lv in levels)
    failed = sum(lv.failed for lv in levels)
    note = sweep.knee_note
    summary = " | ".join(f"c{lv.concurrency}: {lv.output_throughput:.0f} tok/s" for lv in levels)
    if failed * 4 > requests:
        return Judgement(Verdict.ERROR, f"{failed} of {requests} requests failed", summary)
    if failed:
        return Judgement(Verdict.FAIL, f"{failed} of {requests} requests failed; knee: {note}", summary)
    reason = (
        f"{len(levels)} levels measured, peak {sweep.peak_throughput or 0:.1f} tok/s at concurrency "
        f"{sweep.peak_concurrency}; knee: {note}"
    )
    if sweep.stop is not None:
        reason += f"; stopped at c{sweep.stop.concurrency}: {sweep.stop.reason} ({sweep.stop.detail})"
    if sweep.goodput_concurrency is not None or sweep.slo_min_fraction is not None:
        reason += f"; highest concurrency meeting the SLO: {sweep.goodput_concurrency or 'none'}"
    return Judgement(Verdict.PASS, reason, summary)


SWEEP_CHECK = Check(
    SWEEP_NAME, SWEEP_TITLE, SweepFigures, measure_sweep, judge_sweep, needs=(kv_capacity.NAME,)
)
