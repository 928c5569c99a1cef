"""The pure manifest builders: schema-valid for Kubernetes 1.30/1.34 and the CRDs, and right in content."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest
import yaml

from kvstack.infra.config import StackConfig
from kvstack.infra.manifests import build_manifests
from kvstack.infra.manifests.autoscaling import quantity
from kvstack.infra.manifests.monitoring import effective_thresholds
from kvstack.infra.manifests.names import Names, NameTooLongError
from kvstack.infra.schema import validate, validate_adapter_config, validate_all
from kvstack.monitoring.alerts.autoscaling import (
    KV_CACHE_METRIC,
    QUEUE_METRIC,
    keda_triggers,
    prometheus_adapter_rules,
)
from kvstack.monitoring.alerts.rules import rule_groups
from kvstack.monitoring.dashboards import DASHBOARD_UIDS, dashboard_documents
from tests.infra.infra_stacks import EXAMPLE_STACKS, example_config, example_plan

KUBE_VERSIONS = ("1.30", "1.34")


def _by_kind(stack: str) -> dict[str, list[dict[str, Any]]]:
    """The engine's objects by kind (the router tier's are tested in test_router.py)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for m in example_plan(stack).manifests:
        if not m.role.startswith("router-"):
            out.setdefault(m.kind, []).append(m.body)
    return out


def _one(stack: str, kind: str) -> dict[str, Any]:
    (body,) = _by_kind(stack)[kind]
    return body


def _container(stack: str) -> dict[str, Any]:
    (container,) = _one(stack, "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(container)


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_every_manifest_is_schema_valid(stack: str, version: str) -> None:
    bodies = [m.body for m in example_plan(stack).manifests]
    assert validate_all(bodies, (version,)) == []
    kinds = {b["kind"] for b in bodies}
    # the CRD-backed objects are among them (checked against the cloudcoil CRD models)
    assert kinds & {"ServiceMonitor", "PodMonitor"}
    assert "PrometheusRule" in kinds


def test_schema_validation_catches_unknown_fields() -> None:
    deployment = copy.deepcopy(_one("prod", "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["gpus"] = 1
    problems = validate(deployment, KUBE_VERSIONS)
    assert {p.against for p in problems} == {"kubernetes 1.30", "kubernetes 1.34"}
    assert "gpus" in problems[0].message

    monitor = copy.deepcopy(_one("prod", "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["scrapeEvery"] = "15s"
    (problem,) = validate(monitor)
    assert problem.against == "CRD ServiceMonitor"
    assert "spec.endpoints.0.scrapeEvery: field not in the CRD schema" in problem.message

    scaled = copy.deepcopy(_one("dev", "ScaledObject"))
    scaled["spec"]["minReplicaCount"] = "one"
    assert validate(scaled)

    rule = copy.deepcopy(_one("prod", "PrometheusRule"))
    rule["spec"]["groups"][0]["rules"][0]["for"] = 5
    assert validate(rule)


def test_adapter_config_shape_is_checked() -> None:
    (adapter,) = [b for b in _by_kind("prod")["ConfigMap"] if "config.yaml" in b["data"]]
    document = yaml.safe_load(adapter["data"]["config.yaml"])
    assert document == prometheus_adapter_rules()
    assert validate_adapter_config(document) == []
    broken = copy.deepcopy(document)
    del broken["rules"][0]["metricsQuery"]
    broken["rules"][1]["seriesQuerry"] = "x"
    assert validate_adapter_config(broken) == [
        "rules[0].metricsQuery: required string",
        "rules[1].seriesQuerry: unknown key",
    ]
    adapter = copy.deepcopy(adapter)
    adapter["data"]["config.yaml"] = yaml.safe_dump(broken)
    assert [p.against for p in validate(adapter)] == ["prometheus-adapter config"] * 2


def _flag(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_deployment_runs_vllm_as_configured(stack: str) -> None:
    config = example_config(stack)
    deployment = _one(stack, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = _container(stack)
    args = container["args"]
    assert _flag(args, "--model") == config.model.id
    assert _flag(args, "--served-model-name") == config.model.served_model_name
    assert _flag(args, "--host") == "0.0.0.0"
    assert _flag(args, "--port") == str(config.engine.port)
    assert _flag(args, "--max-model-len") == str(config.engine.max_model_len)
    assert float(_flag(args, "--gpu-memory-utilization")) == config.engine.gpu_memory_utilization
    assert _flag(args, "--max-num-seqs") == str(config.engine.max_num_seqs)
    assert ("--enable-prefix-caching" in args) == config.engine.enable_prefix_caching
    gpu = config.gpu.resource_name
    assert (
        container["resources"]["limits"][gpu]
        == container["resources"]["requests"][gpu]
        == str(config.gpu.count)
    )
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["shm"]["emptyDir"]["medium"] == "Memory"
    assert volumes["model-cache"]["persistentVolumeClaim"]["claimName"] == "vllm-model-cache"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["shm"] == "/dev/shm"
    assert mounts["model-cache"] == config.storage.mount_path
    env = {e["name"]: e for e in container["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "token"}
    assert env["HF_HOME"]["value"].startswith(config.storage.mount_path)
    assert pod["enableServiceLinks"] is False
    assert deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"] == config.name


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_probes_drain_and_rollout_suit_a_gpu_server(stack: str) -> None:
    config = example_config(stack)
    deployment = _one(stack, "Deployment")
    container = _container(stack)
    startup = container["startupProbe"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http", "scheme": "HTTP"}
    # the startup probe covers the whole model-load budget
    budget = config.probes.model_load_budget_seconds
    assert startup["periodSeconds"] * startup["failureThreshold"] >= budget
    assert startup["failureThreshold"] == math.ceil(budget / config.probes.startup_period_seconds)
    assert container["livenessProbe"]["failureThreshold"] >= 3
    sleep = container["lifecycle"]["preStop"]["exec"]["command"][-1]
    assert sleep == f"sleep {config.rollout.pre_stop_sleep_seconds}"
    assert (
        deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        > config.rollout.pre_stop_sleep_seconds
    )
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/tmp"}  # writable caches


def test_gpu_placement_follows_the_product() -> None:
    pod = _one("prod", "Deployment")["spec"]["template"]["spec"]
    term = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]
    assert term["matchExpressions"] == [
        {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-H100-80GB-HBM3"]}
    ]
    assert pod["runtimeClassName"] == "nvidia"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]


def test_service_exposes_the_api_port() -> None:
    service = _one("prod", "Service")
    assert service["spec"]["type"] == "ClusterIP"
    (port,) = service["spec"]["ports"]
    assert port == {
        "name": "http",
        "port": 8000,
        "targetPort": "http",
        "protocol": "TCP",
        "appProtocol": "http",
    }
    assert "/v1/completions" in service["metadata"]["annotations"]["kvstack.dev/paths"]
    assert _container("prod")["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]


def test_network_policy_admits_clients_and_prometheus() -> None:
    # without the router tier, the clients reach the engine pods directly
    config = example_config("prod")
    direct = config.model_copy(update={"router": config.router.model_copy(update={"enabled": False})})
    (policy,) = [m.body for m in build_manifests(direct) if m.kind == "NetworkPolicy"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": "http"}]
    assert rule["from"][0] == {"namespaceSelector": {"matchLabels": {"kvstack.dev/llm-client": "true"}}}
    assert rule["from"][1]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    # prod runs the router: the engine admits only the router pods (and Prometheus); the clients' peer
    # moved to the router's policy (test_router.py)
    (rule,) = _one("prod", "NetworkPolicy")["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": "http"}]
    assert rule["from"][0] == {
        "podSelector": {
            "matchLabels": {"app.kubernetes.io/name": "vllm-router", "app.kubernetes.io/instance": "vllm"}
        }
    }
    assert rule["from"][1]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    dev_rule = _one("dev", "NetworkPolicy")["spec"]["ingress"][0]
    assert dev_rule["from"][0] == {"podSelector": {}}  # default: the stack's own namespace


def test_hpa_scales_on_the_adapter_metrics_with_explicit_behavior() -> None:
    config = example_config("prod")
    hpa = _one("prod", "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vllm"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 8)
    targets = {m["pods"]["metric"]["name"]: m["pods"]["target"] for m in hpa["metrics"]}
    assert targets == {
        QUEUE_METRIC: {"type": "AverageValue", "averageValue": "3"},
        KV_CACHE_METRIC: {"type": "AverageValue", "averageValue": "800m"},
    }
    # the adapter publishes exactly the metrics the HPA reads
    published = {rule["name"]["as"] for rule in prometheus_adapter_rules()["rules"]}
    assert set(targets) <= published
    up, down = hpa["behavior"]["scaleUp"], hpa["behavior"]["scaleDown"]
    assert up["stabilizationWindowSeconds"] == config.scaling.scale_up.stabilization_window_seconds == 300
    assert up["policies"] == [{"type": "Pods", "value": 2, "periodSeconds": 120}]
    assert down["stabilizationWindowSeconds"] == 600


def test_keda_scaled_object_uses_the_alerts_triggers() -> None:
    config = example_config("dev")
    spec = _one("dev", "ScaledObject")["spec"]
    assert spec["triggers"] == keda_triggers(
        prometheus_address=config.scaling.prometheus_address,
        namespace="llm-dev",
        app_label="vllm",
        queue_target=config.scaling.queue_target,
        kv_cache_target=config.scaling.kv_cache_target,
    )
    assert (spec["minReplicaCount"], spec["maxReplicaCount"], spec["cooldownPeriod"]) == (1, 1, 360)
    assert (
        spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleUp"]["stabilizationWindowSeconds"]
        == 300
    )


def test_prometheus_rule_wraps_the_alerts_with_stack_values() -> None:
    for stack, job, hpa in (("prod", "vllm", "vllm"), ("dev", "llm-dev/vllm", "keda-hpa-vllm")):
        config = example_config(stack)
        rule = _one(stack, "PrometheusRule")
        thresholds = effective_thresholds(config)
        assert thresholds.max_replicas == config.scaling.max_replicas
        assert (thresholds.scrape_job_regex, thresholds.hpa_name_regex) == (job, hpa)
        assert rule["spec"] == rule_groups(thresholds, runbook_base_url=thresholds.runbook_base_url)
        assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert (
        effective_thresholds(example_config("prod")).queue_depth_per_replica == 5
    )  # set in Pulumi.prod.yaml


def test_dashboards_ship_as_sidecar_configmaps() -> None:
    maps = [
        b
        for b in _by_kind("prod")["ConfigMap"]
        if b["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
    ]
    documents = dashboard_documents()
    assert len(maps) == len(documents) == len(DASHBOARD_UIDS)
    for body in maps:
        ((file_name, text),) = body["data"].items()
        assert json.loads(text) == documents[file_name]
        assert body["metadata"]["annotations"]["kvstack.dev/dashboard-uid"] == DASHBOARD_UIDS[file_name]
        assert body["metadata"]["namespace"] == "monitoring"


def test_stack_without_autoscaling_or_dashboards_builds_less() -> None:
    config = example_config("prod")
    update = {
        "scaling": config.scaling.model_copy(update={"mode": "none"}),
        "monitoring": config.monitoring.model_copy(update={"dashboards": False}),
        "network": config.network.model_copy(update={"enabled": False}),
    }
    kinds = [m.kind for m in build_manifests(StackConfig.model_validate({**config.model_dump(), **update}))]
    assert "HorizontalPodAutoscaler" not in kinds
    assert "NetworkPolicy" not in kinds
    assert kinds.count("ConfigMap") == 0  # no dashboards, no adapter rules without an HPA


@pytest.mark.parametrize(("value", "expected"), [(3, "3"), (3.0, "3"), (0.8, "800m"), (2.5, "2500m")])
def test_quantity(value: float, expected: str) -> None:
    assert quantity(value) == expected


def test_derived_names_stay_within_63_characters() -> None:
    assert (
        Names("a" * 30).dashboard_configmap("kvstack-kv-capacity.json") == "a" * 30 + "-dashboard-kv-capacity"
    )
    with pytest.raises(NameTooLongError, match="shorten kvstack:name"):
        Names("a" * 50).dashboard_configmap("kvstack-kv-capacity.json")


def _keda_config(**fallback: Any) -> StackConfig:
    config = example_config("dev")
    scaling = config.scaling.model_copy(
        update={
            "min_replicas": 2,
            "max_replicas": 6,
            "keda_fallback": config.scaling.keda_fallback.model_copy(update=fallback),
        }
    )
    # 2..6 replicas turn the router on by default; it is not what this test is about
    router = config.router.model_copy(update={"enabled": False})
    return config.model_copy(update={"scaling": scaling, "router": router})


def _scaled_object(config: StackConfig) -> dict[str, Any]:
    return next(m.body for m in build_manifests(config) if m.kind == "ScaledObject")


def test_keda_fallback_defaults_to_min_replicas_and_fits_the_crd() -> None:
    spec = _one("dev", "ScaledObject")["spec"]
    assert spec["fallback"] == {"failureThreshold": 3, "replicas": 1}
    # KEDA only honours fallback for AverageValue triggers
    assert {t["metricType"] for t in spec["triggers"]} == {"AverageValue"}
    body = _scaled_object(_keda_config(failure_threshold=5))
    assert body["spec"]["fallback"] == {"failureThreshold": 5, "replicas": 2}
    assert validate(body) == []  # cloudcoil's KEDA model, unknown fields included
    body = _scaled_object(_keda_config(replicas=4))
    assert body["spec"]["fallback"] == {"failureThreshold": 3, "replicas": 4}
    assert validate(body) == []
    assert "fallback" not in _scaled_object(_keda_config(enabled=False))["spec"]
    broken = copy.deepcopy(body)
    broken["spec"]["fallback"]["failureTreshold"] = 3
    assert [p.message for p in validate(broken)] == [
        "spec.fallback.failureTreshold: field not in the CRD schema"
    ]


def test_keda_fallback_refuses_a_trigger_that_is_not_average_value() -> None:
    from kvstack.infra.manifests.autoscaling import fallback

    triggers = [{"type": "prometheus", "name": "q", "metricType": "Value"}]
    with pytest.raises(ValueError, match="metricType AverageValue"):
        fallback(_keda_config(), triggers)
    with pytest.raises(ValueError, match="metricType AverageValue"):
        fallback(_keda_config(), [{"type": "cpu", "name": "cpu", "metricType": "AverageValue"}])


def test_adapter_rules_values_are_the_chart_values() -> None:
    plan = example_plan("prod")
    values = plan.outputs["adapter_rules_values"]
    assert values == {"rules": {"custom": prometheus_adapter_rules()["rules"]}}
    assert validate_adapter_config({"rules": values["rules"]["custom"]}) == []
    assert plan.outputs["autoscaling"]["adapter_wiring"] == "undeclared"
    assert "adapter_rules_values" not in example_plan("dev").outputs
    assert example_plan("dev").outputs["autoscaling"]["fallback"] == {"failure_threshold": 3, "replicas": 1}
    (adapter,) = [b for b in _by_kind("prod")["ConfigMap"] if "config.yaml" in b["data"]]
    assert adapter["metadata"]["annotations"]["kvstack.dev/adapter-wiring"] == "undeclared"


def _alert_expr(plan_manifests: list[Any], alert: str) -> str:
    (rule,) = [m.body for m in plan_manifests if m.kind == "PrometheusRule"]
    (expr,) = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"] if r.get("alert") == alert]
    return str(expr)


def test_slo_output_holds_the_objectives_the_alerts_use(write_stack: Any) -> None:
    from kvstack.infra.config import load_stack
    from kvstack.infra.stack import build_stack

    prod = example_plan("prod")
    assert prod.outputs["slo"] == {
        "ttft_seconds": 2.5,
        "itl_seconds": 0.1,
        "min_goodput_concurrency": None,
        "max_num_seqs": 256,
    }

    def edit(config: dict[str, Any]) -> None:
        config["kvstack:monitoring"]["alerts"] |= {"ttft_p95_slo_seconds": 1.2, "itl_p99_slo_seconds": 0.05}
        config["kvstack:capacity"]["min_goodput_concurrency"] = 32
        config["kvstack:engine"]["max_num_seqs"] = 128

    folder = write_stack("slo", edit=edit)
    stack_file, config = load_stack("slo", folder)
    plan = build_stack(config, base_dir=folder, source=stack_file.source)
    slo = plan.outputs["slo"]
    assert slo == {
        "ttft_seconds": 1.2,
        "itl_seconds": 0.05,
        "min_goodput_concurrency": 32,
        "max_num_seqs": 128,
    }
    assert _alert_expr(plan.manifests, "VLLMTTFTP95OverSLO").endswith(f"> {slo['ttft_seconds']}")
    assert _alert_expr(plan.manifests, "VLLMITLP99OverSLO").endswith(f"> {slo['itl_seconds']}")
    assert f"--max-num-seqs {slo['max_num_seqs']}" in " ".join(plan.outputs["vllm_args"])
