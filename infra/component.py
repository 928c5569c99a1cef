"""``VllmService``: the Pulumi component that turns the pure manifests into pulumi-kubernetes resources.

No decisions are made here: every value comes from :func:`infra.stack.build_stack`. Children get
``parent=self`` and logical names ``<component name>-<role>``; outputs are registered last.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from kvstack.infra.manifests import Manifest
from kvstack.infra.stack import StackPlan

TYPE_TOKEN = "kvstack:index:VllmService"
ENGINE_DEPLOYMENT_ROLE = "deployment"
_POD_PREREQUISITES = frozenset({"Secret", "PersistentVolumeClaim", "ServiceAccount", "Role", "RoleBinding"})

Factory = Callable[[str, dict[str, Any], pulumi.ResourceOptions], pulumi.CustomResource]


def _deployment(name: str, body: dict[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    return k8s.apps.v1.Deployment(name, metadata=body["metadata"], spec=body["spec"], opts=opts)


def _service(name: str, body: dict[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    return k8s.core.v1.Service(name, metadata=body["metadata"], spec=body["spec"], opts=opts)


def _namespace(name: str, body: dict[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    return k8s.core.v1.Namespace(name, metadata=body["metadata"], opts=opts)


def _pvc(name: str, body: dict[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    return k8s.core.v1.PersistentVolumeClaim(name, metadata=body["metadata"], spec=body["spec"], opts=opts)


def _config_map(name: str, body: dict[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    return k8s.core.v1.ConfigMap(name, metadata=body["metadata"], data=body["data"], opts=opts)


def _secret(name: str, body: dict[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    return k8s.core.v1.Secret(
        name, metadata=body["metadata"], type=body["type"], string_data=body["stringData"], opts=opts
    )


def _pdb(name: str, body: dict[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    return k8s.policy.v1.PodDisruptionBudget(name, metadata=body["metadata"], spec=body["spec"], opts=opts)


def _network_policy(name: str, body: dict[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    return k8s.networking.v1.NetworkPolicy(name, metadata=body["metadata"], spec=body["spec"], opts=opts)


def _service_account(name: str, body: dict[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    return k8s.core.v1.ServiceAccount(
        name,
        metadata=body["metadata"],
        automount_service_account_token=body.get("automountServiceAccountToken"),
        opts=opts,
    )


def _role(name: str, body: dict[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    return k8s.rbac.v1.Role(name, metadata=body["metadata"], rules=body["rules"], opts=opts)


def _role_binding(name: str, body: dict[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    return k8s.rbac.v1.RoleBinding(
        name, metadata=body["metadata"], role_ref=body["roleRef"], subjects=body["subjects"], opts=opts
    )


def _hpa(name: str, body: dict[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    return k8s.autoscaling.v2.HorizontalPodAutoscaler(
        name, metadata=body["metadata"], spec=body["spec"], opts=opts
    )


def _custom(name: str, body: dict[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    return k8s.apiextensions.CustomResource(
        name,
        api_version=body["apiVersion"],
        kind=body["kind"],
        metadata=body["metadata"],
        spec=body["spec"],
        opts=opts,
    )


FACTORIES: dict[tuple[str, str], Factory] = {
    ("apps/v1", "Deployment"): _deployment,
    ("v1", "Service"): _service,
    ("v1", "Namespace"): _namespace,
    ("v1", "PersistentVolumeClaim"): _pvc,
    ("v1", "ConfigMap"): _config_map,
    ("v1", "Secret"): _secret,
    ("v1", "ServiceAccount"): _service_account,
    ("rbac.authorization.k8s.io/v1", "Role"): _role,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): _role_binding,
    ("policy/v1", "PodDisruptionBudget"): _pdb,
    ("networking.k8s.io/v1", "NetworkPolicy"): _network_policy,
    ("autoscaling/v2", "HorizontalPodAutoscaler"): _hpa,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _custom,
    ("monitoring.coreos.com/v1", "PodMonitor"): _custom,
    ("monitoring.coreos.com/v1", "PrometheusRule"): _custom,
    ("keda.sh/v1alpha1", "ScaledObject"): _custom,
}


class VllmService(pulumi.ComponentResource):
    """vLLM on Kubernetes: workload, Service, PDB, NetworkPolicy, monitoring, autoscaler, router tier."""

    endpoint: pulumi.Output[str]
    engine_endpoint: pulumi.Output[str]
    completions_url: pulumi.Output[str]
    metrics_url: pulumi.Output[str]
    namespace: pulumi.Output[str]
    served_model_name: pulumi.Output[str]
    resource_names: pulumi.Output[dict[str, str]]

    def __init__(
        self,
        name: str,
        plan: StackPlan,
        secrets: Sequence[Manifest] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        self.children: dict[str, pulumi.CustomResource] = {}
        base: list[pulumi.Resource] = []
        ordered = [m for m in plan.manifests if m.kind == "Namespace"] + list(secrets)
        ordered += [m for m in plan.manifests if m.kind != "Namespace"]
        for manifest in ordered:
            depends = list(base)
            if manifest.kind == "Deployment":
                # the pods mount the claim, read the Secrets, run as the router's ServiceAccount (with its
                # Role bound): create those first
                depends += [
                    child
                    for m in ordered
                    if m.kind in _POD_PREREQUISITES and (child := self.children.get(m.role)) is not None
                ]
            child_opts = pulumi.ResourceOptions(
                parent=self,
                depends_on=depends,
                # the autoscaler owns the engine's spec.replicas once it runs; don't fight it on `pulumi up`
                ignore_changes=["spec.replicas"]
                if manifest.role == ENGINE_DEPLOYMENT_ROLE and plan.config.autoscaled
                else None,
            )
            factory = FACTORIES[(manifest.api_version, manifest.kind)]
            child = factory(f"{name}-{manifest.role}", manifest.body, child_opts)
            self.children[manifest.role] = child
            if manifest.kind == "Namespace":
                base.append(child)

        outputs = plan.outputs
        self.endpoint = pulumi.Output.from_input(str(outputs["endpoint"]))
        self.engine_endpoint = pulumi.Output.from_input(str(outputs["engine_endpoint"]))
        self.completions_url = pulumi.Output.from_input(str(outputs["completions_url"]))
        self.metrics_url = pulumi.Output.from_input(str(outputs["metrics_url"]))
        self.namespace = pulumi.Output.from_input(str(outputs["namespace"]))
        self.served_model_name = pulumi.Output.from_input(str(outputs["served_model_name"]))
        self.resource_names = _names_of(self.children, ordered)
        self.stack_outputs: dict[str, Any] = {**outputs, "resource_names": self.resource_names}
        self.register_outputs(self.stack_outputs)


def _names_of(
    children: Mapping[str, pulumi.CustomResource], manifests: Sequence[Manifest]
) -> pulumi.Output[dict[str, str]]:
    """``role -> Kind/name`` read back from the created resources (so the names are what was applied)."""
    kinds = {m.role: m.kind for m in manifests}

    def one(role: str) -> pulumi.Output[str]:
        meta: pulumi.Output[Any] = children[role].metadata  # type: ignore[attr-defined]
        return meta.apply(lambda m: f"{kinds[role]}/{m.name if hasattr(m, 'name') else m['name']}")

    pairs = {role: one(role) for role in children}
    return pulumi.Output.all(**pairs).apply(dict)
