"""`kvstack lint`: both example stacks pass; removing any one requirement fails, naming it."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from kvstack.infra.lint import failed, lint, monitored_metrics
from tests.infra.infra_stacks import EXAMPLE_STACKS, ROUTER_CHECKS, example_plan

Bodies = list[dict[str, Any]]
Mutation = Callable[[Bodies], None]


def _bodies(stack: str) -> Bodies:
    return copy.deepcopy([m.body for m in example_plan(stack).manifests])


def _of(bodies: Bodies, kind: str) -> dict[str, Any]:
    return next(b for b in bodies if b["kind"] == kind)


def _container(bodies: Bodies) -> dict[str, Any]:
    container: dict[str, Any] = _of(bodies, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return container


def _drop_flag(flag: str) -> Mutation:
    def mutate(bodies: Bodies) -> None:
        args = _container(bodies)["args"]
        i = args.index(flag)
        del args[i : i + 2]

    return mutate


def _drop_probe(probe: str) -> Mutation:
    def mutate(bodies: Bodies) -> None:
        del _container(bodies)[probe]

    return mutate


def _drop_kind(*kinds: str) -> Mutation:
    """Drop the engine's objects of these kinds (the router tier's are linted in test_router.py)."""

    def mutate(bodies: Bodies) -> None:
        bodies[:] = [b for b in bodies if b["kind"] not in kinds or b["metadata"]["name"].endswith("-router")]

    return mutate


def _drop_gpu(bodies: Bodies) -> None:
    resources = _container(bodies)["resources"]
    del resources["limits"]["nvidia.com/gpu"], resources["requests"]["nvidia.com/gpu"]


def _service_wrong_port(bodies: Bodies) -> None:
    _of(bodies, "Service")["spec"]["ports"][0]["targetPort"] = 9090


def _probe_wrong_path(bodies: Bodies) -> None:
    _container(bodies)["readinessProbe"]["httpGet"]["path"] = "/v1/models"


def _service_links(bodies: Bodies) -> None:
    del _of(bodies, "Deployment")["spec"]["template"]["spec"]["enableServiceLinks"]


def _scrape_other_path(bodies: Bodies) -> None:
    _of(bodies, "ServiceMonitor")["spec"]["endpoints"][0]["path"] = "/stats"


def _no_rules_or_dashboards(bodies: Bodies) -> None:
    bodies[:] = [
        b
        for b in bodies
        if b["kind"] != "PrometheusRule" and "grafana_dashboard" not in b["metadata"]["labels"]
    ]


def _removed_metric_name(bodies: Bodies) -> None:
    rule = _of(bodies, "PrometheusRule")["spec"]["groups"][0]["rules"][0]
    rule["expr"] = rule["expr"].replace("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")


def _hpa(field: str, value: Any) -> Mutation:
    def mutate(bodies: Bodies) -> None:
        _of(bodies, "HorizontalPodAutoscaler")["spec"][field] = value

    return mutate


def _hpa_drop(*path: str) -> Mutation:
    def mutate(bodies: Bodies) -> None:
        node = _of(bodies, "HorizontalPodAutoscaler")["spec"]
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


def _hpa_untargeted(bodies: Bodies) -> None:
    del _of(bodies, "HorizontalPodAutoscaler")["spec"]["metrics"][0]["pods"]["target"]["averageValue"]


def _every_namespace(bodies: Bodies) -> None:
    _of(bodies, "NetworkPolicy")["spec"]["ingress"][0]["from"][0] = {"namespaceSelector": {}}


def _ingress_from_anywhere(bodies: Bodies) -> None:
    del _of(bodies, "NetworkPolicy")["spec"]["ingress"][0]["from"]


def _every_address(bodies: Bodies) -> None:
    _of(bodies, "NetworkPolicy")["spec"]["ingress"][0]["from"].append({"ipBlock": {"cidr": "0.0.0.0/0"}})


# (id, mutation of the prod manifests, failing check, words in its message)
REMOVALS: list[tuple[str, Mutation, str, str]] = [
    *[
        (f"no {flag}", _drop_flag(flag), "vllm-args", flag)
        for flag in ("--host", "--port", "--max-model-len", "--gpu-memory-utilization")
    ],
    ("no GPU", _drop_gpu, "gpu", "no GPU in resources.limits"),
    *[
        (f"no {probe}", _drop_probe(probe), "probes", f"no {probe}")
        for probe in ("readinessProbe", "livenessProbe", "startupProbe")
    ],
    ("probe off /health", _probe_wrong_path, "probes", "readinessProbe must GET /health"),
    ("no Service", _drop_kind("Service"), "service", "/v1/completions"),
    ("Service on another port", _service_wrong_port, "service", "no Service selects"),
    ("service links on", _service_links, "service-links", "enableServiceLinks: false"),
    ("no NetworkPolicy", _drop_kind("NetworkPolicy"), "network", "reachable from every namespace"),
    ("peer of every namespace", _every_namespace, "network", "from[0] has an empty namespaceSelector"),
    ("ingress from anywhere", _ingress_from_anywhere, "network", "ingress[0] has no 'from'"),
    ("peer of every address", _every_address, "network", "ipBlock 0.0.0.0/0: every address"),
    ("no --shutdown-timeout", _drop_flag("--shutdown-timeout"), "drain", "aborts every request in flight"),
    ("no ServiceMonitor", _drop_kind("ServiceMonitor"), "monitoring", "scrapes the vLLM pods' /metrics"),
    ("scrape off /metrics", _scrape_other_path, "monitoring", "scrapes the vLLM pods' /metrics"),
    ("no rules or dashboards", _no_rules_or_dashboards, "monitoring", "need at least 4"),
    ("removed metric name", _removed_metric_name, "monitoring", "vllm:gpu_cache_usage_perc no longer exists"),
    (
        "no autoscaler",
        _drop_kind("HorizontalPodAutoscaler"),
        "autoscaling",
        "no HorizontalPodAutoscaler or ScaledObject",
    ),
    ("min above max", _hpa("minReplicas", 9), "autoscaling", "minReplicas (9) <= maxReplicas (8)"),
    ("no minReplicas", _hpa_drop("minReplicas"), "autoscaling", "set both minReplicas and maxReplicas"),
    ("no metrics", _hpa("metrics", []), "autoscaling", "no metrics to scale on"),
    ("metric without target", _hpa_untargeted, "autoscaling", "metrics[0] has no target value"),
    (
        "no scale-down window",
        _hpa_drop("behavior", "scaleDown"),
        "autoscaling",
        "behavior.scaleDown.stabilizationWindowSeconds",
    ),
    (
        "no scale-up window",
        _hpa_drop("behavior", "scaleUp", "stabilizationWindowSeconds"),
        "autoscaling",
        "scaleUp",
    ),
]


# A ServiceMonitor scrapes through the Service: without one, nothing is scraped either.
CASCADES = {"service": ("monitoring",)}


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_example_stacks_pass(stack: str) -> None:
    findings = lint(_bodies(stack))
    assert failed(findings) == []
    checks = {"vllm-args", "gpu", "probes", "service", "service-links", "network", "drain"}
    checks |= {"monitoring"}
    checks |= {"autoscaling"}
    # prod's HPA needs prometheus-adapter: the adapter check runs (and warns: the wiring is undeclared);
    # prod runs the router tier, whose checks run too
    assert {f.check for f in findings} == checks | ({"adapter", *ROUTER_CHECKS} if stack == "prod" else set())


def _adapter(bodies: Bodies) -> dict[str, Any]:
    return next(b for b in bodies if b["kind"] == "ConfigMap" and "config.yaml" in b["data"])


def test_undeclared_adapter_wiring_warns_without_failing() -> None:
    bodies = _bodies("prod")
    findings = lint(bodies)
    (warning,) = [f for f in findings if f.check == "adapter"]
    assert warning.status == "warn"
    assert not warning.failed
    assert str(warning).startswith("WARN  adapter")
    for words in ("vllm_num_requests_waiting", "adapter_rules_values", "rules.existing=vllm-adapter-rules"):
        assert words in warning.message


@pytest.mark.parametrize("wiring", ["helm_values", "existing_configmap"])
def test_declared_adapter_wiring_is_ok(wiring: str) -> None:
    bodies = _bodies("prod")
    _adapter(bodies)["metadata"]["annotations"]["kvstack.dev/adapter-wiring"] = wiring
    (finding,) = [f for f in lint(bodies) if f.check == "adapter"]
    assert finding.status == "ok"
    assert wiring in finding.message


def test_hpa_without_adapter_rules_among_the_manifests_warns() -> None:
    bodies = [b for b in _bodies("prod") if "config.yaml" not in (b.get("data") or {})]
    (finding,) = [f for f in lint(bodies) if f.check == "adapter"]
    assert finding.status == "warn"
    assert "no prometheus-adapter rules are among the manifests" in finding.message


def test_keda_needs_no_adapter() -> None:
    assert not [f for f in lint(_bodies("dev")) if f.check == "adapter"]


@pytest.mark.parametrize(
    ("mutate", "check", "words"), [r[1:] for r in REMOVALS], ids=[r[0] for r in REMOVALS]
)
def test_removing_a_requirement_fails_naming_it(mutate: Mutation, check: str, words: str) -> None:
    bodies = _bodies("prod")
    mutate(bodies)
    bad = failed(lint(bodies))
    assert bad, "lint passed without the requirement"
    assert {f.check for f in bad} <= {check, *CASCADES.get(check, ())}, bad
    assert any(words in f.message for f in bad if f.check == check), bad


def test_removing_the_model_flag_loses_the_workload() -> None:
    bodies = _bodies("prod")
    _drop_flag("--model")(bodies)
    container = _container(bodies)
    container["name"] = "server"  # neither --model nor the conventional name: no vLLM container found
    (finding,) = lint(bodies)
    assert finding.failed
    assert "--model" in finding.message
    container["name"] = "vllm"
    bad = failed(lint(bodies))
    assert [(f.check, "--model" in f.message) for f in bad] == [("vllm-args", True)]


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda s: s.pop("cooldownPeriod"), "no cooldownPeriod"),
        (lambda s: s.__setitem__("minReplicaCount", 3), "minReplicaCount (3) > maxReplicaCount (1)"),
        (lambda s: s["triggers"][0]["metadata"].pop("threshold"), "triggers[0] has no threshold"),
        (lambda s: s.pop("advanced"), "scaleUp.stabilizationWindowSeconds"),
    ],
    ids=["cooldown", "min-above-max", "threshold", "behavior"],
)
def test_keda_requirements(mutate: Callable[[dict[str, Any]], Any], words: str) -> None:
    bodies = _bodies("dev")
    mutate(_of(bodies, "ScaledObject")["spec"])
    bad = failed(lint(bodies))
    assert [f.check for f in bad] == ["autoscaling"] * len(bad)
    assert any(words in f.message for f in bad), bad


def test_pod_monitor_is_accepted_and_checked() -> None:
    bodies = _bodies("dev")
    assert failed(lint(bodies)) == []
    _of(bodies, "PodMonitor")["spec"]["podMetricsEndpoints"][0]["port"] = "metrics"
    assert [f.check for f in failed(lint(bodies))] == ["monitoring"]


def test_an_unreadable_promql_expression_fails_the_monitoring_check() -> None:
    """The names are read by kvstack.contract.promql (tests/contract holds its cases); an expression it
    cannot lex is a failure that quotes the expression, not a count of zero metrics."""
    bodies = _bodies("dev")
    rule = _of(bodies, "PrometheusRule")
    rule["spec"]["groups"][0]["rules"][0]["expr"] = "sum(x) ; drop"
    bad = failed(lint(bodies))
    assert [f.check for f in bad] == ["monitoring"]
    assert "sum(x) ; drop" in bad[0].message


def test_monitored_metrics_leave_out_recording_rules() -> None:
    names, sources = monitored_metrics(_bodies("prod"))
    assert "vllm:kv_cache_usage_perc" in names
    assert "vllm:time_to_first_token_seconds" in names  # _bucket folded into the histogram's name
    assert not any(n.startswith("namespace_") for n in names)  # recorded series are not scraped metrics
    assert any(s.startswith("PrometheusRule/") for s in sources)
    assert any(s.startswith("ConfigMap/") for s in sources)
