"""vLLM's and vllm-router's signals as PromQL, written once and shared by the rules, the dashboards and the
autoscaler.

Label conventions: vLLM labels every series with ``model_name`` and ``engine`` (data-parallel rank); the
Kubernetes scrape adds ``namespace`` and ``pod`` (and ``job``, ``instance``). Per-pod signals aggregate
the engines of a pod; latency and rates are per model. The router's series have no model: its signals are
per scrape job (``ROUTER_LABELS``), and per engine where the router labels one (``worker``, a URL).

``matchers`` arguments are the inside of a selector's braces (``namespace=~"$namespace"``) or ``""``.
"""

from __future__ import annotations

from collections.abc import Sequence

from kvstack.contract import metrics as m
from kvstack.contract import router as r
from kvstack.contract.kube import NAMESPACE_LABEL, POD_LABEL
from kvstack.contract.promql import by, matchers_of, ratio_or_zero, selector

POD_LABELS: tuple[str, ...] = (NAMESPACE_LABEL, POD_LABEL, "model_name")
MODEL_LABELS: tuple[str, ...] = (NAMESPACE_LABEL, "model_name")
JOB_LABELS: tuple[str, ...] = (NAMESPACE_LABEL, "job")
# A router's series have no model: they are told apart by scrape job (one per router tier).
ROUTER_LABELS: tuple[str, ...] = JOB_LABELS

# Requests that reach the engine through the OpenAI API (not /metrics, /health, /tokenize).
OPENAI_HANDLERS = 'handler=~"/v1/.*"'


def sum_rate(
    metric: str, window: str, matchers: str = "", labels: Sequence[str] = MODEL_LABELS, offset: str = ""
) -> str:
    """Per-second rate of a counter, summed over pods and engines into ``labels`` (``offset``: as it was
    that long ago)."""
    shifted = f" offset {offset}" if offset else ""
    return f"sum by ({by(labels)}) (rate({selector(metric, matchers)}[{window}]{shifted}))"


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


def prefix_cache_hit_ratio(
    window: str, matchers: str = "", labels: Sequence[str] = MODEL_LABELS, offset: str = ""
) -> str:
    """Share of prompt tokens served from the prefix cache (hits and queries are both in tokens). With the
    default labels it is the fleet's ratio: every pod's tokens together."""
    hits = sum_rate(m.PREFIX_CACHE_HITS, window, matchers, labels, offset)
    queries = sum_rate(m.PREFIX_CACHE_QUERIES, window, matchers, labels, offset)
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


# --- vllm-router ------------------------------------------------------------------------------------------


def router_requests_per_worker(window: str, matchers: str = "") -> str:
    """Requests/s the router sends to each engine (``worker``: the engine's URL)."""
    return sum_rate(r.PROCESSED_REQUESTS, window, matchers, (*ROUTER_LABELS, r.WORKER_LABEL))


def router_policy_decisions(window: str, matchers: str = "") -> str:
    """Decisions/s of the routing policy, by the engine it picked."""
    return sum_rate(r.POLICY_DECISIONS, window, matchers, (*ROUTER_LABELS, "policy", r.WORKER_LABEL))


def router_prefix_decisions(window: str, matchers: str = "") -> str:
    """Cache-aware decisions/s by how the prefix was matched (``outcome``)."""
    return sum_rate(r.PREFIX_ROUTING_DECISIONS, window, matchers, (*ROUTER_LABELS, "policy", r.OUTCOME_LABEL))


def router_kv_routing_inputs(window: str, matchers: str = "") -> str:
    """Attempts/s to get a prompt's tokens from an engine, by ``result``."""
    return sum_rate(r.KV_ROUTING_INPUTS, window, matchers, (*ROUTER_LABELS, "result"))


def router_missing_tokens_ratio(window: str, matchers: str = "") -> str:
    """Share of cache-aware decisions taken without the prompt's tokens: 1 means the router cannot match
    prefixes at all and balances load instead (the engines do not serve ``/v1/completions/render``)."""
    labels = (*ROUTER_LABELS, "policy")
    missing = matchers_of(matchers, f'{r.OUTCOME_LABEL}="{r.MISSING_TOKENS}"')
    return ratio_or_zero(
        sum_rate(r.PREFIX_ROUTING_DECISIONS, window, missing, labels),
        sum_rate(r.PREFIX_ROUTING_DECISIONS, window, matchers, labels),
    )


def router_running_per_worker(matchers: str = "") -> str:
    """Requests the router has in flight to each engine."""
    return f"sum by ({by([*ROUTER_LABELS, r.WORKER_LABEL])}) ({selector(r.RUNNING_REQUESTS, matchers)})"


def router_errors(window: str, matchers: str = "") -> str:
    """Errors/s the router answered, by route and ``error_type``."""
    return sum_rate(r.REQUEST_ERRORS, window, matchers, (*ROUTER_LABELS, "route", "error_type"))


def router_active_workers(matchers: str = "") -> str:
    """Engines the router routes to."""
    return f"sum by ({by(ROUTER_LABELS)}) ({selector(r.ACTIVE_WORKERS, matchers)})"


def router_healthy_workers(matchers: str = "") -> str:
    """Engines the router's health check finds healthy."""
    return f"sum by ({by(ROUTER_LABELS)}) ({selector(r.WORKER_HEALTH, matchers)})"
