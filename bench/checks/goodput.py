"""Capacity under SLO: the highest sweep concurrency whose requests met the SLO, against the floor the
stack declares (``slo.min_goodput_concurrency``).

A request meets the SLO when its TTFT <= the TTFT objective and its mean inter-token latency (TPOT) <= the
ITL objective (``vllm bench serve --goodput``); a level meets it when at least ``slo.min_fraction`` (90%)
of its successful requests do. Nothing is sent here: the figures come from the sweep (declared need).
Without any SLO the check is skipped with the reason; with an SLO but no floor it reports the concurrency
and is skipped too (nothing to gate on).
"""

from __future__ import annotations

from kvstack.bench.checks import batching
from kvstack.bench.checks.pipeline import Check, Deps, Judgement, NotMeasured, Probe
from kvstack.bench.config import VerifyConfig
from kvstack.bench.figures import GoodputCapacityFigures
from kvstack.bench.report import Verdict

NAME = "goodput_capacity"
TITLE = "Capacity under SLO"


async def measure(probe: Probe, deps: Deps) -> GoodputCapacityFigures:
    slo = probe.config.slo
    sweep = deps.figures(batching.SWEEP_CHECK)
    if sweep is None:
        if not slo.given:  # nothing would be judged: say why it is skipped, not that the sweep broke
            return GoodputCapacityFigures(
                slo_ttft_ms=None,
                slo_itl_ms=None,
                min_fraction=slo.min_fraction,
                floor=slo.min_goodput_concurrency,
                goodput_concurrency=None,
                levels_measured=[],
                sweep_stop=None,
                upper_bound=None,
            )
        raise NotMeasured("the concurrency sweep produced no figures")
    return GoodputCapacityFigures(
        slo_ttft_ms=slo.ttft_ms,
        slo_itl_ms=slo.itl_ms,
        min_fraction=slo.min_fraction,
        floor=slo.min_goodput_concurrency,
        goodput_concurrency=sweep.goodput_concurrency,
        levels_measured=[lv.concurrency for lv in sweep.levels],
        sweep_stop=sweep.stop.reason if sweep.stop else None,
        upper_bound=sweep.bound.concurrency if sweep.bound else None,
    )


def _objectives(fig: GoodputCapacityFigures) -> str:
    parts = []
    if fig.slo_ttft_ms is not None:
        parts.append(f"TTFT <= {fig.slo_ttft_ms:g} ms")
    if fig.slo_itl_ms is not None:
        parts.append(f"ITL <= {fig.slo_itl_ms:g} ms")
    return " and ".join(parts) + f" for >= {fig.min_fraction:.0%} of requests"


def judge(fig: GoodputCapacityFigures, _config: VerifyConfig) -> Judgement:
    """Pure: skipped without an SLO or a floor; passes when the highest concurrency meeting the SLO
    reaches the floor."""
    if fig.slo_ttft_ms is None and fig.slo_itl_ms is None:
        return Judgement(
            Verdict.SKIPPED,
            "no SLO given (stack outputs 'slo', or --slo-ttft-ms / --slo-itl-ms): goodput not judged",
        )
    got = fig.goodput_concurrency
    summary = f"{_objectives(fig)}: highest concurrency meeting it {got if got is not None else 'none'}" + (
        f", floor {fig.floor}" if fig.floor is not None else ""
    )
    if fig.floor is None:
        return Judgement(
            Verdict.SKIPPED,
            f"no min_goodput_concurrency declared: highest concurrency meeting the SLO is {got or 'none'}",
            summary,
        )
    if fig.upper_bound is not None and fig.floor > fig.upper_bound:
        return Judgement(
            Verdict.FAIL,
            f"the floor {fig.floor} is above the sweep's upper bound {fig.upper_bound} "
            "(KV max concurrency, max_num_seqs or --sweep-max): it cannot be reached",
            summary,
        )
    if got is None or got < fig.floor:
        return Judgement(
            Verdict.FAIL,
            f"highest concurrency meeting the SLO is {got or 'none'} < floor {fig.floor} "
            f"(levels {fig.levels_measured}, sweep stopped: {fig.sweep_stop})",
            summary,
        )
    return Judgement(
        Verdict.PASS, f"concurrency {got} meets the SLO ({_objectives(fig)}) >= floor {fig.floor}", summary
    )


CHECK = Check(NAME, TITLE, GoodputCapacityFigures, measure, judge, needs=(batching.SWEEP_NAME,))
