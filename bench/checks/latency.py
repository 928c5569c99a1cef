"""Latency and errors: TTFT, ITL, TPOT and end-to-end percentiles over the load phases; failed requests
over the whole run. Gated on the error count and on optional p99 ceilings."""

from __future__ import annotations

from collections.abc import Sequence

from kvstack.bench.checks import batching, engine, prefix
from kvstack.bench.checks.pipeline import Check, Deps, Judgement, Probe
from kvstack.bench.client import RequestOutcome
from kvstack.bench.config import Thresholds, VerifyConfig
from kvstack.bench.figures import LatencyFigures
from kvstack.bench.report import Verdict, summarize_errors
from kvstack.bench.stats import Distribution, distribution_ms

NAME = "latency"
TITLE = "Latency and errors"
LOAD_PHASES = ("batching_", "sweep_")


def latency_figures(outcomes: Sequence[RequestOutcome]) -> LatencyFigures:
    """Pure: distributions over the successful load requests, error counts over all."""
    load = [o for o in outcomes if o.ok and o.phase.startswith(LOAD_PHASES)]
    itl: list[float] = []
    for o in load:
        itl.extend(o.itl)
    by_kind: dict[str, int] = {}
    for o in outcomes:
        if not o.ok:
            key = o.error_kind or "unknown"
            by_kind[key] = by_kind.get(key, 0) + 1
    return LatencyFigures(
        requests=len(outcomes),
        failed=sum(by_kind.values()),
        errors_by_kind=by_kind,
        load_requests=len(load),
        ttft=distribution_ms([o.ttft for o in load if o.ttft is not None]),
        itl=distribution_ms(itl),
        tpot=distribution_ms([t for t in (o.tpot for o in load) if t is not None]),
        e2e=distribution_ms([o.e2e for o in load if o.e2e is not None]),
        errors=summarize_errors(list(outcomes)),
    )


def judge_latency(fig: LatencyFigures, th: Thresholds) -> tuple[Verdict, str]:
    if fig.load_requests == 0:
        return Verdict.ERROR, "no successful load request to measure"
    problems: list[str] = []
    if fig.failed > th.max_errors:
        kinds = ", ".join(f"{k} x{n}" for k, n in sorted(fig.errors_by_kind.items()))
        problems.append(f"{fig.failed} failed request(s) > {th.max_errors} allowed ({kinds})")
    ceilings = (
        ("TTFT", fig.ttft, th.max_ttft_p99_ms),
        ("TPOT", fig.tpot, th.max_tpot_p99_ms),
        ("ITL", fig.itl, th.max_itl_p99_ms),
        ("E2E", fig.e2e, th.max_e2e_p99_ms),
    )
    gated: list[str] = []
    for label, dist, limit in ceilings:
        if limit is None:
            continue
        gated.append(label)
        if dist.p99_ms is not None and dist.p99_ms > limit:
            problems.append(f"{label} p99 {dist.p99_ms:.0f} ms > {limit:g} ms")
    if problems:
        return Verdict.FAIL, "; ".join(problems)
    reason = f"{fig.requests} requests, {fig.failed} failed (<= {th.max_errors})"
    reason += f"; p99 within limits for {', '.join(gated)}" if gated else "; no latency ceilings configured"
    return Verdict.PASS, reason


def _p(d: Distribution) -> str:
    if d.p50_ms is None:
        return "-"
    return f"{d.p50_ms:.0f}/{d.p90_ms:.0f}/{d.p99_ms:.0f}"


# every check that sends requests: the error count is over the whole run
NEEDS = (engine.NAME, batching.NAME, batching.SWEEP_NAME, prefix.NAME)


async def measure(_probe: Probe, deps: Deps) -> LatencyFigures:
    return latency_figures([o for name in NEEDS for o in deps.outcomes(name)])


def judge(fig: LatencyFigures, config: VerifyConfig) -> Judgement:
    verdict, reason = judge_latency(fig, config.thresholds)
    summary = (
        f"p50/p90/p99 ms: TTFT {_p(fig.ttft)}, ITL {_p(fig.itl)}, TPOT {_p(fig.tpot)}, E2E {_p(fig.e2e)}; "
        f"errors {fig.failed}"
    )
    return Judgement(verdict, reason, summary)


CHECK = Check(NAME, TITLE, LatencyFigures, measure, judge, needs=NEEDS)
