"""The router tier (vllm-router in front of the replicas): config, manifests, outputs and lint checks."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kvstack.contract.scale_out import SCALE_OUT_FLAG
from kvstack.infra.config import ConfigError, StackConfig, load_stack
from kvstack.infra.config.sections.router import POLICIES, router_enabled
from kvstack.infra.lint import Finding, lint
from kvstack.infra.manifests import build_manifests
from kvstack.infra.manifests.monitoring import effective_thresholds, prometheus_rule
from kvstack.infra.manifests.names import (
    router_scrape_job,
    router_selector_labels,
    selector_labels,
)
from kvstack.infra.schema import KUBE_VERSIONS, validate, validate_all
from kvstack.infra.stack import build_stack
from tests.infra.infra_stacks import (
    PROJECT_DIR,
    ROUTER_CHECKS,
    example_config,
    example_plan,
    stack_document,
)


def _router(stack: str = "prod", config: StackConfig | None = None) -> dict[str, dict[str, Any]]:
    """The router tier's objects by role (without the ``router-`` prefix)."""
    manifests = build_manifests(config) if config is not None else example_plan(stack).manifests
    return {m.role.removeprefix("router-"): m.body for m in manifests if m.role.startswith("router-")}


def _engine(config: StackConfig, kind: str) -> dict[str, Any]:
    (body,) = [m.body for m in build_manifests(config) if m.kind == kind and not m.role.startswith("router-")]
    return body


def _with_router(config: StackConfig, **update: Any) -> StackConfig:
    return config.model_copy(update={"router": config.router.model_copy(update=update)})


def _args(deployment: dict[str, Any]) -> list[str]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return [*container["command"], *container["args"]]


def _flag(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def _selector(args: list[str]) -> dict[str, str]:
    out = {}
    for arg in args[args.index("--selector") + 1 :]:
        if arg.startswith("--"):
            break
        key, _, value = arg.partition("=")
        out[key] = value
    return out


# ------------------------------------------------------------------------------------------------ config


def test_the_router_is_on_by_default_when_the_stack_runs_several_replicas() -> None:
    prod, dev = example_config("prod"), example_config("dev")
    assert prod.max_pods == 8
    assert router_enabled(prod)
    assert dev.max_pods == 1
    assert not router_enabled(dev)
    assert not _router("dev")
    assert router_enabled(_with_router(dev, enabled=True))
    assert not router_enabled(_with_router(prod, enabled=False))


def test_the_router_image_is_required_when_the_router_is_on(write_stack: Callable[..., Path]) -> None:
    folder = write_stack("noimage", edit=lambda c: c["kvstack:router"].pop("image"))
    with pytest.raises(ConfigError) as caught:
        load_stack("noimage", folder)
    assert caught.value.fields == ["kvstack:router.image"]
    assert "Pulumi.noimage.yaml (stack noimage)" in str(caught.value)
    assert "the stack runs up to 8 replicas" in str(caught.value)
    # off: no image needed
    folder = write_stack("off", edit=lambda c: c.update({"kvstack:router": {"enabled": False}}))
    assert not router_enabled(load_stack("off", folder)[1])


@pytest.mark.parametrize(
    ("router", "field", "message"),
    [
        ({"polcy": "cache_aware"}, "kvstack:router.polcy", "did you mean 'policy'"),
        ({"policy": "least_busy"}, "kvstack:router.policy", "'cache_aware', 'round_robin'"),
        ({"image": {"repository": "r/vllm-router", "tag": "latest"}}, "kvstack:router.image.tag", "moves"),
        ({"image": {"repository": "r/vllm-router"}}, "kvstack:router.image.tag", "pinned"),
        ({"image": {"repository": "r/vllm-router:0.1.17"}}, "kvstack:router.image.repository", "tag"),
        ({"metrics_port": 8000}, "kvstack:router.metrics_port", "router.port"),
        ({"extra_args": ["--policy=random"]}, "kvstack:router.extra_args", "--policy"),
        ({"resources": {"memory_limit": "lots"}}, "kvstack:router.resources.memory_limit", "quantity"),
    ],
)
def test_a_bad_router_field_is_named(
    write_stack: Callable[..., Path], router: dict[str, Any], field: str, message: str
) -> None:
    def edit(config: dict[str, Any]) -> None:
        section = config["kvstack:router"]
        for key, value in router.items():
            section[key] = value

    folder = write_stack("bad", edit=edit)
    with pytest.raises(ConfigError) as caught:
        load_stack("bad", folder)
    assert field in caught.value.fields, str(caught.value)
    assert message in str(caught.value)


# ------------------------------------------------------------------- the engines' render routes (scale-out)


def _stack(**sections: dict[str, Any]) -> StackConfig:
    """The prod stack with some sections' fields replaced, validated as a stack file would be."""
    config = stack_document("prod")["config"]
    for section, values in sections.items():
        config.setdefault(f"kvstack:{section}", {}).update(values)
    return StackConfig.model_validate(config, context={"base_dir": PROJECT_DIR})


def _engine_args(config: StackConfig) -> list[str]:
    (container,) = _engine(config, "Deployment")["spec"]["template"]["spec"]["containers"]
    return [*container.get("command", []), *container["args"]]


@pytest.mark.parametrize(
    ("sections", "flagged"),
    [
        # the default image, vLLM 0.26.0: the render routes are built in and the flag would stop vLLM
        ({}, False),
        ({"image": {"tag": "v0.28.3"}}, False),
        # vLLM >= 0.30 behind cache_aware: only the flag registers the routes
        ({"image": {"tag": "v0.30.0"}}, True),
        ({"image": {"tag": "v0.32.0"}}, True),
        # a policy that reads no token ids, or no router at all: nothing to serve
        ({"image": {"tag": "v0.32.0"}, "router": {"policy": "round_robin"}}, False),
        ({"image": {"tag": "v0.32.0"}, "router": {"enabled": False}}, False),
        # what the tag cannot say, said explicitly
        ({"image": {"tag": "v0.29.1"}, "router": {"engine_scale_out": True}}, True),
        ({"image": {"tag": "v0.29.1"}, "router": {"engine_scale_out": False}}, False),
        (
            {"image": {"tag": None, "digest": "sha256:" + "cd" * 32}, "router": {"engine_scale_out": True}},
            True,
        ),
    ],
)
def test_the_engine_deployment_serves_render_routes_for_a_cache_aware_router(
    sections: dict[str, dict[str, Any]], flagged: bool
) -> None:
    config = _stack(**sections)
    args = _engine_args(config)
    assert (SCALE_OUT_FLAG in args) is flagged, args
    assert args.count(SCALE_OUT_FLAG) <= 1
    # and the rendered Deployment is still one the API server takes
    assert validate(_engine(config, "Deployment"), KUBE_VERSIONS[-1:]) == []


def test_an_undecidable_engine_image_names_the_field_and_the_way_out(
    write_stack: Callable[..., Path],
) -> None:
    folder = write_stack("rc", edit=lambda c: c["kvstack:image"].update(tag="v0.29.1"))
    with pytest.raises(ConfigError) as caught:
        load_stack("rc", folder)
    message = " ".join(str(caught.value).split())
    assert caught.value.fields == ["kvstack:router.engine_scale_out"]
    assert "Pulumi.rc.yaml (stack rc)" in message
    assert "true if the image is vLLM >= 0.30, false if it is <= 0.28" in message
    # a router policy that reads no token ids does not care which vLLM it is
    folder = write_stack(
        "rr",
        edit=lambda c: (
            c["kvstack:image"].update(tag="v0.29.1"),
            c["kvstack:router"].update(policy="round_robin"),
        ),
    )
    assert SCALE_OUT_FLAG not in _engine_args(load_stack("rr", folder)[1])


# --------------------------------------------------------------------------------------------- manifests


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_every_router_object_validates_strictly(version: str) -> None:
    router = _router()
    assert sorted(router) == sorted(
        [
            "service-account",
            "role",
            "role-binding",
            "deployment",
            "service",
            "pdb",
            "network-policy",
            "service-monitor",
        ]
    )
    assert validate_all(router.values(), (version,)) == []
    # dev's scrape kind (pod_monitor) gives the router a PodMonitor, valid against the CRD
    pod_monitored = _router(
        config=_with_router(example_config("dev"), enabled=True, image=example_config("prod").router.image)
    )
    assert pod_monitored["pod-monitor"]["kind"] == "PodMonitor"
    assert validate_all(pod_monitored.values(), (version,)) == []


def test_schema_validation_catches_unknown_router_fields() -> None:
    role = copy.deepcopy(_router()["role"])
    role["rules"][0]["resourceNames"] = ["x"]  # known field: still valid
    assert validate(role) == []
    role["rules"][0]["verb"] = ["get"]
    assert {p.against for p in validate(role)} == {f"kubernetes {v}" for v in KUBE_VERSIONS}
    deployment = copy.deepcopy(_router()["deployment"])
    deployment["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"]["sleep"]["secs"] = 1
    assert validate(deployment)


def test_the_router_discovers_exactly_the_engine_pods() -> None:
    config = example_config("prod")
    args = _args(_router()["deployment"])
    assert args[0] == "vllm-router"
    assert "--service-discovery" in args
    engine_pod_labels = _engine(config, "Deployment")["spec"]["template"]["metadata"]["labels"]
    selector = _selector(args)
    assert selector == selector_labels(config)
    assert selector.items() <= engine_pod_labels.items()
    router_pod_labels = _router()["deployment"]["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= router_pod_labels.items()  # never discovers itself
    assert _flag(args, "--service-discovery-namespace") == config.namespace == "llm"
    assert _flag(args, "--service-discovery-port") == str(config.engine.port)  # vllm-router's default is 80
    assert _flag(args, "--policy") == "cache_aware"
    # bound for a pod: vllm-router's defaults are 127.0.0.1 for both its API and its metrics
    assert (_flag(args, "--host"), _flag(args, "--port")) == ("0.0.0.0", "8000")
    assert (_flag(args, "--prometheus-host"), _flag(args, "--prometheus-port")) == ("0.0.0.0", "29000")


@pytest.mark.parametrize("policy", POLICIES)
def test_the_policy_is_selectable(policy: str) -> None:
    config = _with_router(example_config("prod"), policy=policy)
    assert _flag(_args(_router(config=config)["deployment"]), "--policy") == policy


def test_selectors_of_the_two_tiers_are_disjoint() -> None:
    config = example_config("prod")
    router_pods = _router()["deployment"]["spec"]["template"]["metadata"]["labels"]
    engine_pods = _engine(config, "Deployment")["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor", "Deployment"):
        spec = _engine(config, kind)["spec"]
        selector = spec.get("selector", spec.get("podSelector"))
        selector = selector.get("matchLabels", selector)
        assert selector.items() <= engine_pods.items(), kind
        assert not selector.items() <= router_pods.items(), kind
    for role in ("deployment", "service", "pdb", "network-policy", "service-monitor"):
        spec = _router()[role]["spec"]
        selector = spec.get("selector", spec.get("podSelector"))
        selector = selector.get("matchLabels", selector)
        assert selector == router_selector_labels(config)
        assert not selector.items() <= engine_pods.items(), role


def test_rbac_allows_only_what_discovery_needs() -> None:
    router = _router()
    assert router["role"]["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
    ]
    assert router["role"]["metadata"]["namespace"] == "llm"  # a Role, not a ClusterRole
    binding = router["role-binding"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "vllm-router",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "vllm-router", "namespace": "llm"}]
    pod = router["deployment"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == router["service-account"]["metadata"]["name"]
    # without the token vllm-router 0.1.17 "continues without service discovery" and finds no engine
    assert pod["automountServiceAccountToken"] is True
    engine_pod = _engine(example_config("prod"), "Deployment")["spec"]["template"]["spec"]
    assert engine_pod["automountServiceAccountToken"] is False


def test_the_router_deployment_is_production_shaped() -> None:
    config = example_config("prod")
    deployment = _router()["deployment"]
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    # Ready only once an engine is: the first rollout may wait for a whole model load
    engine = _engine(config, "Deployment")["spec"]
    assert spec["progressDeadlineSeconds"] == engine["progressDeadlineSeconds"] == 900
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example.com/platform/vllm-router:0.1.17"
    assert container["startupProbe"]["httpGet"] == {"path": "/liveness", "port": "http", "scheme": "HTTP"}
    assert container["livenessProbe"]["httpGet"]["path"] == "/liveness"
    # /readiness is 503 until the router knows a healthy engine; /health would fail on any one bad engine
    assert container["readinessProbe"]["httpGet"]["path"] == "/readiness"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": 8000, "metrics": 29000}
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    assert pod["enableServiceLinks"] is False
    assert pod["terminationGracePeriodSeconds"] == 130
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    pdb = _router()["pdb"]["spec"]
    assert pdb["maxUnavailable"] == 1
    service = _router()["service"]["spec"]
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["ports"]] == [
        ("http", 8000, "http"),
        ("metrics", 29000, "metrics"),
    ]
    assert service["sessionAffinity"] == "None"
    assert (
        _router(config=_with_router(config, session_affinity="ClientIP"))["service"]["spec"][
            "sessionAffinity"
        ]
        == "ClientIP"
    )


def test_network_policy_clients_to_router_to_engine_and_prometheus_to_both() -> None:
    config = example_config("prod")
    clients, prometheus = _router()["network-policy"]["spec"]["ingress"]
    assert clients["from"] == [{"namespaceSelector": {"matchLabels": {"kvstack.dev/llm-client": "true"}}}]
    assert clients["ports"] == [{"protocol": "TCP", "port": "http"}]
    monitoring = {"kubernetes.io/metadata.name": "monitoring"}
    assert prometheus["from"][0]["namespaceSelector"]["matchLabels"] == monitoring
    assert prometheus["ports"] == [{"protocol": "TCP", "port": "metrics"}]
    (engine_rule,) = _engine(config, "NetworkPolicy")["spec"]["ingress"]
    router_peer, prometheus_peer = engine_rule["from"]
    assert router_peer == {"podSelector": {"matchLabels": router_selector_labels(config)}}
    assert prometheus_peer["namespaceSelector"]["matchLabels"] == monitoring
    # network.enabled: false drops both policies
    off = config.model_copy(update={"network": config.network.model_copy(update={"enabled": False})})
    assert "network-policy" not in _router(config=off)


def test_the_router_monitor_scrapes_its_metrics_port() -> None:
    router = _router()
    monitor = router["service-monitor"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= router["service"]["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "15s", "scheme": "http"}
    ]
    assert router_scrape_job(example_config("prod")) == "vllm-router"


# ------------------------------------------------------------------------------------------------ outputs


def test_stack_outputs_point_at_the_router() -> None:
    outputs = example_plan("prod").outputs
    assert outputs["endpoint"] == "http://vllm-router.llm.svc.cluster.local:8000"
    assert outputs["engine_endpoint"] == "http://vllm.llm.svc.cluster.local:8000"
    assert outputs["completions_url"] == f"{outputs['endpoint']}/v1/completions"
    assert outputs["metrics_url"] == f"{outputs['engine_endpoint']}/metrics"  # vLLM's own metrics
    assert outputs["router"] == {
        "policy": "cache_aware",
        "replicas": 2,
        "image": "registry.example.com/platform/vllm-router:0.1.17",
        "version": "0.1.17",
        "service": "vllm-router",
        "deployment": "vllm-router",
        "metrics_url": "http://vllm-router.llm.svc.cluster.local:29000/metrics",
        "scrape_job": "vllm-router",
        "discovery_selector": {"app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": "vllm"},
    }
    dev = example_plan("dev").outputs
    assert dev["endpoint"] == dev["engine_endpoint"] == "http://vllm.llm-dev.svc.cluster.local:8000"
    assert "router" not in dev


# --------------------------------------------------------------------------------------------------- lint


def _lint(bodies: list[dict[str, Any]]) -> list[Finding]:
    return [f for f in lint(bodies) if f.check.startswith("router")]


def _bodies(stack: str = "prod") -> list[dict[str, Any]]:
    return copy.deepcopy([m.body for m in example_plan(stack).manifests])


def _router_container(bodies: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [
        b for b in bodies if b["kind"] == "Deployment" and b["metadata"]["name"] == "vllm-router"
    ]
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def test_lint_passes_the_prod_router() -> None:
    findings = _lint(_bodies())
    assert {f.check for f in findings} == ROUTER_CHECKS
    assert [f for f in findings if f.status != "ok"] == []
    assert _lint(_bodies("dev")) == []  # one replica, no router: nothing to say


def test_lint_warns_on_several_replicas_without_a_router() -> None:
    config = _with_router(example_config("prod"), enabled=False)
    plan = build_stack(config, base_dir=PROJECT_DIR, source="test", enforce_floor=False)
    (finding,) = _lint([m.body for m in plan.manifests])
    assert (finding.check, finding.status) == ("router", "warn")
    assert "up to 8 replicas behind a plain Service" in finding.message


def _failures(bodies: list[dict[str, Any]]) -> list[str]:
    return [f"{f.check}: {f.message}" for f in _lint(bodies) if f.failed]


def test_lint_fails_a_selector_that_misses_the_engine_pods() -> None:
    bodies = _bodies()
    args = _router_container(bodies)["args"]
    args[args.index("app.kubernetes.io/name=vllm")] = "app=vllm-worker"
    (failure,) = _failures(bodies)
    assert failure.startswith("router-select: Deployment/vllm-router: --selector")
    assert "does not match Deployment/vllm's pod labels" in failure


def test_lint_fails_discovery_on_the_wrong_port_or_everywhere() -> None:
    bodies = _bodies()
    args = _router_container(bodies)["args"]
    port = args.index("--service-discovery-port")
    del args[port : port + 2]  # vllm-router's default port is 80
    namespace = args.index("--service-discovery-namespace")
    del args[namespace : namespace + 2]
    failures = _failures(bodies)
    assert any("--service-discovery-port 80 is not the vLLM port 8000" in f for f in failures)
    assert any("it would watch every namespace" in f for f in failures)


def test_lint_fails_an_unpinned_router_image() -> None:
    bodies = _bodies()
    image = "vllm/vllm-router:latest"
    _router_container(bodies)["image"] = image
    (failure,) = _failures(bodies)
    assert (
        failure
        == f"router-image: Deployment/vllm-router: image {image!r} is not pinned (exact tag or digest)"
    )
    _router_container(bodies)["image"] = "vllm/vllm-router@sha256:" + "a" * 64
    assert _failures(bodies) == []


def test_lint_fails_metrics_on_loopback_or_unscraped() -> None:
    bodies = _bodies()
    args = _router_container(bodies)["args"]
    host = args.index("--prometheus-host")
    del args[host : host + 2]
    assert _failures(bodies) == [
        "router-metrics: Deployment/vllm-router: metrics bound to 127.0.0.1: pass --prometheus-host 0.0.0.0"
    ]
    bodies = [
        b for b in _bodies() if not (b["kind"] == "ServiceMonitor" and b["metadata"]["name"] == "vllm-router")
    ]
    assert _failures(bodies) == [
        "router-metrics: no ServiceMonitor or PodMonitor scrapes Deployment/vllm-router's metrics port 29000"
    ]


def test_lint_fails_discovery_without_token_or_role() -> None:
    bodies = _bodies()
    router = next(b for b in bodies if b["kind"] == "Deployment" and b["metadata"]["name"] == "vllm-router")
    router["spec"]["template"]["spec"]["automountServiceAccountToken"] = False
    assert _failures(bodies) == [
        "router-rbac: Deployment/vllm-router: the service-account token is not mounted: discovery fails"
    ]
    bodies = [b for b in _bodies() if b["kind"] != "RoleBinding"]
    assert _failures(bodies) == [
        "router-rbac: ServiceAccount vllm-router is not bound to a role that lists and watches pods"
    ]
    bodies = _bodies()
    role = next(b for b in bodies if b["kind"] == "Role")
    role["rules"].append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]})
    warned = [f for f in _lint(bodies) if f.check == "router-rbac"]
    assert [(f.status, f.message) for f in warned] == [
        ("warn", "ServiceAccount vllm-router may do more than get/list/watch pods")
    ]


def test_lint_fails_router_probes_on_the_engine_health_path() -> None:
    bodies = _bodies()
    _router_container(bodies)["readinessProbe"]["httpGet"]["path"] = "/ready"
    assert _failures(bodies) == [
        "router-probes: Deployment/vllm-router: readinessProbe must GET /readiness or /liveness on port 8000"
    ]


# ------------------------------------------------------------------------------------------------ alerts


def test_the_rules_of_a_stack_with_a_router_alert_on_its_router_job_and_not_as_engines() -> None:
    """The PrometheusRule of a stack with a router carries the router alerts on the router's own job, and
    its engine alerts exclude that job (a ServiceMonitor names it `vllm-router`, which a loose engine
    regex would take)."""
    prod = example_config("prod")
    assert router_enabled(prod)
    thresholds = effective_thresholds(prod)
    assert thresholds.router_alerts
    assert thresholds.router_job_regex == router_scrape_job(prod) == "vllm-router"
    rules = {r.get("alert"): r for g in prometheus_rule(prod)["spec"]["groups"] for r in g["rules"]}
    assert 'up{job=~"vllm-router"}' in rules["VLLMRouterDown"]["expr"]
    assert 'job!~"vllm-router"' in rules["VLLMEngineDown"]["expr"]
    assert "VLLMFleetPrefixHitRatioCollapsed" in rules


def test_the_rules_of_a_stack_without_a_router_have_no_router_alerts() -> None:
    dev = example_config("dev")
    assert not router_enabled(dev)
    assert not effective_thresholds(dev).router_alerts
    alerts = {r.get("alert") for g in prometheus_rule(dev)["spec"]["groups"] for r in g["rules"]}
    assert "VLLMEngineDown" in alerts
    assert not {a for a in alerts if a and ("Router" in a or "Fleet" in a)}


def _engine_container(bodies: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [b for b in bodies if b["kind"] == "Deployment" and b["metadata"]["name"] == "vllm"]
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def _render(bodies: list[dict[str, Any]]) -> Finding:
    (finding,) = [f for f in _lint(bodies) if f.check == "router-render"]
    return finding


@pytest.mark.parametrize(
    ("image", "flag", "status", "words"),
    [
        ("vllm/vllm-openai:v0.26.0", False, "ok", "serves the render routes cache_aware reads"),
        ("vllm/vllm-openai:v0.26.0", True, "fail", "predates --enable-scale-out and would exit on it"),
        ("vllm/vllm-openai:v0.30.1", False, "fail", "serves them only with --enable-scale-out"),
        ("vllm/vllm-openai:v0.30.1", True, "ok", "serves the render routes"),
        ("vllm/vllm-openai:v0.32.0@sha256:" + "b" * 64, False, "fail", "only with --enable-scale-out"),
        ("vllm/vllm-openai@sha256:" + "b" * 64, False, "warn", "check that /v1/completions/render answers"),
        ("registry.local:5000/vllm:v0.29.2", True, "warn", "passes --enable-scale-out"),
    ],
)
def test_lint_checks_that_a_cache_aware_routers_engines_serve_the_render_routes(
    image: str, flag: bool, status: str, words: str
) -> None:
    """A hand-edited or re-tagged engine behind a cache_aware router: without the render routes the
    router load-balances silently (routing efficiency 0.73-0.75 on the local fleet, the round_robin
    figure); the stack file is checked for this already, the manifests are checked here."""
    bodies = _bodies()
    engine = _engine_container(bodies)
    engine["image"] = image
    args = engine.setdefault("args", [])
    if "--enable-scale-out" in args:
        args.remove("--enable-scale-out")
    if flag:
        args.append("--enable-scale-out")
    finding = _render(bodies)
    assert finding.status == status, finding.message
    assert words in finding.message


def test_a_router_policy_that_reads_no_render_routes_needs_none() -> None:
    bodies = _bodies()
    args = _router_container(bodies)["args"]
    if "--policy" in args:
        args[args.index("--policy") + 1] = "round_robin"
    else:
        args += ["--policy", "round_robin"]
    _engine_container(bodies)["image"] = "vllm/vllm-openai:v0.32.0"  # no --enable-scale-out
    finding = _render(bodies)
    assert (finding.status, finding.message) == ("ok", "policy round_robin reads no render routes")
