"""The panels of kvstack's dashboards: one small pure function per panel over a shared panel factory.

Every query comes from ``kvstack.contract.signals`` (the same PromQL the rules and the autoscaler use),
filtered by the dashboard variables and windowed by ``$__rate_interval``. This module imports
grafana-foundation-sdk (the ``monitoring`` extra); ``dashboards/__init__.py`` does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import prometheus, table, timeseries
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import DataSourceRef
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from kvstack.contract import kube
from kvstack.contract import metrics as m
from kvstack.contract import signals as q
from kvstack.contract.promql import by, selector

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"

# Variable-filtered matchers (variables are declared in dashboards/generate.py).
VLLM = 'namespace=~"$namespace",model_name=~"$model_name"'
VLLM_HTTP = 'namespace=~"$namespace",job=~"$job"'
HPA = 'namespace=~"$namespace",horizontalpodautoscaler=~"$hpa"'

QUANTILES = (0.5, 0.95, 0.99)
PANEL_WIDTH = 12
PANEL_HEIGHT = 8


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str
    instant: bool = False


def prometheus_target(query: Query, ref_id: str) -> prometheus.Dataquery:
    target = (
        prometheus.Dataquery()
        .expr(query.expr)
        .legend_format(query.legend)
        .ref_id(ref_id)
        .datasource(DATASOURCE)
    )
    if query.instant:
        return target.instant().format(PromQueryFormat.TABLE)
    return target.range()


def _ref_id(i: int) -> str:
    return chr(ord("A") + i)


def timeseries_panel(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    *,
    max_val: float | None = None,
    width: int = PANEL_WIDTH,
    height: int = PANEL_HEIGHT,
) -> timeseries.Panel:
    """The shared factory: a time series on the ``$datasource`` variable, min 0, legend as a table."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .min(0)
        .span(width)
        .height(height)
        .fill_opacity(10)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI))
    )
    if max_val is not None:
        panel = panel.max(max_val)
    for i, query in enumerate(queries):
        panel = panel.with_target(prometheus_target(query, _ref_id(i)))
    return panel


def _quantile_queries(histogram: str) -> list[Query]:
    return [
        Query(
            q.histogram_quantile(quantile, histogram, RATE, VLLM),
            f"p{round(quantile * 100)} {{{{model_name}}}}",
        )
        for quantile in QUANTILES
    ]


# --- Traffic -------------------------------------------------------------------------------------------


def requests_per_second() -> timeseries.Panel:
    return timeseries_panel(
        "Requests/s",
        "Requests the engine finished per second, by finish reason (stop, length, abort, error).",
        "reqps",
        [
            Query(
                q.sum_rate(m.REQUEST_SUCCESS, RATE, VLLM, ("model_name", "finished_reason")),
                "{{model_name}} {{finished_reason}}",
            )
        ],
    )


def tokens_per_second() -> timeseries.Panel:
    return timeseries_panel(
        "Tokens/s in and out",
        "Prompt tokens processed (in) and tokens generated (out) per second.",
        "suffix: tok/s",
        [
            Query(q.sum_rate(m.PROMPT_TOKENS, RATE, VLLM, ("model_name",)), "in {{model_name}}"),
            Query(q.sum_rate(m.GENERATION_TOKENS, RATE, VLLM, ("model_name",)), "out {{model_name}}"),
        ],
    )


def errors() -> timeseries.Panel:
    return timeseries_panel(
        "Errors",
        "5xx share of /v1 requests (HTTP) and share of requests the engine finished with an error.",
        "percentunit",
        [
            Query(q.http_5xx_ratio(RATE, VLLM_HTTP), "5xx {{job}}"),
            Query(q.request_error_ratio(RATE, VLLM), "engine errors {{model_name}}"),
        ],
    )


# --- Latency -------------------------------------------------------------------------------------------


def time_to_first_token() -> timeseries.Panel:
    return timeseries_panel(
        "Time to first token p50/p95/p99",
        "TTFT: queueing + prefill. Rises first when the queue builds or prompts get longer.",
        "s",
        _quantile_queries(m.TTFT),
    )


def inter_token_latency() -> timeseries.Panel:
    return timeseries_panel(
        "Inter-token latency p50/p95/p99",
        "Time between streamed tokens: grows with the running batch and with prefills interleaved in it.",
        "s",
        _quantile_queries(m.ITL),
    )


def end_to_end_latency() -> timeseries.Panel:
    return timeseries_panel(
        "End-to-end request latency p50/p95/p99",
        "From arrival to last token, including the queue.",
        "s",
        _quantile_queries(m.E2E),
    )


# --- Saturation ----------------------------------------------------------------------------------------


def running_and_waiting() -> timeseries.Panel:
    return timeseries_panel(
        "Running and waiting requests per pod",
        "Running: in the batch. Waiting: not admitted (max_num_seqs reached or no free KV blocks).",
        "short",
        [
            Query(q.requests_running_by_pod(VLLM), "running {{pod}}"),
            Query(q.requests_waiting_by_pod(VLLM), "waiting {{pod}}"),
        ],
    )


def kv_cache_usage_per_pod() -> timeseries.Panel:
    return timeseries_panel(
        "KV-cache usage per pod",
        "Share of KV blocks held by running requests (a pod's fullest engine). Near 100%: requests queue "
        "and get preempted.",
        "percentunit",
        [Query(q.kv_cache_usage_by_pod(VLLM), "{{pod}}")],
        max_val=1,
    )


def prefix_cache_hit_rate() -> timeseries.Panel:
    return timeseries_panel(
        "Prefix-cache hit rate",
        "Share of prompt tokens whose KV came from the prefix cache instead of prefill.",
        "percentunit",
        [Query(q.prefix_cache_hit_ratio(RATE, VLLM), "{{model_name}}")],
        max_val=1,
    )


def preemptions() -> timeseries.Panel:
    return timeseries_panel(
        "Preemptions/s per pod",
        "Requests evicted from the batch for lack of KV blocks and recomputed later.",
        "short",
        [Query(q.sum_rate(m.PREEMPTIONS, RATE, VLLM, q.POD_LABELS), "{{pod}}")],
    )


# --- Autoscaling ---------------------------------------------------------------------------------------


def replicas_vs_desired() -> timeseries.Panel:
    return timeseries_panel(
        "Replicas vs autoscaler's desired count",
        "vLLM pods reporting metrics against the HPA's current, desired and maximum replicas "
        "(kube-state-metrics). Desired above reporting for minutes: pods are still loading the model.",
        "short",
        [
            Query(f"sum by (namespace) ({q.replicas_reporting(VLLM)})", "vLLM pods reporting"),
            Query(f"max by (horizontalpodautoscaler) ({kube.HPA_CURRENT_REPLICAS}{{{HPA}}})", "current"),
            Query(f"max by (horizontalpodautoscaler) ({kube.HPA_DESIRED_REPLICAS}{{{HPA}}})", "desired"),
            Query(f"max by (horizontalpodautoscaler) ({kube.HPA_MAX_REPLICAS}{{{HPA}}})", "max"),
        ],
    )


def autoscaler_inputs() -> timeseries.Panel:
    return timeseries_panel(
        "Autoscaler inputs: waiting per replica, mean KV-cache usage",
        "What the HPA/KEDA act on: mean waiting requests per pod (left) and mean KV-cache usage (right).",
        "short",
        [
            Query(q.requests_waiting_per_replica(VLLM), "waiting/replica {{model_name}}"),
            Query(
                f"avg by ({by(q.MODEL_LABELS)}) ({q.kv_cache_usage_by_pod(VLLM)})",
                "KV usage {{model_name}}",
            ),
        ],
    )


# --- KV capacity ---------------------------------------------------------------------------------------

CACHE_CONFIG_LABELS = (
    "namespace",
    "pod",
    "model_name",
    "block_size",
    "num_gpu_blocks",
    "kv_cache_size_tokens",
    "kv_cache_max_concurrency",
    "gpu_memory_utilization",
    "enable_prefix_caching",
    "cache_dtype",
)


def cache_config() -> table.Panel:
    expr = f"max by ({by(CACHE_CONFIG_LABELS)}) ({selector(m.CACHE_CONFIG_INFO, VLLM)})"
    return (
        table.Panel()
        .title("PagedAttention capacity per pod")
        .description(
            f"From {m.CACHE_CONFIG_INFO}. KV tokens = num_gpu_blocks x block_size; max concurrency = KV "
            "tokens / max_model_len (requests of full length that fit at once)."
        )
        .datasource(DATASOURCE)
        .span(24)
        .height(6)
        .with_target(prometheus_target(Query(expr, "", instant=True), "A"))
    )


def waiting_by_reason() -> timeseries.Panel:
    return timeseries_panel(
        "Waiting requests by reason",
        "capacity: no free KV blocks (add replicas or KV memory); deferred: held back by the scheduler.",
        "short",
        [
            Query(
                f"sum by (namespace, pod, reason) ({selector(m.REQUESTS_WAITING_BY_REASON, VLLM)})",
                "{{pod}} {{reason}}",
            )
        ],
    )


def prompt_tokens_cached_share() -> timeseries.Panel:
    cached = q.sum_rate(m.PROMPT_TOKENS_CACHED, RATE, VLLM, ("model_name",))
    total = q.sum_rate(m.PROMPT_TOKENS, RATE, VLLM, ("model_name",))
    return timeseries_panel(
        "Prefix-cache hit rate and cached prompt share",
        "Prefix-cache hits / queries (tokens), and prompt tokens served from cache / all prompt tokens.",
        "percentunit",
        [
            Query(q.prefix_cache_hit_ratio(RATE, VLLM), "hit rate {{model_name}}"),
            Query(f"{cached}\n/\n{total}", "cached prompt share {{model_name}}"),
        ],
        max_val=1,
    )


def request_lengths() -> timeseries.Panel:
    return timeseries_panel(
        "Prompt and generation length p50/p95",
        "KV demand per request: each token holds a KV slot until the request ends.",
        "short",
        [
            Query(q.histogram_quantile(0.5, m.PROMPT_LENGTH, RATE, VLLM), "prompt p50 {{model_name}}"),
            Query(q.histogram_quantile(0.95, m.PROMPT_LENGTH, RATE, VLLM), "prompt p95 {{model_name}}"),
            Query(q.histogram_quantile(0.5, m.GENERATION_LENGTH, RATE, VLLM), "output p50 {{model_name}}"),
            Query(q.histogram_quantile(0.95, m.GENERATION_LENGTH, RATE, VLLM), "output p95 {{model_name}}"),
        ],
    )


def queue_time() -> timeseries.Panel:
    return timeseries_panel(
        "Queue time p50/p95/p99",
        "Time requests waited for admission (KV blocks or a batch slot).",
        "s",
        _quantile_queries(m.QUEUE_TIME),
    )


# --- Router --------------------------------------------------------------------------------------------

# The router's series have no model: they are picked by namespace and scrape job (its own variable).
ROUTER = 'namespace=~"$namespace",job=~"$router_job"'


def router_requests_per_engine() -> timeseries.Panel:
    return timeseries_panel(
        "Router: requests/s per engine",
        "Requests vllm-router sent to each engine (worker: the engine's URL). A cache-aware router keeps a "
        "session on one engine; the split follows the sessions, not an even share.",
        "reqps",
        [Query(q.router_requests_per_worker(RATE, ROUTER), "{{worker}}")],
    )


def router_decisions() -> timeseries.Panel:
    return timeseries_panel(
        "Router: routing decisions/s",
        "Cache-aware decisions by outcome (missing_tokens: taken without the prompt's tokens, i.e. load "
        "balancing), the engine each decision picked, and the router's attempts to get a prompt's tokens "
        "from an engine by result (preparation_rejected/_unavailable: the engines do not serve render).",
        "short",
        [
            Query(q.router_prefix_decisions(RATE, ROUTER), "{{policy}} {{outcome}}"),
            Query(q.router_policy_decisions(RATE, ROUTER), "picked {{worker}}"),
            Query(q.router_kv_routing_inputs(RATE, ROUTER), "tokens {{result}}"),
        ],
    )


def router_without_tokens() -> timeseries.Panel:
    return timeseries_panel(
        "Router: decisions without tokens",
        "Share of cache-aware decisions taken without the prompt's tokens. Near 100%: prefix routing is off "
        "and the router only balances load (start vLLM with --enable-scale-out).",
        "percentunit",
        [Query(q.router_missing_tokens_ratio(RATE, ROUTER), "{{job}} {{policy}}")],
        max_val=1,
    )


def router_in_flight() -> timeseries.Panel:
    return timeseries_panel(
        "Router: requests in flight per engine",
        "Requests the router has sent to each engine and not yet seen answered: its view of each queue.",
        "short",
        [Query(q.router_running_per_worker(ROUTER), "{{worker}}")],
    )


def router_errors() -> timeseries.Panel:
    return timeseries_panel(
        "Router: errors/s",
        "Requests the router answered with an error, by route and error type (an unknown model is a "
        "non_retryable_error; no healthy engine shows here too).",
        "reqps",
        [Query(q.router_errors(RATE, ROUTER), "{{route}} {{error_type}}")],
    )


def router_workers() -> timeseries.Panel:
    return timeseries_panel(
        "Router: engines routed to and healthy",
        "Engines the router routes to, and those its health check finds healthy. Below the replicas "
        "reporting metrics: the router does not know every engine.",
        "short",
        [
            Query(q.router_active_workers(ROUTER), "routed to {{job}}"),
            Query(q.router_healthy_workers(ROUTER), "healthy {{job}}"),
        ],
    )


def fleet_prefix_hit_ratio() -> timeseries.Panel:
    return timeseries_panel(
        "Prefix-cache hit rate: fleet and per pod",
        "The fleet's hit ratio (every pod's tokens together) and each pod's. All falling together while "
        "every pod still gets its requests: the router no longer keeps sessions on their pod.",
        "percentunit",
        [
            Query(q.prefix_cache_hit_ratio(RATE, VLLM), "fleet {{model_name}}"),
            Query(q.prefix_cache_hit_ratio(RATE, VLLM, q.POD_LABELS), "{{pod}}"),
        ],
        max_val=1,
    )


def requests_per_pod() -> timeseries.Panel:
    return timeseries_panel(
        "Requests/s per pod",
        "Requests each engine finished per second: what the pods see of the router's split.",
        "reqps",
        [Query(q.sum_rate(m.REQUEST_SUCCESS, RATE, VLLM, q.POD_LABELS), "{{pod}}")],
    )
