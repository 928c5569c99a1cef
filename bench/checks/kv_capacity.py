"""PagedAttention capacity: block size, blocks, KV tokens and max concurrency at the served length."""

from __future__ import annotations

from kvstack.bench.capacity import CapacityParseError, KvCapacity, parse_kv_capacity
from kvstack.bench.checks.pipeline import Check, Deps, Judgement, NotMeasured, Probe
from kvstack.bench.config import ExpectedCapacity, Thresholds, VerifyConfig
from kvstack.bench.figures import KvCapacityFigures
from kvstack.bench.report import Verdict

NAME = "capacity"
TITLE = "PagedAttention capacity"


def judge_capacity(
    cap: KvCapacity, thresholds: Thresholds, expected: ExpectedCapacity | None
) -> tuple[Verdict, str, list[str]]:
    """(verdict, reason, comparison lines) for a parsed capacity: pure."""
    problems: list[str] = []
    good: list[str] = []
    if cap.block_size < thresholds.min_block_size:
        problems.append(f"block size {cap.block_size} < {thresholds.min_block_size}")
    else:
        good.append(f"block size {cap.block_size} >= {thresholds.min_block_size}")
    if cap.max_concurrency is None:
        problems.append("max concurrency unknown (no max_model_len and no kv_cache_max_concurrency label)")
    elif cap.max_concurrency < thresholds.min_max_concurrency:
        problems.append(
            f"max concurrency {cap.max_concurrency:.1f} < {thresholds.min_max_concurrency:g} "
            f"({cap.kv_tokens} KV tokens / max_model_len {cap.max_model_len})"
        )
    else:
        good.append(f"max concurrency {cap.max_concurrency:.1f} >= {thresholds.min_max_concurrency:g}")
    comparisons: list[str] = []
    if expected is not None:
        floor = 1.0 - expected.tolerance
        pairs: list[tuple[str, float | None, float | None]] = [
            ("block_size", float(cap.block_size), _f(expected.block_size)),
            ("num_blocks", float(cap.num_blocks), _f(expected.num_blocks)),
            ("kv_tokens", float(cap.kv_tokens), _f(expected.kv_tokens)),
            ("max_concurrency", cap.max_concurrency, expected.max_concurrency),
            ("max_model_len", _f(cap.max_model_len), _f(expected.max_model_len)),
        ]
        for label, got, want in pairs:
            if want is None:
                continue
            if got is None:
                problems.append(f"{label}: expected {want:g}, server does not say")
                continue
            line = f"{label}: {got:g} vs expected {want:g} ({(got / want - 1) * 100:+.1f}%)"
            comparisons.append(line)
            exact = label in ("block_size", "max_model_len")
            if (exact and got != want) or (not exact and got < want * floor):
                problems.append(
                    line + (" (must match)" if exact else f" (below the {expected.tolerance:.0%} tolerance)")
                )
    if problems:
        return Verdict.FAIL, "; ".join(problems), comparisons
    reason = "; ".join(good)
    if comparisons:
        reason += "; matches the expected capacity"
    return Verdict.PASS, reason, comparisons


def _f(v: int | None) -> float | None:
    return None if v is None else float(v)


def capacity_figures(
    cap: KvCapacity, expected: ExpectedCapacity | None, thresholds: Thresholds
) -> KvCapacityFigures:
    """The parsed capacity and its comparison lines with the expected capacity: pure."""
    _, _, comparisons = judge_capacity(cap, thresholds, expected)
    return KvCapacityFigures(**cap.model_dump(), expected=comparisons)


async def measure(probe: Probe, _deps: Deps) -> KvCapacityFigures:
    if probe.metrics_text is None:
        raise NotMeasured(f"/metrics could not be read: {probe.metrics_error}")
    try:
        cap = parse_kv_capacity(probe.metrics_text, probe.server.max_model_len, probe.model)
    except CapacityParseError as exc:
        raise NotMeasured(str(exc)) from exc
    return capacity_figures(cap, probe.config.expected_capacity, probe.config.thresholds)


def judge(fig: KvCapacityFigures, config: VerifyConfig) -> Judgement:
    verdict, reason, _ = judge_capacity(fig, config.thresholds, config.expected_capacity)
    conc = f"{fig.max_concurrency:.1f}" if fig.max_concurrency is not None else "?"
    summary = (
        f"block {fig.block_size}, {fig.num_blocks} blocks = {fig.kv_tokens} KV tokens; "
        f"max concurrency {conc} at {fig.max_model_len or '?'} tokens"
    )
    return Judgement(verdict, reason, summary)


CHECK = Check(NAME, TITLE, KvCapacityFigures, measure, judge)
