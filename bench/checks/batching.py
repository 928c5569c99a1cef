"""Continuous batching: the same number of distinct prompts one at a time, then all at once, plus a sweep.

Output length is fixed (``ignore_eos`` + ``max_tokens``) and output tokens are counted from the server's
usage chunks, so the two phases do the same work and the ratio of their tokens/s is the batching gain.
Every prompt of every phase and sweep level starts with its own fresh nonce (``new_nonce()`` per prompt),
so no two prompts share a cacheable first block: the all-at-once prompts must not find the one-at-a-time
prompts in the prefix cache, nor each other (their common opening words come after the nonce).
The sweep runs ``rounds x level`` requests at each level with at most ``level`` in flight and reports
throughput, TTFT, TPOT, ITL and end-to-end latency per level, and the knee: the first level where
latency grew by a larger factor than throughput.
"""

from __future__ import annotations

from collections.abc import Callable

from kvstack.bench.checks.pipeline import Check, Deps, Judgement, Probe
from kvstack.bench.client import RequestOutcome
from kvstack.bench.config import VerifyConfig
from kvstack.bench.discovery import fit_units
from kvstack.bench.figures import BatchingFigures, PhaseFigures, SweepFigures
from kvstack.bench.load import BatchResult, StreamRequest, completion_payload, run_batch
from kvstack.bench.prompts import distinct_prompt, new_nonce
from kvstack.bench.report import Verdict
from kvstack.bench.stats import LevelPoint, distribution_ms, find_knee

NAME = "batching"
TITLE = "Continuous batching"


def phase_figures(result: BatchResult) -> PhaseFigures:
    """Reduce one phase's outcomes to figures: pure."""
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
    )


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


def _requests(probe: Probe, phase: str, count: int, units: int, output_tokens: int) -> list[StreamRequest]:
    """``count`` requests, each prompt with its own nonce at its very start (see the module docstring)."""
    return [
        StreamRequest(
            "/v1/completions",
            completion_payload(
                probe.model, distinct_prompt(i, units, probe.config.seed, new_nonce()), output_tokens
            ),
            phase,
        )
        for i in range(count)
    ]


async def _run_phase(
    probe: Probe, title: str, requests: list[StreamRequest], concurrency: int
) -> BatchResult:
    bar = probe.display.phase(title, len(requests))
    done: Callable[[RequestOutcome], None] = lambda _o: bar.advance()  # noqa: E731
    try:
        result = await run_batch(probe.client, requests, concurrency, on_done=done)
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
    units, prompt_tokens = await _prompt_units(probe, cfg.prompt_tokens)
    seq = await _run_phase(
        probe,
        f"batching: {cfg.prompts} prompts one at a time",
        _requests(probe, "batching_sequential", cfg.prompts, units, cfg.output_tokens),
        1,
    )
    conc = await _run_phase(
        probe,
        f"batching: {cfg.prompts} prompts all at once",
        _requests(probe, "batching_concurrent", cfg.prompts, units, cfg.output_tokens),
        cfg.prompts,
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


async def measure_sweep(probe: Probe, _deps: Deps) -> SweepFigures:
    """Throughput and latency per concurrency level, and the knee."""
    cfg = probe.config.sweep
    units, prompt_tokens = await _prompt_units(probe, cfg.prompt_tokens)
    levels: list[PhaseFigures] = []
    for level in cfg.resolved_levels():
        reqs = _requests(probe, f"sweep_c{level}", cfg.rounds * level, units, cfg.output_tokens)
        result = await _run_phase(probe, f"sweep: concurrency {level}", reqs, level)
        levels.append(phase_figures(result))
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
    return Judgement(Verdict.PASS, reason, summary)


SWEEP_CHECK = Check(SWEEP_NAME, SWEEP_TITLE, SweepFigures, measure_sweep, judge_sweep)
