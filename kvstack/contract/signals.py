"""vLLM's signals as PromQL, written once and shared by the rules, the dashboards and the autoscaler.

Label conventions: vLLM labels every series with ``model_name`` and ``engine`` (data-parallel rank); the
Kubernetes scrape adds ``namespace`` and ``pod`` (and ``job``, ``instance``). Per-pod signals aggregate
the engines of a pod; latency and rates are per model.

``matchers`` arguments are the inside of a selector's braces (``namespace=~"$namespace"``) or ``""``.
"""

from __future__ import annotations

from collections.abc import Sequence

from kvstack.contract import metrics as m
from kvstack.contract.kube import NAMESPACE_LABEL, POD_LABEL
from kvstack.contract.promql import by, matchers_of, ratio_or_zero, selector

POD_LABELS: tuple[str, ...] = (NAMESPACE_LABEL, POD_LABEL, "model_name")
MODEL_LABELS: tuple[str, ...] = (NAMESPACE_LABEL, "model_name")
JOB_LABELS: tuple[str, ...] = (NAMESPACE_LABEL, "job")

# Requests that reach the engine through the OpenAI API (not /metrics, /health, /tokenize).
OPENAI_HANDLERS = 'handler=~"/v1/.*"'


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
    return f"max by ({by(POD_LABELS)}) ({selector(m.KV_CACHE_USAGE, matchers)})"


def requests_waiting_by_pod(matchers: str = "") -> str:
    return f"sum by ({by(POD_LABELS)}) ({selector(m.REQUESTS_WAITING, matchers)})"


def requests_running_by_pod(matchers: str = "") -> str:
    return f"sum by ({by(POD_LABELS)}) ({selector(m.REQUESTS_RUNNING, matchers)})"


def requests_waiting_per_replica(matchers: str = "") -> str:
    """Mean queue depth over a model's pods: what an HPA with a per-pod average target acts on."""
    return f"avg by ({by(MODEL_LABELS)}) ({requests_waiting_by_pod(matchers)})"


def replicas_reporting(matchers: str = "") -> str:
    """Number of vLLM pods whose metrics Prometheus currently has, per model."""
    return f"count by ({by(MODEL_LABELS)}) ({requests_running_by_pod(matchers)})"


def prefix_cache_hit_ratio(window: str, matchers: str = "", labels: Sequence[str] = MODEL_LABELS) -> str:
    """Share of prompt tokens served from the prefix cache (hits and queries are both in tokens)."""
    hits = sum_rate(m.PREFIX_CACHE_HITS, window, matchers, labels)
    queries = sum_rate(m.PREFIX_CACHE_QUERIES, window, matchers, labels)
    return f"{hits}\n/\n{queries}"


def http_5xx_ratio(window: str, matchers: str = "") -> str:
    """5xx share of the OpenAI API's requests per scrape job (the instrumentator has no model label)."""
    base = matchers_of(OPENAI_HANDLERS, matchers)
    errors = sum_rate(m.HTTP_REQUESTS, window, matchers_of(base, 'status="5xx"'), JOB_LABELS)
    total = sum_rate(m.HTTP_REQUESTS, window, base, JOB_LABELS)
    return ratio_or_zero(errors, total)


def request_error_ratio(window: str, matchers: str = "") -> str:
    """Share of finished requests the engine ended with ``finished_reason="error"``."""
    errors = sum_rate(m.REQUEST_SUCCESS, window, matchers_of(matchers, 'finished_reason="error"'))
    total = sum_rate(m.REQUEST_SUCCESS, window, matchers)
    return ratio_or_zero(errors, total)
