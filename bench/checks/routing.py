"""Routing: does the fleet behind the endpoint keep each conversation where its prefix is cached?

Runs only when the config names where each engine's counters are read (``fleet.engine_metrics_urls`` or
``fleet.prometheus_url``): a single endpoint has nothing to route, and the check is skipped with that
reason. The workload, the figures and the pure judge are in :mod:`kvstack.bench.routing`; the block size
comes from the capacity check (declared need).
"""

from __future__ import annotations

from kvstack.bench.checks import kv_capacity
from kvstack.bench.checks.pipeline import Check, Deps, Judgement, NotMeasured, Probe
from kvstack.bench.config import VerifyConfig
from kvstack.bench.figures import RoutingFigures
from kvstack.bench.report import Verdict
from kvstack.bench.routing import RoutingThresholds, RoutingWorkload, judge_routing, measure_routing

NAME = "routing"
TITLE = "Routing across the fleet"


async def measure(probe: Probe, deps: Deps) -> RoutingFigures:
    source = probe.fleet_source()
    if source is None:
        return RoutingFigures(
            engines=0,
            requests_ok=0,
            requests_failed=0,
            prompt_tokens=0,
            reusable_tokens=0,
            hit_tokens=0,
            queried_tokens=0,
            block_size=0,
            turns=(),
        )
    capacity = deps.figures(kv_capacity.CHECK)
    if capacity is None:
        raise NotMeasured("the capacity check gave no block size: reusable tokens cannot be counted")
    cfg = probe.config.routing
    workload = RoutingWorkload(
        sessions=cfg.sessions,
        turns=cfg.turns,
        context_units=cfg.context_units,
        shared_requests=cfg.shared_requests,
        output_tokens=cfg.output_tokens,
        session_ids=cfg.session_ids,
        seed=probe.config.seed,
    )
    bar = probe.display.phase(
        f"routing: {cfg.sessions} sessions x {cfg.turns} turns",
        cfg.turns * (cfg.sessions + cfg.shared_requests),
    )

    def done(out: object) -> None:
        bar.advance()

    figures, outcomes = await measure_routing(
        probe.client,
        source=source,
        model=probe.model,
        block_size=capacity.block_size,
        workload=workload,
        on_done=done,
    )
    probe.outcomes.extend(outcomes)
    bar.close(f"{figures.engines} engine(s), efficiency {figures.efficiency or 0:.2f}")
    return figures


def judge(fig: RoutingFigures, config: VerifyConfig) -> Judgement:
    """Pure: skipped without a fleet source or with one engine; else the routing verdict."""
    if fig.source is None:
        return Judgement(
            Verdict.SKIPPED,
            "a single endpoint: give each engine's /metrics (--engine-metrics) or --prometheus to judge "
            "the routing of a fleet",
        )
    cfg = config.routing
    verdict = judge_routing(
        fig,
        RoutingThresholds(
            min_efficiency=cfg.min_efficiency,
            min_engine_share_of_fair=cfg.min_engine_share_of_fair,
            max_later_turn_ttft_ratio=cfg.max_later_turn_ttft_ratio,
        ),
    )
    if fig.engines < 2 and verdict.passed:
        return Judgement(
            Verdict.SKIPPED, f"one engine behind the endpoint: nothing to route ({verdict.summary})"
        )
    if verdict.passed:
        return Judgement(Verdict.PASS, verdict.summary, verdict.summary)
    return Judgement(Verdict.FAIL, "; ".join(verdict.failures), verdict.summary)


CHECK = Check(NAME, TITLE, RoutingFigures, measure, judge, needs=(kv_capacity.NAME,))
