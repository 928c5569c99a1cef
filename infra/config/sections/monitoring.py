"""``kvstack:monitoring``: scrape config, alert rules, dashboards and prometheus-adapter rules."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlparse

from pydantic import Field, field_validator

from kvstack.infra.config.types import Duration, K8sName, LabelMap, Strict
from kvstack.monitoring.alerts.thresholds import AlertThresholds

PLACEHOLDER_TLD = "invalid"
"""The alerts' default ``runbook_base_url`` is on ``kvstack.invalid``: ``.invalid`` is reserved (RFC 2606)
and never resolves, so a runbook link there is a placeholder that a real stack must replace."""


def is_placeholder_url(url: str) -> bool:
    host = (urlparse(url).hostname or "").rstrip(".")
    return host == PLACEHOLDER_TLD or host.endswith(f".{PLACEHOLDER_TLD}")


class MonitoringSpec(Strict):
    """Scrape config, alert rules, dashboards and prometheus-adapter rules."""

    scrape: Literal["service_monitor", "pod_monitor"] = "service_monitor"
    labels: LabelMap = Field(
        default_factory=lambda: {"release": "kube-prometheus-stack"},
        description="labels the Prometheus selects ServiceMonitors/PodMonitors/PrometheusRules by",
    )
    scrape_interval: Duration = "15s"
    prometheus_namespace: K8sName = "monitoring"
    prometheus_pod_labels: LabelMap = Field(
        default_factory=lambda: {"app.kubernetes.io/name": "prometheus"},
        description="pods allowed to scrape /metrics through the NetworkPolicy",
    )
    dashboards: bool = True
    dashboard_label: LabelMap = Field(default_factory=lambda: {"grafana_dashboard": "1"})
    dashboards_namespace: K8sName | None = Field(default=None, description="default: the stack's namespace")
    adapter_namespace: K8sName = "monitoring"
    adapter_configmap: K8sName | None = Field(default=None, description="default: <name>-adapter-rules")
    adapter_wiring: Literal["undeclared", "helm_values", "existing_configmap"] = Field(
        default="undeclared",
        description="how prometheus-adapter gets the rules (hpa mode): helm_values (the stack output "
        "adapter_rules_values as the chart's rules.custom), existing_configmap (the chart's rules.existing "
        "names the stack's ConfigMap), undeclared (kvstack lint warns)",
    )
    alerts: AlertThresholds = AlertThresholds()

    @field_validator("prometheus_pod_labels")
    @classmethod
    def _names_prometheus(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError(
                "an empty selector admits every pod of monitoring.prometheus_namespace to the API port; "
                "give Prometheus's pod labels (e.g. {app.kubernetes.io/name: prometheus})"
            )
        return value

    @field_validator("dashboard_label")
    @classmethod
    def _one_label(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("the Grafana sidecar needs a label to find dashboard ConfigMaps")
        return value
