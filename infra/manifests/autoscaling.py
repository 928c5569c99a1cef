"""The autoscaler: an autoscaling/v2 HPA on prometheus-adapter's per-pod metrics, or a KEDA ScaledObject."""

from __future__ import annotations

from typing import Any

from kvstack.infra.config import ScaleBehavior, StackConfig
from kvstack.infra.manifests.names import common_labels, names_of
from kvstack.monitoring.alerts.autoscaling import KV_CACHE_METRIC, QUEUE_METRIC, keda_triggers


def quantity(value: float) -> str:
    """A Kubernetes quantity: ``3`` -> ``"3"``, ``0.8`` -> ``"800m"``."""
    if float(value).is_integer():
        return str(int(value))
    return f"{round(value * 1000)}m"


def _rule(b: ScaleBehavior) -> dict[str, Any]:
    return {
        "stabilizationWindowSeconds": b.stabilization_window_seconds,
        "selectPolicy": "Max",
        "policies": [{"type": "Pods", "value": b.pods, "periodSeconds": b.period_seconds}],
    }


def behavior(config: StackConfig) -> dict[str, Any]:
    """Explicit scale-up/scale-down: GPU pods take minutes to become Ready, so both directions are damped."""
    return {"scaleUp": _rule(config.scaling.scale_up), "scaleDown": _rule(config.scaling.scale_down)}


def _target_ref(config: StackConfig) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": names_of(config).deployment}


def horizontal_pod_autoscaler(config: StackConfig) -> dict[str, Any]:
    scaling = config.scaling

    def pods_metric(name: str, target: float) -> dict[str, Any]:
        return {
            "type": "Pods",
            "pods": {
                "metric": {"name": name},
                "target": {"type": "AverageValue", "averageValue": quantity(target)},
            },
        }

    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": names_of(config).autoscaler,
            "namespace": config.namespace,
            "labels": common_labels(config),
        },
        "spec": {
            "scaleTargetRef": _target_ref(config),
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                pods_metric(QUEUE_METRIC, scaling.queue_target),
                pods_metric(KV_CACHE_METRIC, scaling.kv_cache_target),
            ],
            "behavior": behavior(config),
        },
    }


FALLBACK_METRIC_TYPE = "AverageValue"
"""KEDA applies ``spec.fallback`` only to triggers of this metricType (cpu/memory triggers never)."""


def fallback(config: StackConfig, triggers: list[dict[str, Any]]) -> dict[str, Any] | None:
    """``spec.fallback``: after ``failure_threshold`` failed polls (series absent while pods load, Prometheus
    down), KEDA holds ``fallback_replicas`` instead of erroring. None when disabled."""
    spec = config.scaling.keda_fallback
    if not spec.enabled:
        return None
    for trigger in triggers:
        if trigger.get("metricType", FALLBACK_METRIC_TYPE) != FALLBACK_METRIC_TYPE or trigger.get("type") in {
            "cpu",
            "memory",
        }:
            raise ValueError(
                f"KEDA fallback needs metricType {FALLBACK_METRIC_TYPE} on every trigger; "
                f"trigger {trigger.get('name')!r} has {trigger.get('metricType')!r} ({trigger.get('type')})"
            )
    return {"failureThreshold": spec.failure_threshold, "replicas": config.scaling.fallback_replicas}


def scaled_object(config: StackConfig) -> dict[str, Any]:
    scaling = config.scaling
    triggers = keda_triggers(
        prometheus_address=scaling.prometheus_address,
        namespace=config.namespace,
        app_label=names_of(config).deployment,
        queue_target=scaling.queue_target,
        kv_cache_target=scaling.kv_cache_target,
    )
    spec: dict[str, Any] = {
        "scaleTargetRef": _target_ref(config),
        "minReplicaCount": scaling.min_replicas,
        "maxReplicaCount": scaling.max_replicas,
        "pollingInterval": scaling.keda_polling_interval_seconds,
        "cooldownPeriod": scaling.keda_cooldown_period_seconds,
        "advanced": {"horizontalPodAutoscalerConfig": {"behavior": behavior(config)}},
    }
    fb = fallback(config, triggers)
    if fb is not None:
        spec["fallback"] = fb
    spec["triggers"] = triggers
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {
            "name": names_of(config).autoscaler,
            "namespace": config.namespace,
            "labels": common_labels(config),
        },
        "spec": spec,
    }


def autoscaler(config: StackConfig) -> dict[str, Any] | None:
    if config.scaling.mode == "hpa":
        return horizontal_pod_autoscaler(config)
    if config.scaling.mode == "keda":
        return scaled_object(config)
    return None
