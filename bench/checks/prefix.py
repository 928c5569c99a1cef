"""Prefix caching: cold vs warm time to first token on shared prefixes, cross-checked with the server.

Each pair sends a *cold* request on a prefix never sent before (a fresh nonce at its very start, so not
one of its blocks can be in the cache) and then a *warm* request on the same prefix with another suffix.
The verdict needs both: the median cold TTFT over the median warm TTFT at or above the threshold, and,
when ``/metrics`` is readable, the server's own prefix-cache hit counter grown by at least a share
of the tokens the warm requests could reuse (whole blocks of the shared prefix). The second condition is
what makes the check fail on a server started with ``--no-enable-prefix-caching``, where the TTFT ratio
alone can drift above 1.05 by chance on a busy CPU.

The counters are read before, between and after the pairs, and each read records which server process
answered (``bench.metrics``). When the reads come from more than one process, or a counter went down, the
endpoint is several replicas behind one Service: cold and warm requests may have landed on different pods
and the counter delta means nothing, so the run is reported as not measurable (``EndpointError``, exit 2)
rather than judged on that data.

Then the same measurement at the prefix lengths typical of the use cases where caching pays (system
prompt, few-shot examples, RAG context, multi-turn chat), reported, not gated.
"""

from __future__ import annotations

import contextlib
import time

from kvstack.bench.checks import kv_capacity
from kvstack.bench.checks.pipeline import Check, Deps, Judgement, Probe
from kvstack.bench.client import EndpointError, RequestOutcome
from kvstack.bench.config import UseCase, VerifyConfig
from kvstack.bench.discovery import count_tokens, fetch_metrics, fit_units
from kvstack.bench.figures import PairTiming, PrefixFigures, UseCaseFigures
from kvstack.bench.load import completion_payload
from kvstack.bench.metrics import (
    PREFIX_HITS,
    CounterDelta,
    CounterSnapshot,
    backends_differ,
    counter_delta,
    parse_counters,
)
from kvstack.bench.prompts import estimate_tokens, new_nonce, nonce_header, shaped_text, suffix_text
from kvstack.bench.report import Verdict
from kvstack.bench.stats import median

NAME = "prefix_caching"
TITLE = "Prefix caching"
MAIN_SHAPE = "notes"
MIN_VALID_PAIRS = 3


def expected_cached_tokens(
    prefix_tokens: int | None, block_size: int | None, warm_requests: int
) -> int | None:
    """Tokens the warm requests can reuse: whole blocks of the shared prefix (its last token kept apart,
    since the tokenizer may merge it with the suffix)."""
    if prefix_tokens is None or block_size is None or block_size <= 0:
        return None
    return (max(prefix_tokens - 1, 0) // block_size) * block_size * warm_requests


def replica_problem(
    endpoint: str, snapshots: list[CounterSnapshot], delta: CounterDelta | None
) -> str | None:
    """Why the counter reads of one run cannot be trusted, or ``None``: pure.

    ``snapshots``: every read of the run, in order; ``delta``: after minus before.
    """
    evidence: list[str] = []
    if backends_differ(snapshots):
        seen = list(dict.fromkeys(s.backend for s in snapshots if s.backend is not None))
        evidence.append(f"/metrics was answered by {len(seen)} processes ({'; '.join(seen)})")
    if delta is not None and delta.negative:
        evidence.append(f"counters went down between two reads: {', '.join(delta.negative)}")
    if not evidence:
        return None
    return (
        f"several vLLM processes answer behind {endpoint} (a Service with more than one replica?): "
        f"point verify at one pod, e.g. kubectl port-forward pod/<name> 8000 [{'; '.join(evidence)}]"
    )


def judge_prefix(
    *,
    speedup: float | None,
    min_speedup: float,
    expected_cached: int | None,
    hits: float | None,
    min_hit_fraction: float,
    enabled_label: bool | None,
    prefix_tokens: int | None,
    block_size: int | None,
) -> tuple[Verdict, str]:
    """Verdict and reason from the measured figures: pure."""
    if speedup is None:
        return Verdict.ERROR, f"fewer than {MIN_VALID_PAIRS} cold/warm pairs could be measured"
    problems: list[str] = []
    facts: list[str] = [f"warm TTFT {speedup:.2f}x faster than cold (>= {min_speedup:g}x)"]
    if speedup < min_speedup:
        problems.append(f"warm/cold TTFT speedup {speedup:.2f}x < {min_speedup:g}x")
    if expected_cached is not None and expected_cached == 0:
        problems.append(
            f"the shared prefix ({prefix_tokens} tokens) is shorter than one KV block ({block_size}): "
            "nothing can be reused; raise prefix.prefix_tokens"
        )
    elif expected_cached is not None and hits is not None:
        fraction = hits / expected_cached
        facts.append(
            f"server counted {hits:.0f} cached tokens ({fraction:.0%} of {expected_cached} reusable)"
        )
        if fraction < min_hit_fraction:
            label = (
                "" if enabled_label is None else f"; cache_config_info enable_prefix_caching={enabled_label}"
            )
            problems.append(
                f"{PREFIX_HITS} grew by {hits:.0f} tokens, below {min_hit_fraction:.0%} "
                f"of the {expected_cached} the warm requests could reuse: prefix caching is off or not "
                f"working{label}"
            )
    elif enabled_label is False:
        problems.append("cache_config_info says enable_prefix_caching=False (hit counters unavailable)")
    else:
        facts.append("server hit counters unavailable: judged on TTFT only")
    if problems:
        return Verdict.FAIL, "; ".join(problems)
    return Verdict.PASS, "; ".join(facts)


def _suffix_units(suffix_tokens: int) -> int:
    return max(1, round(suffix_tokens / 14))


async def _pairs(
    probe: Probe,
    shape: str,
    units: int,
    *,
    count: int,
    phase: str,
    title: str,
    scrapes: list[CounterSnapshot] | None = None,
) -> tuple[list[tuple[RequestOutcome, RequestOutcome]], int, str]:
    """Run ``count`` cold/warm pairs; returns (valid pairs, failed pairs, one actual prefix).

    With ``scrapes``, ``/metrics`` is read after every pair but the last and the reads appended (to tell
    whether one process answers them all).
    """
    cfg = probe.config.prefix
    body = shaped_text(shape, units, probe.config.seed)
    bar = probe.display.phase(title, 2 * count)
    valid: list[tuple[RequestOutcome, RequestOutcome]] = []
    failed = 0
    sample_prefix = ""
    try:
        for i in range(count):
            prefix = nonce_header(new_nonce()) + body
            sample_prefix = prefix
            outs: list[RequestOutcome] = []
            for j in range(2):
                prompt = prefix + suffix_text(
                    probe.config.seed * 7919 + 2 * i + j, _suffix_units(cfg.suffix_tokens)
                )
                out = await probe.client.stream(
                    "/v1/completions",
                    completion_payload(probe.model, prompt, cfg.output_tokens),
                    f"{phase}_{'warm' if j else 'cold'}",
                )
                probe.outcomes.append(out)
                outs.append(out)
                bar.advance()
                if probe.client.endpoint_down:
                    raise EndpointError(f"endpoint down: {probe.client.down_reason}")
            if scrapes is not None and i < count - 1 and (snap := await _scrape(probe)) is not None:
                scrapes.append(snap)
            cold, warm = outs
            if cold.ok and warm.ok and cold.ttft is not None and warm.ttft is not None:
                valid.append((cold, warm))
            else:
                failed += 1
    finally:
        bar.close()
    return valid, failed, sample_prefix


def _limit_tokens(probe: Probe) -> int | None:
    max_len = probe.server.max_model_len
    if max_len is None:
        return None
    cfg = probe.config.prefix
    return max_len - (cfg.suffix_tokens + 16) - cfg.output_tokens - max(16, max_len // 16)


async def _fit(probe: Probe, shape: str, target: int) -> tuple[int, int]:
    placeholder = nonce_header("0" * 12)
    return await fit_units(
        probe.client,
        probe.model,
        lambda u: placeholder + shaped_text(shape, u, probe.config.seed),
        target,
        probe.server.tokenizer_endpoint,
    )


async def _scrape(probe: Probe) -> CounterSnapshot | None:
    source = probe.fleet_source()
    if source is not None:  # a fleet: the counters summed over its engines, read where each can be told apart
        await source.settle(time.time())
        engines = await source.snapshot()
        return CounterSnapshot(
            prefix_queries=sum(e.prefix_queries for e in engines.values()),
            prefix_hits=sum(e.prefix_hits for e in engines.values()),
            generation_tokens=None,
            prompt_tokens=None,
            backend=f"fleet of {len(engines)} engine(s): {', '.join(sorted(engines))}",
        )
    text, _ = await fetch_metrics(probe.client, probe.config)
    if text is None:
        return None
    try:
        return parse_counters(text, probe.model)
    except ValueError:
        return None


def _speedup(
    pairs: list[tuple[RequestOutcome, RequestOutcome]],
) -> tuple[float | None, float | None, float | None]:
    """(median cold TTFT ms, median warm TTFT ms, their ratio)."""
    if not pairs:
        return None, None, None
    cold = median([c.ttft or 0.0 for c, _ in pairs]) * 1000
    warm = median([w.ttft or 0.0 for _, w in pairs]) * 1000
    return cold, warm, (cold / warm if warm > 0 else None)


async def _use_case(probe: Probe, case: UseCase) -> UseCaseFigures:
    fig = UseCaseFigures(name=case.name, title=case.title, target_tokens=case.prefix_tokens)
    target = case.prefix_tokens
    limit = _limit_tokens(probe)
    if limit is not None and target > limit:
        if limit < 50:
            fig.note = f"does not fit max_model_len {probe.server.max_model_len}"
            return fig
        fig.note = f"clamped from {target} to fit max_model_len {probe.server.max_model_len}"
        target = limit
    units, tokens = await _fit(probe, case.name, target)
    fig.prefix_tokens = tokens
    pairs, failed, _ = await _pairs(
        probe,
        case.name,
        units,
        count=probe.config.prefix.use_case_pairs,
        phase=f"prefix_{case.name}",
        title=f"prefix caching: {case.name}",
    )
    fig.pairs = len(pairs)
    if failed:
        fig.note = (fig.note + "; " if fig.note else "") + f"{failed} pair(s) failed"
    fig.cold_ttft_ms, fig.warm_ttft_ms, fig.speedup = _speedup(pairs)
    if fig.speedup is not None:
        fig.pays = fig.speedup >= probe.config.thresholds.min_prefix_speedup
    return fig


async def measure(probe: Probe, deps: Deps) -> PrefixFigures:
    cfg = probe.config.prefix
    capacity = deps.figures(kv_capacity.CHECK)
    notes: list[str] = []
    target = cfg.prefix_tokens
    limit = _limit_tokens(probe)
    if limit is not None and target > limit:
        notes.append(
            f"prefix clamped from {target} to {limit} tokens to fit "
            f"max_model_len {probe.server.max_model_len}"
        )
        target = max(limit, 50)
    units, _ = await _fit(probe, MAIN_SHAPE, target)

    before = await _scrape(probe)
    scrapes: list[CounterSnapshot] = []
    # the read of discovery: one more sample of who answers (not with a fleet source: the endpoint's
    # /metrics is then one engine of the fleet, while the counters are read per engine)
    if probe.metrics_text is not None and not probe.config.fleet.given:
        with contextlib.suppress(ValueError):
            scrapes.append(parse_counters(probe.metrics_text, probe.model))
    if before is not None:
        scrapes.append(before)
    pairs, failed, sample_prefix = await _pairs(
        probe,
        MAIN_SHAPE,
        units,
        count=cfg.pairs,
        phase="prefix",
        title="prefix caching: cold/warm pairs",
        scrapes=scrapes if before is not None else None,
    )
    after = await _scrape(probe)
    if after is not None:
        scrapes.append(after)
    delta: CounterDelta | None = counter_delta(before, after) if before and after else None
    if (problem := replica_problem(probe.config.endpoint, scrapes, delta)) is not None:
        raise EndpointError(problem)

    prefix_tokens: int | None = None
    if sample_prefix:
        prefix_tokens = (
            await count_tokens(probe.client, probe.model, sample_prefix)
            if probe.server.tokenizer_endpoint
            else None
        )
        if prefix_tokens is None:
            prefix_tokens = estimate_tokens(sample_prefix)
            notes.append("prefix length estimated from characters (no /tokenize)")
    block_size = capacity.block_size if capacity else None
    expected = expected_cached_tokens(prefix_tokens, block_size, len(pairs))
    cold_ms, warm_ms, speedup = _speedup(pairs) if len(pairs) >= MIN_VALID_PAIRS else (None, None, None)
    hits = delta.prefix_hits if delta else None
    enabled = capacity.prefix_caching_enabled if capacity else None
    use_cases = [await _use_case(probe, case) for case in cfg.use_cases]

    return PrefixFigures(
        prefix_target_tokens=cfg.prefix_tokens,
        prefix_tokens=prefix_tokens,
        block_size=block_size,
        pairs=[
            PairTiming(
                cold_ttft_ms=(c.ttft or 0.0) * 1000,
                warm_ttft_ms=(w.ttft or 0.0) * 1000,
                speedup=(c.ttft or 0.0) / w.ttft if w.ttft else 0.0,
                cold_prompt_tokens=c.prompt_tokens,
                warm_prompt_tokens=w.prompt_tokens,
            )
            for c, w in pairs
        ],
        failed_pairs=failed,
        cold_ttft_ms=cold_ms,
        warm_ttft_ms=warm_ms,
        speedup=speedup,
        expected_cached_tokens=expected,
        server_prefix_hits=hits,
        server_prefix_queries=delta.prefix_queries if delta else None,
        hit_fraction=(hits / expected) if hits is not None and expected else None,
        server_prefix_caching_enabled=enabled,
        use_cases=use_cases,
        notes=notes,
    )


def judge(fig: PrefixFigures, config: VerifyConfig) -> Judgement:
    """Pure: the TTFT speed-up and the server's hit counters against the thresholds."""
    th = config.thresholds
    verdict, reason = judge_prefix(
        speedup=fig.speedup,
        min_speedup=th.min_prefix_speedup,
        expected_cached=fig.expected_cached_tokens,
        hits=fig.server_prefix_hits,
        min_hit_fraction=th.min_prefix_hit_fraction,
        enabled_label=fig.server_prefix_caching_enabled,
        prefix_tokens=fig.prefix_tokens,
        block_size=fig.block_size,
    )
    if fig.failed_pairs:
        reason += f"; {fig.failed_pairs} pair(s) failed"
    speedup, cold_ms, warm_ms = fig.speedup, fig.cold_ttft_ms, fig.warm_ttft_ms
    paying = [f"{u.name} {u.speedup:.1f}x" for u in fig.use_cases if u.speedup is not None]
    summary = (
        f"{fig.prefix_tokens or '?'}-token prefix, {len(fig.pairs)} pairs: "
        f"cold {cold_ms or 0:.0f} ms vs warm {warm_ms or 0:.0f} ms"
        + (f" ({speedup:.2f}x)" if speedup else "")
        + (f"; {', '.join(paying)}" if paying else "")
    )
    return Judgement(verdict, reason + ("; " + "; ".join(fig.notes) if fig.notes else ""), summary)


CHECK = Check(NAME, TITLE, PrefixFigures, measure, judge, needs=(kv_capacity.NAME,))
