"""The typed figures every check of ``kvstack verify`` measures: pydantic models, no behaviour.

A check's ``measure`` returns one of these; its pure ``judge`` reads it; the report stores it as the
check's ``figures`` (its JSON keys are the report format), and the console, the plots and the baseline
comparison read it back typed with ``VerifyReport.figures(name, Model)``.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, computed_field

from kvstack.bench.capacity import KvCapacity
from kvstack.bench.report import ErrorSummary
from kvstack.bench.stats import Distribution, median

# ---- engine ----------------------------------------------------------------------------------------


class CompletionFigures(BaseModel):
    prompt: str
    text: str | None
    output_tokens: int | None
    ttft_ms: float | None
    error: str | None
    ok: bool = True


class ChatFigures(BaseModel):
    prompt: str
    text: str | None
    output_tokens: int | None
    status: str  # answered | no chat template | failed
    error: str | None


class EngineFigures(BaseModel):
    completion: CompletionFigures
    chat: ChatFigures | None = None  # None: chat not checked (disabled)


# ---- PagedAttention capacity ------------------------------------------------------------------------


class KvCapacityFigures(KvCapacity):
    """``bench.capacity.KvCapacity`` and its comparison lines with the expected capacity."""

    expected: list[str] = Field(default_factory=list)


# ---- load phases: batching and the sweep -------------------------------------------------------------


class GoodputFigures(BaseModel):
    """Requests of one phase that met every SLO (TTFT <= ttft objective and TPOT <= ITL objective)."""

    requests: int  # successful requests judged
    met: int
    fraction: float | None  # met / requests
    request_throughput: float  # requests/s meeting the SLO, over the phase's wall time
    output_throughput: float  # output tokens/s of those requests


class PhaseFigures(BaseModel):
    concurrency: int
    requests: int
    failed: int
    wall_s: float
    output_tokens: int
    output_throughput: float  # output tokens/s (server usage) over the phase's wall time
    request_throughput: float
    ttft: Distribution
    tpot: Distribution
    itl: Distribution
    e2e: Distribution
    goodput: GoodputFigures | None = None  # None when no SLO is configured


class BatchingFigures(BaseModel):
    prompts: int
    prompt_tokens: int
    output_tokens_per_request: int
    sequential: PhaseFigures
    concurrent: PhaseFigures
    speedup: float | None
    notes: list[str] = Field(default_factory=list)


class SweepStop(BaseModel):
    """Where the sweep stopped and why: ``saturation`` (the rule below held), ``upper bound`` (the
    largest level was reached), ``errors`` (a level's requests failed)."""

    reason: str
    concurrency: int | None
    detail: str


class SweepBound(BaseModel):
    """The sweep's upper bound and what set it."""

    concurrency: int
    source: str  # e.g. "kv_cache_max_concurrency", "max_num_seqs", "sweep.max_concurrency"
    kv_max_concurrency: float | None = None
    max_num_seqs: int | None = None
    configured: int | None = None


class SweepFigures(BaseModel):
    prompt_tokens: int | None
    output_tokens: int
    rounds: int
    levels: list[PhaseFigures]
    knee_concurrency: int | None = None
    knee_note: str = ""
    peak_throughput: float | None = None
    peak_concurrency: int | None = None
    min_duration_s: float | None = None
    min_requests: int | None = None
    bound: SweepBound | None = None
    stop: SweepStop | None = None
    saturation_rule: str = ""
    slo_ttft_ms: float | None = None
    slo_itl_ms: float | None = None
    slo_min_fraction: float | None = None
    goodput_concurrency: int | None = None  # highest level whose SLO-met fraction reached the minimum


# ---- prefix caching ----------------------------------------------------------------------------------


class PairTiming(BaseModel):
    cold_ttft_ms: float
    warm_ttft_ms: float
    speedup: float
    cold_prompt_tokens: int | None
    warm_prompt_tokens: int | None


class UseCaseFigures(BaseModel):
    name: str
    title: str
    target_tokens: int
    prefix_tokens: int | None = None
    pairs: int = 0
    cold_ttft_ms: float | None = None
    warm_ttft_ms: float | None = None
    speedup: float | None = None
    pays: bool | None = None
    note: str = ""


class PrefixFigures(BaseModel):
    prefix_target_tokens: int
    prefix_tokens: int | None
    block_size: int | None
    pairs: list[PairTiming]
    failed_pairs: int
    cold_ttft_ms: float | None
    warm_ttft_ms: float | None
    speedup: float | None
    expected_cached_tokens: int | None  # over all warm requests, whole blocks of the shared prefix
    server_prefix_hits: float | None  # delta of the server's prefix-cache hit counter over the pairs
    server_prefix_queries: float | None
    hit_fraction: float | None  # server hits / expected cached tokens
    server_prefix_caching_enabled: bool | None  # the enable_prefix_caching label, for the record
    use_cases: list[UseCaseFigures]
    notes: list[str] = Field(default_factory=list)


# ---- latency -----------------------------------------------------------------------------------------


class LatencyFigures(BaseModel):
    requests: int  # every streamed request of the run
    failed: int
    errors_by_kind: dict[str, int]
    load_requests: int  # the batching and sweep requests the distributions are computed over
    ttft: Distribution
    itl: Distribution
    tpot: Distribution
    e2e: Distribution
    errors: list[ErrorSummary] = Field(default_factory=list)


# ---- capacity under SLO ------------------------------------------------------------------------------


class GoodputCapacityFigures(BaseModel):
    """The highest sweep concurrency that met the SLO, against the floor the stack declares."""

    slo_ttft_ms: float | None
    slo_itl_ms: float | None
    min_fraction: float
    floor: int | None  # the stack's min_goodput_concurrency
    goodput_concurrency: int | None
    levels_measured: list[int]
    sweep_stop: str | None
    upper_bound: int | None


# ---- open-loop arrivals -----------------------------------------------------------------------------


class RateFigures(BaseModel):
    """One open-loop rate: requests sent on a seeded schedule (``bench.arrivals``) whatever was in flight."""

    rate: float  # offered, requests/s
    seed: int
    requests: int
    failed: int
    schedule_span_s: float  # offset of the last request
    wall_s: float  # first send to last answer
    achieved_request_rate: float  # completed requests / wall
    output_throughput: float  # output tokens/s over the wall
    ttft: Distribution
    tpot: Distribution
    e2e: Distribution
    goodput: GoodputFigures | None = None  # None when no SLO is configured
    meets_slo: bool | None = None  # SLO-met fraction >= slo.min_fraction; None without an SLO


class OpenLoopFigures(BaseModel):
    burstiness: float
    prompt_tokens: int | None
    output_tokens: int
    rates: list[RateFigures]
    slo_ttft_ms: float | None = None
    slo_itl_ms: float | None = None
    slo_min_fraction: float | None = None
    max_rate_meeting_slo: float | None = None  # highest offered rate whose requests met the SLO


# ---- routing (a fleet behind the endpoint) ------------------------------------------------------------


class TurnFigures(BaseModel):
    turn: int
    requests: int
    ttft_median_ms: float | None
    prompt_tokens: int
    reusable_tokens: int


class RoutingFigures(BaseModel):
    """The routing check's figures (``bench.routing``); ``source`` is None when no fleet source was given
    (nothing measured: the check is skipped)."""

    source: str | None = None
    engines: int
    requests_ok: int
    requests_failed: int
    prompt_tokens: int
    reusable_tokens: int
    hit_tokens: float
    queried_tokens: float
    block_size: int
    turns: tuple[TurnFigures, ...]
    engine_shares: dict[str, float] = Field(default_factory=dict)
    restarted_engines: tuple[str, ...] = ()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def reusable_share(self) -> float | None:
        return self.reusable_tokens / self.prompt_tokens if self.prompt_tokens > 0 else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def hit_ratio(self) -> float | None:
        return self.hit_tokens / self.queried_tokens if self.queried_tokens > 0 else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def efficiency(self) -> float | None:
        share, ratio = self.reusable_share, self.hit_ratio
        if share is None or ratio is None or share <= 0:
            return None
        return min(ratio / share, 1.0)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def later_turn_ttft_ratio(self) -> float | None:
        first = self.turns[0].ttft_median_ms if self.turns else None
        later = [t.ttft_median_ms for t in self.turns[1:] if t.ttft_median_ms is not None]
        if first is None or first <= 0 or not later:
            return None
        return median(later) / first
