"""The router tier: vllm-router in front of the engine pods, discovering them through the Kubernetes API.

ServiceAccount + Role + RoleBinding (get/list/watch pods in the stack's namespace, nothing else), a
Deployment, a Service (the stack's ``endpoint``), a PDB, a NetworkPolicy (clients and Prometheus in;
the engine's own policy then admits only router pods and Prometheus) and a ServiceMonitor/PodMonitor
for the router's Prometheus port. Every flag, port and path is vllm-router 0.1.17's (see
:mod:`kvstack.infra.config.sections.router`). Nothing here imports Pulumi.
"""

from __future__ import annotations

from typing import Any

from kvstack.infra.config import StackConfig
from kvstack.infra.config.sections.router import router_enabled
from kvstack.infra.manifests.monitoring import MONITORING_API
from kvstack.infra.manifests.names import (
    PORT_NAME,
    ROUTER_CONTAINER,
    ROUTER_LIVENESS_PATH,
    ROUTER_METRICS_PATH,
    ROUTER_METRICS_PORT_NAME,
    ROUTER_READINESS_PATH,
    names_of,
    router_labels,
    router_selector_labels,
    selector_labels,
)
from kvstack.infra.manifests.workload import container_security_context, network_peer, prometheus_peer

TMP_MOUNT = "/tmp"
DISCOVERY_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
]
"""All that service discovery needs: vllm-router watches pods (kube-rs watcher: list + watch) in one
namespace and filters them by the selector itself."""


def _meta(config: StackConfig, **extra: Any) -> dict[str, Any]:
    return {
        "name": names_of(config).router,
        "namespace": config.namespace,
        "labels": router_labels(config),
        **extra,
    }


def router_args(config: StackConfig) -> list[str]:
    """vllm-router's arguments: discovery of this stack's engine pods, the policy, ports bound for a pod."""
    router = config.router
    selector = [f"{k}={v}" for k, v in selector_labels(config).items()]
    return [
        "--host",
        "0.0.0.0",
        "--port",
        str(router.port),
        "--policy",
        router.policy,
        "--service-discovery",
        "--selector",
        *selector,
        "--service-discovery-namespace",
        config.namespace,
        "--service-discovery-port",
        str(config.engine.port),
        # the exporter is on by default but bound to 127.0.0.1: Prometheus could not scrape it
        "--prometheus-host",
        "0.0.0.0",
        "--prometheus-port",
        str(router.metrics_port),
        "--health-check-interval-secs",
        str(router.health_check_interval_secs),
        "--request-timeout-secs",
        str(router.request_timeout_secs),
        *router.extra_args,
    ]


def service_account(config: StackConfig) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(config),
        # discovery needs the token (the pod spec mounts it; nothing else of this namespace does)
        "automountServiceAccountToken": True,
    }


def role(config: StackConfig) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(config),
        "rules": [dict(rule) for rule in DISCOVERY_RULES],
    }


def role_binding(config: StackConfig) -> dict[str, Any]:
    name = names_of(config).router
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(config),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": config.namespace}],
    }


def _probe(path: str, *, period: int, failure_threshold: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": PORT_NAME, "scheme": "HTTP"},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failure_threshold,
        "successThreshold": 1,
    }


def _resources(config: StackConfig) -> dict[str, Any]:
    res = config.router.resources
    requests = {"cpu": res.cpu_request, "memory": res.memory_request}
    limits: dict[str, str] = {}
    if res.memory_limit:
        limits["memory"] = res.memory_limit
    if res.cpu_limit:
        limits["cpu"] = res.cpu_limit
    return {"requests": requests, "limits": limits} if limits else {"requests": requests}


def deployment(config: StackConfig) -> dict[str, Any]:
    router, sec = config.router, config.security
    assert router.image is not None, "router_cross_checks requires router.image when the router is on"
    container: dict[str, Any] = {
        "name": ROUTER_CONTAINER,
        "image": router.image.reference,
        "imagePullPolicy": router.image.pull_policy,
        "command": ["vllm-router"],
        "args": router_args(config),
        "ports": [
            {"name": PORT_NAME, "containerPort": router.port, "protocol": "TCP"},
            {"name": ROUTER_METRICS_PORT_NAME, "containerPort": router.metrics_port, "protocol": "TCP"},
        ],
        "env": [
            {"name": "HOME", "value": TMP_MOUNT},
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
        ],
        "resources": _resources(config),
        "volumeMounts": [{"name": "tmp", "mountPath": TMP_MOUNT}],
        # /liveness answers as soon as the server listens; /readiness only once an engine is healthy,
        # so a router with no engine to send to leaves the Service instead of answering 503s
        "startupProbe": _probe(ROUTER_LIVENESS_PATH, period=2, failure_threshold=30),
        "readinessProbe": _probe(ROUTER_READINESS_PATH, period=5, failure_threshold=2),
        "livenessProbe": _probe(ROUTER_LIVENESS_PATH, period=10, failure_threshold=3),
        # keep serving while the endpoints drop the pod; needs no shell in the image
        "lifecycle": {"preStop": {"sleep": {"seconds": router.pre_stop_sleep_seconds}}},
        "securityContext": container_security_context(config),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod_spec: dict[str, Any] = {
        "serviceAccountName": names_of(config).router,
        "automountServiceAccountToken": True,
        # a Service named vllm-router would inject VLLM_ROUTER_* variables, the router's own prefix
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": router.termination_grace_period_seconds,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": sec.run_as_user,
            "runAsGroup": sec.run_as_group,
            "fsGroup": sec.fs_group,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
        # one router per node where possible: losing a node must not take the whole tier
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": router_selector_labels(config)},
            }
        ],
    }
    if router.node_selector:
        pod_spec["nodeSelector"] = dict(router.node_selector)
    if router.priority_class_name:
        pod_spec["priorityClassName"] = router.priority_class_name
    if router.image.pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in router.image.pull_secrets]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(config),
        "spec": {
            "replicas": router.replicas,
            "revisionHistoryLimit": 5,
            # a router is Ready only once an engine is: on a first deploy that waits for a model load
            "progressDeadlineSeconds": config.probes.model_load_budget_seconds + 300,
            "selector": {"matchLabels": router_selector_labels(config)},
            # router pods are cheap: surge first, never drop below the configured count
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": router_labels(config)}, "spec": pod_spec},
        },
    }


def service(config: StackConfig) -> dict[str, Any]:
    router = config.router
    spec: dict[str, Any] = {
        "type": "ClusterIP",
        "selector": router_selector_labels(config),
        "ports": [
            {
                "name": PORT_NAME,
                "port": router.port,
                "targetPort": PORT_NAME,
                "protocol": "TCP",
                "appProtocol": "http",
            },
            {
                "name": ROUTER_METRICS_PORT_NAME,
                "port": router.metrics_port,
                "targetPort": ROUTER_METRICS_PORT_NAME,
                "protocol": "TCP",
                "appProtocol": "http",
            },
        ],
        "sessionAffinity": router.session_affinity,
    }
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(config), "spec": spec}


def pod_disruption_budget(config: StackConfig) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(config),
        "spec": {
            "maxUnavailable": config.router.pdb_max_unavailable,
            "selector": {"matchLabels": router_selector_labels(config)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def network_policy(config: StackConfig) -> dict[str, Any] | None:
    """Clients (``network.allowed_sources``) reach the router's API port; Prometheus its metrics port."""
    net = config.network
    if not net.enabled:
        return None
    clients = [network_peer(p) for p in net.allowed_sources] or [{"podSelector": {}}]
    ingress: list[dict[str, Any]] = [{"from": clients, "ports": [{"protocol": "TCP", "port": PORT_NAME}]}]
    if net.allow_prometheus:
        metrics_port = {"protocol": "TCP", "port": ROUTER_METRICS_PORT_NAME}
        ingress.append({"from": [prometheus_peer(config)], "ports": [metrics_port]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(config),
        "spec": {
            "podSelector": {"matchLabels": router_selector_labels(config)},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }


def scrape_monitor(config: StackConfig) -> dict[str, Any]:
    """The router's metrics port, scraped like the engine's (``monitoring.scrape``)."""
    mon = config.monitoring
    endpoint = {
        "port": ROUTER_METRICS_PORT_NAME,
        "path": ROUTER_METRICS_PATH,
        "interval": mon.scrape_interval,
        "scheme": "http",
    }
    meta = {**_meta(config), "labels": {**router_labels(config), **mon.labels}}
    selector = {"matchLabels": router_selector_labels(config)}
    namespaces = {"matchNames": [config.namespace]}
    if mon.scrape == "service_monitor":
        return {
            "apiVersion": MONITORING_API,
            "kind": "ServiceMonitor",
            "metadata": meta,
            "spec": {"selector": selector, "namespaceSelector": namespaces, "endpoints": [endpoint]},
        }
    return {
        "apiVersion": MONITORING_API,
        "kind": "PodMonitor",
        "metadata": meta,
        "spec": {"selector": selector, "namespaceSelector": namespaces, "podMetricsEndpoints": [endpoint]},
    }


def router_manifests(config: StackConfig) -> list[tuple[str, dict[str, Any]]]:
    """``(role, body)`` of every router-tier object in apply order; empty when the router is off."""
    if not router_enabled(config):
        return []
    out: list[tuple[str, dict[str, Any] | None]] = [
        ("router-service-account", service_account(config)),
        ("router-role", role(config)),
        ("router-role-binding", role_binding(config)),
        ("router-deployment", deployment(config)),
        ("router-service", service(config)),
        ("router-pdb", pod_disruption_budget(config)),
        ("router-network-policy", network_policy(config)),
        (f"router-{config.monitoring.scrape.replace('_', '-')}", scrape_monitor(config)),
    ]
    return [(r, body) for r, body in out if body is not None]
