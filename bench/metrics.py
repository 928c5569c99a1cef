"""Counters read from a vLLM ``/metrics`` exposition: pure, no network.

Only what the checks cross-check is read: the prefix-cache counters (``vllm:prefix_cache_queries_total``
and ``vllm:prefix_cache_hits_total``, both in tokens) and the generation-token counter. Series of every
engine are summed; a model filter keeps other served models out.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

PREFIX_QUERIES = "vllm:prefix_cache_queries_total"
PREFIX_HITS = "vllm:prefix_cache_hits_total"
GENERATION_TOKENS = "vllm:generation_tokens_total"
PROMPT_TOKENS = "vllm:prompt_tokens_total"

_WANTED = (PREFIX_QUERIES, PREFIX_HITS, GENERATION_TOKENS, PROMPT_TOKENS)


@dataclass(frozen=True, slots=True)
class CounterSnapshot:
    """Summed counter values at one scrape; ``None`` when the server does not publish the series."""

    prefix_queries: float | None
    prefix_hits: float | None
    generation_tokens: float | None
    prompt_tokens: float | None


@dataclass(frozen=True, slots=True)
class CounterDelta:
    prefix_queries: float | None
    prefix_hits: float | None
    generation_tokens: float | None
    prompt_tokens: float | None

    @property
    def prefix_hit_rate(self) -> float | None:
        if self.prefix_queries is None or self.prefix_hits is None or self.prefix_queries <= 0:
            return None
        return self.prefix_hits / self.prefix_queries


def parse_counters(text: str, model_name: str | None = None) -> CounterSnapshot:
    """Sum the wanted counters over engines. Raises ``ValueError`` on text that is not an exposition."""
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name not in _WANTED:
                continue
            if model_name is not None and sample.labels.get("model_name", model_name) != model_name:
                continue
            sums[sample.name] = sums.get(sample.name, 0.0) + float(sample.value)
    return CounterSnapshot(
        prefix_queries=sums.get(PREFIX_QUERIES),
        prefix_hits=sums.get(PREFIX_HITS),
        generation_tokens=sums.get(GENERATION_TOKENS),
        prompt_tokens=sums.get(PROMPT_TOKENS),
    )


def _sub(after: float | None, before: float | None) -> float | None:
    if after is None or before is None:
        return None
    return after - before


def counter_delta(before: CounterSnapshot, after: CounterSnapshot) -> CounterDelta:
    return CounterDelta(
        prefix_queries=_sub(after.prefix_queries, before.prefix_queries),
        prefix_hits=_sub(after.prefix_hits, before.prefix_hits),
        generation_tokens=_sub(after.generation_tokens, before.generation_tokens),
        prompt_tokens=_sub(after.prompt_tokens, before.prompt_tokens),
    )
