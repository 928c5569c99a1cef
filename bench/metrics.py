"""Counters read from a vLLM ``/metrics`` exposition: pure, no network.

Only what the checks cross-check is read: the prefix-cache counters (queries and hits, both in tokens) and
the prompt- and generation-token counters (names in ``kvstack.contract.metrics``). Series of every engine
are summed; a model filter keeps other served models out.

Every snapshot also records which server process answered (``backend``): the value of
``process_start_time_seconds`` (prometheus_client's process collector, in every vLLM exposition that is
not in multiprocess mode), else the creation times of the prefix-cache counters (``*_created``, set once
per engine process). Behind a Kubernetes Service with several replicas, two reads of ``/metrics`` can come
from two pods; their counters cannot be subtracted. ``backends_differ`` and ``CounterDelta.negative`` tell
such data apart (see docs/bench.md, "Targets with several replicas").
"""

from __future__ import annotations

from dataclasses import dataclass

from kvstack.contract import exposition
from kvstack.contract import metrics as m

PREFIX_QUERIES = m.PREFIX_CACHE_QUERIES
PREFIX_HITS = m.PREFIX_CACHE_HITS
GENERATION_TOKENS = m.GENERATION_TOKENS
PROMPT_TOKENS = m.PROMPT_TOKENS
PROCESS_START = m.PROCESS_START
# per-process fallbacks when the process collector is absent: when each engine created its counters
_CREATED = tuple(
    created
    for created in (m.CATALOGUE[n].created_series for n in (m.PREFIX_CACHE_QUERIES, m.PREFIX_CACHE_HITS))
    if created is not None
)

_WANTED = (PREFIX_QUERIES, PREFIX_HITS, GENERATION_TOKENS, PROMPT_TOKENS)


@dataclass(frozen=True, slots=True)
class CounterSnapshot:
    """Summed counter values at one scrape; ``None`` when the server does not publish the series."""

    prefix_queries: float | None
    prefix_hits: float | None
    generation_tokens: float | None
    prompt_tokens: float | None
    backend: str | None = None  # which server process answered; None when the exposition does not say


@dataclass(frozen=True, slots=True)
class CounterDelta:
    prefix_queries: float | None
    prefix_hits: float | None
    generation_tokens: float | None
    prompt_tokens: float | None

    @property
    def negative(self) -> list[str]:
        """Names of the counters that went down: impossible on one process (a restart or another pod)."""
        values = {
            PREFIX_QUERIES: self.prefix_queries,
            PREFIX_HITS: self.prefix_hits,
            GENERATION_TOKENS: self.generation_tokens,
            PROMPT_TOKENS: self.prompt_tokens,
        }
        return [name for name, value in values.items() if value is not None and value < 0]

    @property
    def prefix_hit_rate(self) -> float | None:
        if self.prefix_queries is None or self.prefix_hits is None or self.prefix_queries <= 0:
            return None
        return self.prefix_hits / self.prefix_queries


def parse_counters(text: str, model_name: str | None = None) -> CounterSnapshot:
    """Sum the wanted counters over engines. Raises ``ValueError`` on text that is not an exposition."""
    samples = exposition.parse_samples(text)
    start = next((float(s.value) for s in samples if s.name == PROCESS_START), None)
    of_model = exposition.for_model(samples, model_name)
    sums = exposition.sum_by_name(of_model, _WANTED)
    created = [
        f"{s.name}{{engine={s.labels.get('engine', '')}}}={float(s.value)!r}"
        for s in of_model
        if s.name in _CREATED
    ]
    backend: str | None
    if start is not None:
        backend = f"{PROCESS_START}={start!r}"
    elif created:
        backend = ",".join(sorted(created))
    else:
        backend = None
    return CounterSnapshot(
        prefix_queries=sums.get(PREFIX_QUERIES),
        prefix_hits=sums.get(PREFIX_HITS),
        generation_tokens=sums.get(GENERATION_TOKENS),
        prompt_tokens=sums.get(PROMPT_TOKENS),
        backend=backend,
    )


def backends_differ(snapshots: list[CounterSnapshot]) -> bool:
    """True when the snapshots name more than one server process (those that name none are ignored)."""
    return len({s.backend for s in snapshots if s.backend is not None}) > 1


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
