"""Pure manifest builders: one validated :class:`~infra.config.StackConfig` in, plain dicts out.

Nothing here imports Pulumi; the Pulumi component and ``kvstack render`` consume the same list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kvstack.infra.config import StackConfig
from kvstack.infra.manifests import autoscaling, monitoring, router, workload


@dataclass(frozen=True)
class Manifest:
    """One Kubernetes object and its role in the stack (the role names the Pulumi child resource)."""

    role: str
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def api_version(self) -> str:
        return str(self.body["apiVersion"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str | None:
        ns = self.body["metadata"].get("namespace")
        return None if ns is None else str(ns)


def build_manifests(config: StackConfig) -> list[Manifest]:
    """Every object of the stack except Secrets (see :func:`secret_manifests`), in apply order."""
    out: list[Manifest] = []

    def add(role: str, body: dict[str, Any] | None) -> None:
        if body is not None:
            out.append(Manifest(role, body))

    add("namespace", workload.namespace(config))
    add("model-cache", workload.persistent_volume_claim(config))
    add("deployment", workload.deployment(config))
    add("service", workload.service(config))
    add("pdb", workload.pod_disruption_budget(config))
    add("network-policy", workload.network_policy(config))
    add(config.monitoring.scrape.replace("_", "-"), monitoring.scrape_monitor(config))
    for role, body in router.router_manifests(config):
        add(role, body)
    add("prometheus-rule", monitoring.prometheus_rule(config))
    for body in monitoring.dashboard_configmaps(config):
        add(f"dashboard-{body['metadata']['name'].removeprefix(config.name + '-dashboard-')}", body)
    add("adapter-rules", monitoring.adapter_configmap(config))
    add("hpa" if config.scaling.mode == "hpa" else "scaled-object", autoscaling.autoscaler(config))
    return out


def secret_manifests(config: StackConfig, values: dict[str, object]) -> list[Manifest]:
    """Secrets created from the stack's Pulumi secrets; ``values`` maps hf_token/api_key to the value."""
    return [
        Manifest(which.replace("_", "-"), workload.secret(config, which, values[which]))
        for which in workload.stack_secrets(config)
    ]
