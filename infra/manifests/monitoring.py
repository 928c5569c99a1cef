"""Monitoring objects: ServiceMonitor/PodMonitor, PrometheusRule, Grafana dashboard ConfigMaps and the
prometheus-adapter rules ConfigMap. The content comes from ``alerts/`` and ``dashboards/``."""

from __future__ import annotations

import json
from typing import Any

import yaml

from kvstack.infra.config import StackConfig
from kvstack.infra.config.sections.router import router_enabled
from kvstack.infra.manifests.names import (
    PORT_NAME,
    common_labels,
    names_of,
    router_scrape_job,
    selector_labels,
)
from kvstack.monitoring.alerts.autoscaling import prometheus_adapter_rules
from kvstack.monitoring.alerts.rules import rule_groups
from kvstack.monitoring.alerts.thresholds import AlertThresholds
from kvstack.monitoring.dashboards import DASHBOARD_UIDS, dashboard_documents

METRICS_PATH = "/metrics"
MONITORING_API = "monitoring.coreos.com/v1"
CONFIGMAP_LIMIT_BYTES = 1024 * 1024  # etcd's object limit; a dashboard must fit in one ConfigMap
ADAPTER_CONFIG_KEY = "config.yaml"
ADAPTER_ANNOTATION = "kvstack.dev/config"
ADAPTER_ANNOTATION_VALUE = "prometheus-adapter"
ADAPTER_WIRING_ANNOTATION = "kvstack.dev/adapter-wiring"
"""On the adapter rules ConfigMap: ``monitoring.adapter_wiring``, so that lint can warn on rendered files."""


def scrape_job(config: StackConfig) -> str:
    """The ``job`` label Prometheus gives the vLLM targets."""
    names = names_of(config)
    if config.monitoring.scrape == "service_monitor":
        return names.service  # a ServiceMonitor's job is the Service's name
    return f"{config.namespace}/{names.pod_monitor}"


def hpa_name(config: StackConfig) -> str:
    """The HorizontalPodAutoscaler kube-state-metrics reports (KEDA creates ``keda-hpa-<name>``)."""
    name = names_of(config).autoscaler
    return f"keda-hpa-{name}" if config.scaling.mode == "keda" else name


def effective_thresholds(config: StackConfig) -> AlertThresholds:
    """The stack's alert thresholds with the stack-derived fields filled in (unless set by hand)."""
    alerts = config.monitoring.alerts
    update: dict[str, Any] = {}
    if "max_replicas" not in alerts.model_fields_set:
        update["max_replicas"] = config.max_pods
    if "scrape_job_regex" not in alerts.model_fields_set:
        update["scrape_job_regex"] = scrape_job(config)
    if "hpa_name_regex" not in alerts.model_fields_set:
        update["hpa_name_regex"] = hpa_name(config)
    if "router_alerts" not in alerts.model_fields_set:
        update["router_alerts"] = router_enabled(config)
    if "router_job_regex" not in alerts.model_fields_set and router_enabled(config):
        update["router_job_regex"] = router_scrape_job(config)
    # model_validate, not model_copy: the filled-in values go through the same validation
    return AlertThresholds.model_validate({**alerts.model_dump(exclude_unset=True), **update})


def _labels(config: StackConfig) -> dict[str, str]:
    return {**common_labels(config), **config.monitoring.labels}


def scrape_monitor(config: StackConfig) -> dict[str, Any]:
    """A ServiceMonitor (scrapes through the Service) or a PodMonitor (scrapes each pod)."""
    mon, names = config.monitoring, names_of(config)
    endpoint = {
        "port": PORT_NAME,
        "path": METRICS_PATH,
        "interval": mon.scrape_interval,
        "scheme": "http",
    }
    selector = {"matchLabels": selector_labels(config)}
    namespaces = {"matchNames": [config.namespace]}
    if mon.scrape == "service_monitor":
        return {
            "apiVersion": MONITORING_API,
            "kind": "ServiceMonitor",
            "metadata": {
                "name": names.service_monitor,
                "namespace": config.namespace,
                "labels": _labels(config),
            },
            "spec": {"selector": selector, "namespaceSelector": namespaces, "endpoints": [endpoint]},
        }
    return {
        "apiVersion": MONITORING_API,
        "kind": "PodMonitor",
        "metadata": {"name": names.pod_monitor, "namespace": config.namespace, "labels": _labels(config)},
        "spec": {"selector": selector, "namespaceSelector": namespaces, "podMetricsEndpoints": [endpoint]},
    }


def prometheus_rule(config: StackConfig) -> dict[str, Any]:
    """The ``alerts/`` rule groups, rendered with this stack's thresholds, as a PrometheusRule."""
    thresholds = effective_thresholds(config)
    return {
        "apiVersion": MONITORING_API,
        "kind": "PrometheusRule",
        "metadata": {
            "name": names_of(config).prometheus_rule,
            "namespace": config.namespace,
            "labels": _labels(config),
        },
        "spec": rule_groups(thresholds, runbook_base_url=thresholds.runbook_base_url),
    }


def dashboard_configmaps(config: StackConfig) -> list[dict[str, Any]]:
    """One ConfigMap per dashboard, labelled for the Grafana sidecar."""
    mon = config.monitoring
    if not mon.dashboards:
        return []
    names = names_of(config)
    out = []
    for file_name, document in sorted(dashboard_documents().items()):
        text = json.dumps(document, indent=2, sort_keys=True) + "\n"
        if len(text.encode()) > CONFIGMAP_LIMIT_BYTES:
            raise ValueError(f"dashboard {file_name} is {len(text.encode())} bytes: too big for a ConfigMap")
        out.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": names.dashboard_configmap(file_name),
                    "namespace": mon.dashboards_namespace or config.namespace,
                    "labels": {**common_labels(config), **mon.dashboard_label},
                    "annotations": {"kvstack.dev/dashboard-uid": DASHBOARD_UIDS[file_name]},
                },
                "data": {file_name: text},
            }
        )
    return out


def adapter_rules_values(config: StackConfig) -> dict[str, Any] | None:
    """The rules as values of the prometheus-community/prometheus-adapter Helm chart (``rules.custom``).

    Exported as the stack output ``adapter_rules_values`` (``hpa`` mode only)::

        pulumi stack output adapter_rules_values --json > adapter-rules.json
        helm upgrade prometheus-adapter prometheus-community/prometheus-adapter -n monitoring \\
          --reuse-values -f adapter-rules.json

    ``rules.default`` is left alone: the chart's default rules publish other names and do not collide.
    """
    if config.scaling.mode != "hpa":
        return None
    return {"rules": {"custom": prometheus_adapter_rules()["rules"]}}


def adapter_configmap(config: StackConfig) -> dict[str, Any] | None:
    """prometheus-adapter's rules (``config.yaml``) publishing per-pod KV-cache usage and queue depth.

    Only for ``scaling.mode: hpa``. Nothing mounts it by itself: with ``monitoring.adapter_wiring:
    existing_configmap`` the chart's ``rules.existing`` names it (in the adapter's namespace); with
    ``helm_values`` the chart gets the same rules from the stack output (:func:`adapter_rules_values`).
    """
    if config.scaling.mode != "hpa":
        return None
    mon = config.monitoring
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": mon.adapter_configmap or names_of(config).adapter_configmap,
            "namespace": mon.adapter_namespace,
            "labels": common_labels(config),
            # lets `kvstack lint --manifests DIR` find and check it among the rendered files
            "annotations": {
                ADAPTER_ANNOTATION: ADAPTER_ANNOTATION_VALUE,
                ADAPTER_WIRING_ANNOTATION: mon.adapter_wiring,
            },
        },
        "data": {ADAPTER_CONFIG_KEY: yaml.safe_dump(prometheus_adapter_rules(), sort_keys=False)},
    }
