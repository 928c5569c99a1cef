"""The baseline gate as a check: this run's figures against a previous report (``bench.baseline``).

Runs last, only when a previous report is given (``verify.checks_for``). Nothing is sent here: it reads
the figures of the sweep, the prefix check and the capacity under SLO (declared needs) and the sweep's
per-request samples (for this run's noise). The CLI refuses a previous report of another workload before
any request (``cli.refuse_other_baseline``); here it is read again, and a report of another workload or
model is not measured (verdict error, exit 2). A regression beyond both this run's noise and the floor
fails (exit 1); a percentile this run has too few requests to bound is shown and not judged.
"""

from __future__ import annotations

from typing import Any

from kvstack.bench.baseline import (
    BaselineError,
    BaselineFigures,
    RunSamples,
    compare_runs,
    judge_baseline,
    read_report,
    run_noise,
    run_side,
    unbounded_figures,
    workload_differences,
)
from kvstack.bench.checks import batching, goodput, prefix
from kvstack.bench.checks.pipeline import Check, Deps, Judgement, NotMeasured, Probe
from kvstack.bench.client import RequestOutcome
from kvstack.bench.config import VerifyConfig
from kvstack.bench.figures import GoodputCapacityFigures, PrefixFigures, SweepFigures
from kvstack.bench.report import Verdict

NAME = "baseline"
TITLE = "Baseline regression gate"


def current_report(
    config: VerifyConfig,
    model: str,
    sweep: SweepFigures | None,
    prefix_figures: PrefixFigures | None,
    capacity: GoodputCapacityFigures | None,
) -> dict[str, Any]:
    """This run's compared checks in the report's JSON shape (what ``bench.baseline`` reads): pure."""
    checks = [
        {"name": name, "figures": fig.model_dump(mode="json")}
        for name, fig in (
            (batching.SWEEP_NAME, sweep),
            (prefix.NAME, prefix_figures),
            (goodput.NAME, capacity),
        )
        if fig is not None
    ]
    return {"config": config.model_dump(mode="json"), "server": {"model": model}, "checks": checks}


def run_samples(
    sweep: SweepFigures | None,
    prefix_figures: PrefixFigures | None,
    outcomes: tuple[RequestOutcome, ...],
    latency_concurrency: int | None,
) -> RunSamples:
    """The per-request samples behind the compared figures of this run: pure."""
    peak_c = sweep.peak_concurrency if sweep is not None else None
    peak = [o for o in outcomes if o.ok and o.phase == f"sweep_c{peak_c}"]
    level = [o for o in outcomes if o.ok and o.phase == f"sweep_c{latency_concurrency}"]
    return RunSamples(
        peak_level_output_rates=[(o.output_tokens or 0) / o.e2e for o in peak if o.e2e],
        ttft_s=[o.ttft for o in level if o.ttft is not None],
        tpot_s=[t for t in (o.tpot for o in level) if t is not None],
        prefix_pairs=[(p.cold_ttft_ms, p.warm_ttft_ms) for p in prefix_figures.pairs]
        if prefix_figures is not None
        else [],
    )


async def measure(probe: Probe, deps: Deps) -> BaselineFigures:
    settings = probe.config.baseline
    path = settings.report
    if path is None:  # pragma: no cover - checks_for runs this check only with a report
        raise NotMeasured("no baseline report given")
    try:
        previous = read_report(path)
    except BaselineError as exc:
        raise NotMeasured(str(exc)) from exc
    sweep = deps.figures(batching.SWEEP_CHECK)
    prefix_figures = deps.figures(prefix.CHECK)
    capacity = deps.figures(goodput.CHECK)
    current = current_report(probe.config, probe.model, sweep, prefix_figures, capacity)
    differences = workload_differences(previous["config"], current["config"])
    prev_model = (previous.get("server") or {}).get("model")
    if prev_model != probe.model:
        differences.insert(0, f"model: {prev_model!r} in the baseline, {probe.model!r} now")
    if differences:
        raise NotMeasured(f"{path}: another workload, not comparable: " + "; ".join(differences))
    current["server"] = {"model": probe.model, "version": probe.server.version}
    base_side = run_side(previous, str(path))
    at = base_side.figures.latency_concurrency  # latency compared at the baseline's peak level
    samples = run_samples(sweep, prefix_figures, deps.outcomes(batching.SWEEP_NAME), at)
    noise = run_noise(
        samples, resamples=settings.resamples, confidence=settings.confidence, seed=probe.config.seed
    )
    return compare_runs(
        base_side,
        run_side(current, "this run", at),
        noise,
        floor=settings.floor,
        latency_floor=settings.latency_floor,
        confidence=settings.confidence,
        resamples=settings.resamples,
        unbounded=unbounded_figures(samples, settings.confidence, base_side.figures),
    )


def judge(fig: BaselineFigures, _config: VerifyConfig) -> Judgement:
    """Pure: fails on a regression beyond both the noise and the floor; error when nothing compares."""
    passed, reason = judge_baseline(fig)
    verdict = Verdict.ERROR if passed is None else Verdict.PASS if passed else Verdict.FAIL
    summary = " | ".join(
        f"{m.label}: {m.baseline:.4g} -> {m.current:.4g} ({(m.change or 0) * 100:+.1f}%)"
        for m in fig.compared
        if m.baseline is not None and m.current is not None
    )
    return Judgement(verdict, f"against {fig.baseline.report}: {reason}", summary)


CHECK = Check(
    NAME,
    TITLE,
    BaselineFigures,
    measure,
    judge,
    needs=(batching.SWEEP_NAME, prefix.NAME, goodput.NAME),
)
