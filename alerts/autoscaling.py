"""Autoscaling signals: prometheus-adapter rules (HPA custom metrics) and KEDA Prometheus triggers.

Both scale on vLLM's own saturation signals: queue depth (``metrics.REQUESTS_WAITING``) and KV-cache
utilization (``metrics.KV_CACHE_USAGE``). ``docs/autoscaling.md`` defends the choice and the defaults.
Everything here is pure: config in, documents out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from kvstack.contract.kube import NAMESPACE_LABEL, POD_LABEL
from kvstack.contract.metrics import KV_CACHE_USAGE, REQUESTS_WAITING
from kvstack.contract.promql import matchers_of, number, selector, vector_selectors
from kvstack.contract.types import is_dns_label

# Custom-metric names the adapter publishes per pod (Kubernetes metric names: no colons).
KV_CACHE_METRIC = "vllm_kv_cache_usage_perc"
QUEUE_METRIC = "vllm_num_requests_waiting"

# Defaults defended in docs/autoscaling.md (infra's stack config may override them).
DEFAULT_QUEUE_TARGET = 3.0  # waiting requests per replica (GKE's guide: 3-5)
DEFAULT_KV_CACHE_TARGET = 0.8  # mean KV-cache usage per replica (0-1)
# The stabilization windows (scale-up 300 s, scale-down 600 s) are defaults of the stack config only:
# kvstack.infra.config.ScaleUpBehavior / ScaleDownBehavior.
KEDA_COOLDOWN_SECONDS = 360  # production-stack's KEDA cooldownPeriod

_ADAPTER_SOURCES: dict[str, tuple[str, str]] = {
    # published name: (vLLM series, aggregation over a pod's engines)
    QUEUE_METRIC: (REQUESTS_WAITING, "sum"),
    KV_CACHE_METRIC: (KV_CACHE_USAGE, "max"),
}


def prometheus_adapter_rules() -> dict[str, Any]:
    """The prometheus-adapter config document (``rules:``) publishing both signals as per-pod metrics.

    An HPA then uses them as ``type: Pods`` metrics with an ``averageValue`` target
    (e.g. ``vllm_num_requests_waiting`` at 3, ``vllm_kv_cache_usage_perc`` at ``800m``).
    """
    rules: list[dict[str, Any]] = []
    for published, (series, aggregation) in _ADAPTER_SOURCES.items():
        rules.append(
            {
                "seriesQuery": f'{series}{{namespace!="",pod!=""}}',
                "resources": {
                    "overrides": {
                        "namespace": {"resource": "namespace"},
                        "pod": {"resource": "pod"},
                    }
                },
                "name": {"matches": f"^{series}$", "as": published},
                "metricsQuery": f"{aggregation}(<<.Series>>{{<<.LabelMatchers>>}}) by (<<.GroupBy>>)",
            }
        )
    return {"rules": rules}


def adapter_series_name(rule: dict[str, Any]) -> str:
    """The Prometheus series a rule's ``seriesQuery`` discovers (what the adapter passes as ``.Series``)."""
    selectors = vector_selectors(str(rule["seriesQuery"]))
    if not selectors or not selectors[0].name:
        raise ValueError(f"seriesQuery has no metric name: {rule['seriesQuery']!r}")
    return selectors[0].name


def render_adapter_query(rule: dict[str, Any], *, namespace: str, pod: str | Sequence[str]) -> str:
    """Fill a rule's ``metricsQuery`` template as prometheus-adapter does for a pods query in a namespace.

    Mirrors the adapter's ``metricsQuery.Build``: ``.LabelMatchers`` is ``namespace="ns",pod="p"`` for one
    pod and ``pod=~"p1|p2"`` for several; ``.GroupBy`` is the resource label, ``pod``.
    """
    pods = [pod] if isinstance(pod, str) else list(pod)
    if not pods:
        raise ValueError("at least one pod is needed")
    pod_matcher = f'pod="{pods[0]}"' if len(pods) == 1 else f'pod=~"{"|".join(pods)}"'
    values = {
        "Series": adapter_series_name(rule),
        "LabelMatchers": f'namespace="{namespace}",{pod_matcher}',
        "GroupBy": "pod",
    }
    template = str(rule["metricsQuery"])

    def fill(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in values:
            raise ValueError(f"unsupported adapter template field <<.{key}>> in {template!r}")
        return values[key]

    return re.sub(r"<<\s*\.(\w+)\s*>>", fill, template)


def _dns_label(kind: str, value: str) -> str:
    if not is_dns_label(value):
        raise ValueError(
            f"{kind} must be a Kubernetes DNS label ([a-z0-9-], starting with a letter, at most 63), "
            f"got {value!r}"
        )
    return value


def workload_pod_regex(app_label: str) -> str:
    """Pods of a Deployment (``<name>-<rs hash>-<pod hash>``) or StatefulSet (``<name>-<ordinal>``).

    A DNS label has no regex metacharacters, so the name goes in as is.
    """
    return f"{_dns_label('app_label', app_label)}-[a-z0-9]+(-[a-z0-9]+)?"


def workload_matchers(*, namespace: str, app_label: str) -> str:
    """Selects a workload's vLLM series by the ``namespace`` and ``pod`` labels every Kubernetes scrape
    attaches (PodMonitor and ServiceMonitor alike), so no ``podTargetLabels`` relabeling is needed."""
    ns = _dns_label("namespace", namespace)
    return matchers_of(f'{NAMESPACE_LABEL}="{ns}"', f'{POD_LABEL}=~"{workload_pod_regex(app_label)}"')


def keda_queue_query(*, namespace: str, app_label: str) -> str:
    """Total waiting requests of the workload; KEDA's AverageValue divides it by the target per replica."""
    return f"sum({selector(REQUESTS_WAITING, workload_matchers(namespace=namespace, app_label=app_label))})"


def keda_kv_cache_query(*, namespace: str, app_label: str) -> str:
    """Sum over the workload's pods of each pod's KV-cache usage (its fullest engine)."""
    sel = selector(KV_CACHE_USAGE, workload_matchers(namespace=namespace, app_label=app_label))
    return f"sum(max by (pod) ({sel}))"


def keda_triggers(
    *,
    prometheus_address: str,
    namespace: str,
    app_label: str,
    queue_target: float,
    kv_cache_target: float,
) -> list[dict[str, Any]]:
    """KEDA ``type: prometheus`` triggers for a ScaledObject: queue depth and KV-cache utilization.

    Each query returns the workload's total; with ``metricType: AverageValue`` the HPA wants
    ``ceil(total / threshold)`` replicas, so the threshold is the per-replica target. Pods still loading
    the model have no series and do not dilute the total. ``ignoreNullValues: "false"`` makes an empty
    result (metric renamed, Prometheus down) an error, so KEDA holds or uses the ScaledObject's fallback
    instead of reading 0 and scaling down.
    """
    if queue_target <= 0:
        raise ValueError(f"queue_target must be > 0, got {queue_target}")
    if not 0 < kv_cache_target <= 1:
        raise ValueError(f"kv_cache_target must be in (0, 1], got {kv_cache_target}")
    queries = [
        ("vllm-queue-depth", keda_queue_query(namespace=namespace, app_label=app_label), queue_target),
        (
            "vllm-kv-cache-usage",
            keda_kv_cache_query(namespace=namespace, app_label=app_label),
            kv_cache_target,
        ),
    ]
    return [
        {
            "type": "prometheus",
            "name": name,
            "metricType": "AverageValue",
            "metadata": {
                "serverAddress": prometheus_address,
                "query": query,
                "threshold": number(target),
                "ignoreNullValues": "false",
            },
        }
        for name, query, target in queries
    ]
