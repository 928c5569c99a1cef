"""The Pulumi program under ``pulumi.runtime.set_mocks``: parents, names, types and stack outputs."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from tests.infra.infra_stacks import PROJECT_DIR, example_plan, stack_document


class RecordingMocks(pulumi.runtime.Mocks):
    """Echo inputs as outputs and record every registration."""

    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        self.resources.append(args)
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


def _pulumi_config(config: dict[str, Any], secrets: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """A stack file's config as the engine hands it to the program: strings, objects as JSON."""
    values: dict[str, str] = {}
    for key, value in config.items():
        values[key] = value if isinstance(value, str) else json.dumps(value)
    for key, value in secrets.items():
        values[key] = value
    return values, sorted(secrets)


@pytest.fixture
def mocks(monkeypatch: pytest.MonkeyPatch) -> RecordingMocks:
    monkeypatch.chdir(PROJECT_DIR)
    return RecordingMocks()


def _run(
    mocks: RecordingMocks, stack: str, config: dict[str, Any], secrets: dict[str, str] | None = None
) -> Any:
    pulumi.runtime.set_mocks(mocks, project="kvstack", stack=stack, preview=False)
    values, secret_keys = _pulumi_config(config, secrets or {})
    pulumi.runtime.set_all_config(values, secret_keys)
    # the program module is imported only once the mocks are in place
    from kvstack.infra import program

    return program.main()


def _root_outputs() -> dict[str, Any]:
    root = pulumi.runtime.settings.get_root_resource()
    assert root is not None
    return dict(root.outputs)  # type: ignore[attr-defined]


COMPONENT_TYPE = "kvstack:index:VllmService"

KIND_TYPES = {
    "Deployment": "kubernetes:apps/v1:Deployment",
    "Service": "kubernetes:core/v1:Service",
    "Namespace": "kubernetes:core/v1:Namespace",
    "PersistentVolumeClaim": "kubernetes:core/v1:PersistentVolumeClaim",
    "ConfigMap": "kubernetes:core/v1:ConfigMap",
    "Secret": "kubernetes:core/v1:Secret",
    "ServiceAccount": "kubernetes:core/v1:ServiceAccount",
    "Role": "kubernetes:rbac.authorization.k8s.io/v1:Role",
    "RoleBinding": "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding",
    "PodDisruptionBudget": "kubernetes:policy/v1:PodDisruptionBudget",
    "NetworkPolicy": "kubernetes:networking.k8s.io/v1:NetworkPolicy",
    "HorizontalPodAutoscaler": "kubernetes:autoscaling/v2:HorizontalPodAutoscaler",
    "ServiceMonitor": "kubernetes:monitoring.coreos.com/v1:ServiceMonitor",
    "PodMonitor": "kubernetes:monitoring.coreos.com/v1:PodMonitor",
    "PrometheusRule": "kubernetes:monitoring.coreos.com/v1:PrometheusRule",
    "ScaledObject": "kubernetes:keda.sh/v1alpha1:ScaledObject",
}

OUTPUT_KEYS = {
    "namespace",
    "endpoint",
    "engine_endpoint",
    "completions_url",
    "chat_completions_url",
    "metrics_url",
    "served_model_name",
    "image",
    "vllm_args",
    "resource_names",
    "autoscaling",
    "dashboard_uids",
    "capacity",
    "slo",
}


def _check_stack(mocks: RecordingMocks, stack: str, expected_roles: list[tuple[str, str]]) -> Any:
    plan = example_plan(stack)
    outputs = _root_outputs()
    # adapter_rules_values (the prometheus-adapter chart's values) only where an HPA needs the adapter
    hpa_only = {"adapter_rules_values"} if plan.config.scaling.mode == "hpa" else set()
    # the router block only where the router tier is deployed
    router_only = {"router"} if any(m.role == "router-deployment" for m in plan.manifests) else set()
    assert set(outputs) == OUTPUT_KEYS | hpa_only | router_only
    expected = {k: v for k, v in plan.outputs.items() if k != "resource_names"}

    def check(values: list[Any]) -> None:
        # registrations are asynchronous: by the time every output resolved, every child is registered
        components = [r for r in mocks.resources if r.typ == COMPONENT_TYPE]
        assert [c.name for c in components] == [plan.config.name]
        children = [r for r in mocks.resources if r.typ != COMPONENT_TYPE]
        # each child: the kind's type token and a name derived from the component's ...
        assert sorted((r.typ, r.name) for r in children) == sorted(
            (KIND_TYPES[kind], f"{plan.config.name}-{role}") for role, kind in expected_roles
        )
        # ... and the component as parent (the URN's type chain is parent$child)
        registered = pulumi.runtime.settings.get_monitor().resources  # type: ignore[union-attr]
        child_urns = [u for u in registered if not u.split("::")[2].endswith(COMPONENT_TYPE)]
        assert len(child_urns) == len(expected_roles)
        for urn in child_urns:
            assert urn.split("::")[2].startswith(f"{COMPONENT_TYPE}$"), (
                f"{urn} is not parented by the component"
            )
        # the Deployment gets exactly the pure manifest
        deployment = next(r for r in children if r.name == f"{plan.config.name}-deployment")
        body = next(m.body for m in plan.manifests if m.role == "deployment")
        assert deployment.inputs["spec"] == json.loads(json.dumps(body["spec"]))
        assert deployment.inputs["metadata"] == body["metadata"]
        # ... and so does the router's, where the stack has one
        for role in ("router-deployment", "router-role"):
            router_body = next((m.body for m in plan.manifests if m.role == role), None)
            if router_body is not None:
                router = next(r for r in children if r.name == f"{plan.config.name}-{role}")
                assert router.inputs["metadata"] == router_body["metadata"]
                key = "spec" if role == "router-deployment" else "rules"
                assert router.inputs[key] == json.loads(json.dumps(router_body[key]))
        # every stack output, with the values the pure plan computed
        resolved = dict(zip(outputs, values, strict=True))
        for key, value in expected.items():
            assert json.loads(json.dumps(resolved[key])) == json.loads(json.dumps(value)), key
        names = _names(plan, expected_roles)
        assert resolved["resource_names"] == {
            role: f"{kind}/{name}" for (role, kind), name in zip(expected_roles, names, strict=True)
        }

    return pulumi.Output.all(*outputs.values()).apply(check)


def _secret_value(value: Any) -> Any:
    """Unwrap a value the mock monitor received as a secret; fail if it is not one."""
    assert isinstance(value, dict), value
    assert value.get(pulumi.runtime.rpc._special_sig_key) == pulumi.runtime.rpc._special_secret_sig, value
    return value["value"]


def _names(plan: Any, roles: list[tuple[str, str]]) -> list[str]:
    by_role = {m.role: m.name for m in plan.manifests}
    secrets = {"hf-token": f"{plan.config.name}-hf-token", "api-key": f"{plan.config.name}-api-key"}
    return [by_role.get(role) or secrets[role] for role, _ in roles]


PROD_ROLES = [
    ("model-cache", "PersistentVolumeClaim"),
    ("deployment", "Deployment"),
    ("service", "Service"),
    ("pdb", "PodDisruptionBudget"),
    ("network-policy", "NetworkPolicy"),
    ("service-monitor", "ServiceMonitor"),
    ("router-service-account", "ServiceAccount"),
    ("router-role", "Role"),
    ("router-role-binding", "RoleBinding"),
    ("router-deployment", "Deployment"),
    ("router-service", "Service"),
    ("router-pdb", "PodDisruptionBudget"),
    ("router-network-policy", "NetworkPolicy"),
    ("router-service-monitor", "ServiceMonitor"),
    ("prometheus-rule", "PrometheusRule"),
    ("dashboard-kv-capacity", "ConfigMap"),
    ("dashboard-overview", "ConfigMap"),
    ("adapter-rules", "ConfigMap"),
    ("hpa", "HorizontalPodAutoscaler"),
]


@pulumi.runtime.test
def test_prod_program_creates_every_resource_under_the_component(mocks: RecordingMocks) -> Any:
    _run(mocks, "prod", stack_document("prod")["config"])
    return _check_stack(mocks, "prod", PROD_ROLES)


@pulumi.runtime.test
def test_dev_program_creates_namespace_and_keda_scaler(mocks: RecordingMocks) -> Any:
    _run(mocks, "dev", stack_document("dev")["config"])
    roles = [
        ("namespace", "Namespace"),
        ("model-cache", "PersistentVolumeClaim"),
        ("deployment", "Deployment"),
        ("service", "Service"),
        ("pdb", "PodDisruptionBudget"),
        ("network-policy", "NetworkPolicy"),
        ("pod-monitor", "PodMonitor"),
        ("prometheus-rule", "PrometheusRule"),
        ("dashboard-kv-capacity", "ConfigMap"),
        ("dashboard-overview", "ConfigMap"),
        ("scaled-object", "ScaledObject"),
    ]
    return _check_stack(mocks, "dev", roles)


@pulumi.runtime.test
def test_pulumi_secrets_become_kubernetes_secrets(mocks: RecordingMocks) -> Any:
    config = stack_document("prod")["config"]
    del config["kvstack:hf_token"], config["kvstack:api_key"]
    _run(mocks, "prod", config, secrets={"kvstack:hf_token": "hf_test", "kvstack:api_key": "sk-test"})

    def check(_: Any) -> None:
        secrets = {r.name: r.inputs for r in mocks.resources if r.typ == KIND_TYPES["Secret"]}
        # the values travel as Pulumi secrets (encrypted in the state), not as plain strings
        assert _secret_value(secrets["vllm-hf-token"]["stringData"]) == {"token": "hf_test"}
        assert _secret_value(secrets["vllm-api-key"]["stringData"]) == {"api-key": "sk-test"}
        deployment = next(r for r in mocks.resources if r.name == "vllm-deployment")
        env = {e["name"]: e for e in deployment.inputs["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "vllm-hf-token", "key": "token"}
        assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "vllm-api-key", "key": "api-key"}

    return pulumi.Output.all(*_root_outputs().values()).apply(check)


def test_bad_config_fails_preview_naming_field_and_stack(mocks: RecordingMocks) -> None:
    config = stack_document("prod")["config"]
    config["kvstack:engine"]["gpu_memory_utilization"] = 0.99
    with pytest.raises(pulumi.RunError) as caught:
        _run(mocks, "prod", config)
    message = str(caught.value)
    assert "Pulumi.prod.yaml (stack prod)" in message
    assert "kvstack:engine.gpu_memory_utilization" in message
    assert not [r for r in mocks.resources if r.typ != COMPONENT_TYPE]


def test_misspelled_key_fails_preview(mocks: RecordingMocks) -> None:
    config = stack_document("prod")["config"]
    config["kvstack:scalling"] = config.pop("kvstack:scaling")
    with pytest.raises(
        pulumi.RunError, match=r"kvstack:scalling: unknown config key \(did you mean kvstack:scaling"
    ):
        _run(mocks, "prod", config)


def test_misspelled_namespace_fails_preview(mocks: RecordingMocks) -> None:
    config = stack_document("prod")["config"]
    config["kvstak:api_key"] = config.pop("kvstack:api_key")
    config["kubernetes:context"] = "gpu-cluster"  # another namespace: the provider's, allowed
    with pytest.raises(pulumi.RunError) as caught:
        _run(mocks, "prod", config)
    message = str(caught.value)
    assert "kvstak:api_key: namespace 'kvstak' is a misspelling of 'kvstack'" in message
    assert "kubernetes:context" not in message
    assert not [r for r in mocks.resources if r.typ != COMPONENT_TYPE]


def test_stack_below_capacity_floor_fails_preview(mocks: RecordingMocks) -> None:
    config = stack_document("prod")["config"]
    config["kvstack:engine"]["max_model_len"] = 131072
    with pytest.raises(pulumi.RunError) as caught:
        _run(mocks, "prod", config)
    message = str(caught.value)
    assert "kvstack:capacity.min_concurrency" in message
    assert "engine.max_model_len" in message  # the knob to turn
    assert not mocks.resources
