"""The production-spec check, run on plain manifests (a stack's, or a folder of rendered YAML).

Each check is a small pure function returning :class:`Finding` s; a stack passes when none fails:

* ``vllm-args``: the vLLM container passes ``--model --host --port --max-model-len --gpu-memory-utilization``
* ``gpu``: the container's limits ask for at least one GPU (``nvidia.com/gpu`` or another ``*/gpu``)
* ``probes``: readiness, liveness and startup probes, each on vLLM's ``/health``
* ``service``: a Service selects the pods and reaches the port that serves ``/v1/completions``
* ``service-links``: ``enableServiceLinks: false`` (a Service named vllm breaks vLLM's VLLM_PORT)
* ``drain``: ``--shutdown-timeout`` > 0 and the grace period holds preStop + drain + margin (infra/drain.py)
* ``monitoring``: a ServiceMonitor/PodMonitor scrapes ``/metrics``; rules and dashboards use >= 4
  metrics, >= 1 of them vLLM's, and none of vLLM's removed names
* ``autoscaling``: an HPA or KEDA ScaledObject on the Deployment with min <= max, targets on every
  metric, and scale-up/scale-down stabilization windows
* ``network``: a NetworkPolicy selects the vLLM pods, and none of its ingress rules admits every
  namespace (no ``from``, an empty ``namespaceSelector``) or every address (``0.0.0.0/0``)
* ``adapter``: (WARN, never a failure) an HPA on custom ``Pods`` metrics whose prometheus-adapter wiring
  is not declared (``monitoring.adapter_wiring``): the HPA would have nothing to scale on
* ``router`` (WARN): the workload may run several replicas with no router in front
* ``router-image``, ``router-select``, ``router-rbac``, ``router-probes``, ``router-service``,
  ``router-metrics``: a vllm-router Deployment is pinned, discovers exactly the engine pods on their port
  with the RBAC and token that needs, has probes, a Service, and metrics Prometheus can reach and scrapes
* ``router-render``: a ``cache_aware`` router's engines serve the render routes it reads (vLLM >= 0.30
  only with ``--enable-scale-out``, which <= 0.28 refuses; WARN when the engine's tag names no release)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from kvstack.contract.metrics import CATALOGUE, REMOVED, VLLM_PREFIX, is_vllm_name, metric_of
from kvstack.contract.promql import metric_names
from kvstack.contract.scale_out import SCALE_OUT_FLAG, policy_needs_render, tag_needs_scale_out_flag
from kvstack.infra.config.sections.image import MOVING_TAGS
from kvstack.infra.drain import DRAIN_MARGIN_SECONDS, drain_problem, shutdown_timeout_seconds

REQUIRED_FLAGS = ("--model", "--host", "--port", "--max-model-len", "--gpu-memory-utilization")
MIN_METRICS = 4
GPU_RESOURCE = re.compile(r"^(nvidia\.com/(gpu|mig-.+)|amd\.com/gpu|gpu\.intel\.com/.+|[a-z0-9.-]+/gpu)$")
HEALTH_PATH = "/health"


class UnreadablePromQL(ValueError):
    """An expression in the manifests that the PromQL reader cannot lex."""


@dataclass(frozen=True)
class Finding:
    check: str
    status: Literal["ok", "fail", "warn", "note"]
    message: str

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    def __str__(self) -> str:
        return f"{self.status.upper():4}  {self.check:14} {self.message}"


def _ok(check: str, message: str) -> Finding:
    return Finding(check, "ok", message)


def _fail(check: str, message: str) -> Finding:
    return Finding(check, "fail", message)


def _kind(bodies: Iterable[dict[str, Any]], *kinds: str) -> list[dict[str, Any]]:
    return [b for b in bodies if b.get("kind") in kinds]


def _name(body: dict[str, Any]) -> str:
    return f"{body.get('kind')}/{(body.get('metadata') or {}).get('name')}"


def _pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    return dict(((deployment.get("spec") or {}).get("template") or {}).get("spec") or {})


def _pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    return dict(
        (((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}
    )


def _argv(container: dict[str, Any]) -> list[str]:
    return [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]


def flag_values(argv: Sequence[str]) -> dict[str, str | None]:
    """``--flag value`` and ``--flag=value`` pairs (value None when the flag has none)."""
    out: dict[str, str | None] = {}
    for i, arg in enumerate(argv):
        if not arg.startswith("--"):
            continue
        flag, eq, value = arg.partition("=")
        if eq:
            out[flag] = value
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            out[flag] = argv[i + 1]
        else:
            out[flag] = None
    return out


def vllm_container(deployment: dict[str, Any]) -> dict[str, Any] | None:
    """The container running vLLM: the one passing --model (else one named vllm)."""
    containers = _pod_spec(deployment).get("containers") or []
    for c in containers:
        if "--model" in flag_values(_argv(c)):
            return dict(c)
    for c in containers:
        if c.get("name") == "vllm":
            return dict(c)
    return None


def _workload(bodies: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]] | Finding:
    for deployment in _kind(bodies, "Deployment", "StatefulSet"):
        container = vllm_container(deployment)
        if container is not None:
            return deployment, container
    return _fail("workload", "no Deployment with a vLLM container (one passing --model)")


def check_args(deployment: dict[str, Any], container: dict[str, Any]) -> list[Finding]:
    flags = flag_values(_argv(container))
    missing = [f for f in REQUIRED_FLAGS if flags.get(f) in (None, "")]
    if missing:
        return [_fail("vllm-args", f"{_name(deployment)} does not pass {' '.join(missing)} (with a value)")]
    shown = " ".join(f"{f} {flags[f]}" for f in REQUIRED_FLAGS)
    return [_ok("vllm-args", shown)]


def check_gpu(deployment: dict[str, Any], container: dict[str, Any]) -> list[Finding]:
    resources = container.get("resources") or {}
    limits = resources.get("limits") or {}
    gpus = {k: v for k, v in limits.items() if GPU_RESOURCE.match(str(k))}
    if not gpus:
        return [
            _fail(
                "gpu",
                f"{_name(deployment)}: container {container.get('name')} has no GPU in resources.limits",
            )
        ]
    out = []
    for key, value in gpus.items():
        try:
            count = int(str(value))
        except ValueError:
            count = 0
        if count < 1:
            out.append(_fail("gpu", f"{key} limit is {value!r}; needs a whole number >= 1"))
        requested = (resources.get("requests") or {}).get(key)
        if requested is not None and str(requested) != str(value):
            out.append(_fail("gpu", f"{key} request {requested} differs from limit {value} (must be equal)"))
    return out or [_ok("gpu", ", ".join(f"{k}: {v}" for k, v in gpus.items()))]


def _port_matches(port: Any, container: dict[str, Any], number: int | None) -> bool:
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return number is not None and int(port) == number
    return any(
        p.get("name") == port and p.get("containerPort") == number for p in container.get("ports") or []
    )


def serving_port(container: dict[str, Any]) -> int | None:
    value = flag_values(_argv(container)).get("--port")
    try:
        return int(value) if value is not None else 8000
    except ValueError:
        return None


def check_probes(deployment: dict[str, Any], container: dict[str, Any]) -> list[Finding]:
    port = serving_port(container)
    out: list[Finding] = []
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        spec = container.get(probe)
        if not spec:
            out.append(_fail("probes", f"{_name(deployment)}: no {probe}"))
            continue
        http = spec.get("httpGet") or {}
        if http.get("path") != HEALTH_PATH or not _port_matches(http.get("port"), container, port):
            out.append(_fail("probes", f"{probe} must GET {HEALTH_PATH} on the serving port {port}"))
    if not out:
        startup = container["startupProbe"]
        budget = int(startup.get("periodSeconds", 10)) * int(startup.get("failureThreshold", 3))
        out.append(
            _ok("probes", f"readiness, liveness and startup on {HEALTH_PATH} (startup budget {budget} s)")
        )
    return out


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _serving_services(
    bodies: Sequence[dict[str, Any]], deployment: dict[str, Any], container: dict[str, Any]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(Service, port) pairs that reach the vLLM port of the deployment's pods."""
    labels, number = _pod_labels(deployment), serving_port(container)
    out = []
    for svc in _kind(bodies, "Service"):
        spec = svc.get("spec") or {}
        if not _selects(spec.get("selector") or {}, labels):
            continue
        for port in spec.get("ports") or []:
            if _port_matches(port.get("targetPort", port.get("port")), container, number):
                out.append((svc, port))
    return out


def check_service(
    bodies: Sequence[dict[str, Any]], deployment: dict[str, Any], container: dict[str, Any]
) -> list[Finding]:
    pairs = _serving_services(bodies, deployment, container)
    if not pairs:
        return [
            _fail(
                "service",
                f"no Service selects {_name(deployment)}'s pods on the vLLM port {serving_port(container)} "
                "(the port serving /v1/completions)",
            )
        ]
    svc, port = pairs[0]
    meta = svc.get("metadata") or {}
    return [
        _ok(
            "service",
            f"{_name(svc)} port {port.get('name', '')}:{port.get('port')} -> /v1/completions "
            f"(http://{meta.get('name')}.{meta.get('namespace', 'default')}.svc:{port.get('port')}"
            "/v1/completions)",
        )
    ]


def check_service_links(deployment: dict[str, Any]) -> list[Finding]:
    if _pod_spec(deployment).get("enableServiceLinks") is False:
        return [_ok("service-links", "enableServiceLinks: false")]
    return [_fail("service-links", f"{_name(deployment)}: set enableServiceLinks: false (VLLM_PORT clash)")]


def pre_stop_sleep_seconds(container: dict[str, Any]) -> int:
    """The preStop hook's sleep: ``sleep N`` run by an exec hook, or the native ``sleep`` action."""
    pre_stop = (container.get("lifecycle") or {}).get("preStop") or {}
    native = (pre_stop.get("sleep") or {}).get("seconds")
    if isinstance(native, int):
        return native
    command = " ".join(str(c) for c in (pre_stop.get("exec") or {}).get("command") or [])
    found = re.search(r"\bsleep\s+([0-9]+)\b", command)
    return int(found.group(1)) if found else 0


def check_drain(deployment: dict[str, Any], container: dict[str, Any]) -> list[Finding]:
    """vLLM drains in-flight requests on SIGTERM, and the kubelet gives it the time to (docs/infra.md)."""
    grace = int(_pod_spec(deployment).get("terminationGracePeriodSeconds", 30))
    pre_stop = pre_stop_sleep_seconds(container)
    value = flag_values(_argv(container)).get("--shutdown-timeout")
    try:
        timeout = int(value) if value is not None else 0
    except ValueError:
        return [_fail("drain", f"--shutdown-timeout {value!r} is not a whole number of seconds")]
    derived = shutdown_timeout_seconds(grace, pre_stop)
    out = []
    problem = drain_problem(grace, pre_stop)
    if problem is not None:
        out.append(_fail("drain", f"terminationGracePeriodSeconds {problem}"))
    if timeout <= 0:
        out.append(
            _fail(
                "drain",
                f"{_name(deployment)} passes no --shutdown-timeout: vLLM (default 0) aborts every request "
                f"in flight on SIGTERM, so each rollout and scale-down cuts streams; pass --shutdown-timeout "
                f"{max(derived, 1)} (grace period - preStop - {DRAIN_MARGIN_SECONDS} s margin)",
            )
        )
    elif pre_stop + timeout + DRAIN_MARGIN_SECONDS > grace:
        out.append(
            _fail(
                "drain",
                f"preStop {pre_stop} s + --shutdown-timeout {timeout} s + {DRAIN_MARGIN_SECONDS} s margin "
                f"exceed terminationGracePeriodSeconds {grace}: the kubelet kills vLLM mid-drain; "
                f"use --shutdown-timeout {derived} or a longer grace period",
            )
        )
    return out or [
        _ok(
            "drain",
            f"preStop {pre_stop} s + --shutdown-timeout {timeout} s + {DRAIN_MARGIN_SECONDS} s margin "
            f"<= terminationGracePeriodSeconds {grace}",
        )
    ]


# --------------------------------------------------------------------------------------------- metrics


def _exprs(value: Any) -> Iterable[str]:
    if isinstance(value, dict):
        if value.get("type") == "datasource":  # a datasource variable's query is a plugin type
            return
        for key, item in value.items():
            if key in {"expr", "query"} and isinstance(item, str):
                yield item
            else:
                yield from _exprs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _exprs(item)


def monitored_metrics(bodies: Sequence[dict[str, Any]]) -> tuple[set[str], list[str]]:
    """Scraped metric names used by PrometheusRules, dashboards and autoscalers; and where they came from."""
    exprs: list[str] = []
    recorded: set[str] = set()
    sources: list[str] = []
    for rule in _kind(bodies, "PrometheusRule"):
        sources.append(_name(rule))
        for group in (rule.get("spec") or {}).get("groups") or []:
            for r in group.get("rules") or []:
                if "record" in r:
                    recorded.add(str(r["record"]))
                exprs.append(str(r.get("expr", "")))
    for cm in _kind(bodies, "ConfigMap"):
        for key, text in (cm.get("data") or {}).items():
            if not str(key).endswith(".json"):
                continue
            try:
                document = json.loads(text)
            except json.JSONDecodeError:
                continue
            sources.append(f"{_name(cm)}:{key}")
            exprs += list(_exprs(document))
    for so in _kind(bodies, "ScaledObject"):
        sources.append(_name(so))
        for trigger in (so.get("spec") or {}).get("triggers") or []:
            query = (trigger.get("metadata") or {}).get("query")
            if isinstance(query, str):
                exprs.append(query)
    names: set[str] = set()
    for expr in exprs:
        try:
            names |= metric_names(expr)
        except ValueError as exc:  # not PromQL we can read: say so rather than count nothing
            raise UnreadablePromQL(f"{exc} in {expr!r}") from exc
    names -= recorded
    return {metric_of(n) for n in names}, sources


def check_monitoring(
    bodies: Sequence[dict[str, Any]], deployment: dict[str, Any], container: dict[str, Any]
) -> list[Finding]:
    out: list[Finding] = []
    scrapes = []
    pod_labels = _pod_labels(deployment)
    services = {id(s): (s, p) for s, p in _serving_services(bodies, deployment, container)}
    for mon in _kind(bodies, "ServiceMonitor"):
        spec = mon.get("spec") or {}
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        for svc, port in services.values():
            svc_labels = (svc.get("metadata") or {}).get("labels") or {}
            for ep in spec.get("endpoints") or []:
                if _selects(selector, svc_labels) and ep.get("port") == port.get("name"):
                    scrapes.append((mon, ep))
    for mon in _kind(bodies, "PodMonitor"):
        spec = mon.get("spec") or {}
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        for ep in spec.get("podMetricsEndpoints") or []:
            if _selects(selector, pod_labels) and _port_matches(
                ep.get("port"), container, serving_port(container)
            ):
                scrapes.append((mon, ep))
    scrapes = [(m, ep) for m, ep in scrapes if ep.get("path", "/metrics") == "/metrics"]
    if scrapes:
        out.append(_ok("monitoring", f"{_name(scrapes[0][0])} scrapes /metrics on the vLLM port"))
    else:
        out.append(_fail("monitoring", "no ServiceMonitor or PodMonitor scrapes the vLLM pods' /metrics"))
    try:
        names, sources = monitored_metrics(bodies)
    except UnreadablePromQL as exc:
        return [*out, _fail("monitoring", f"cannot read a PromQL expression of the rules/dashboards: {exc}")]
    vllm = sorted(n for n in names if is_vllm_name(n))
    removed = sorted(n for n in names if n in REMOVED)
    for name in removed:
        out.append(_fail("monitoring", f"{name} no longer exists in vLLM: use {REMOVED[name]}"))
    unknown = sorted(n for n in vllm if n not in CATALOGUE and n not in REMOVED)
    if unknown:
        out.append(
            Finding("monitoring", "note", f"vLLM metric names not in kvstack's list: {', '.join(unknown)}")
        )
    if len(names) < MIN_METRICS or not vllm:
        out.append(
            _fail(
                "monitoring",
                f"rules/dashboards/autoscaler use {len(names)} metrics ({len(vllm)} vLLM-specific); need "
                f"at least {MIN_METRICS} with at least one {VLLM_PREFIX}* "
                f"(sources: {', '.join(sources) or 'none'})",
            )
        )
    else:
        out.append(
            _ok(
                "monitoring",
                f"{len(names)} metrics used, {len(vllm)} vLLM-specific ({', '.join(vllm[:6])}, ...)",
            )
        )
    return out


# ------------------------------------------------------------------------------------------ autoscaling


def _targets_deployment(ref: dict[str, Any], deployment: dict[str, Any]) -> bool:
    return ref.get("kind", "Deployment") == deployment.get("kind") and ref.get("name") == (
        deployment.get("metadata") or {}
    ).get("name")


def _behavior_findings(where: str, behavior: dict[str, Any]) -> list[Finding]:
    out = []
    for direction in ("scaleUp", "scaleDown"):
        window = (behavior.get(direction) or {}).get("stabilizationWindowSeconds")
        if not isinstance(window, int):
            out.append(_fail("autoscaling", f"{where}: no behavior.{direction}.stabilizationWindowSeconds"))
    return out


def _hpa_target(metric: dict[str, Any]) -> dict[str, Any]:
    for key in ("pods", "resource", "object", "external", "containerResource"):
        if key in metric:
            return dict((metric[key] or {}).get("target") or {})
    return {}


def check_autoscaling(bodies: Sequence[dict[str, Any]], deployment: dict[str, Any]) -> list[Finding]:
    for hpa in _kind(bodies, "HorizontalPodAutoscaler"):
        spec = hpa.get("spec") or {}
        if not _targets_deployment(spec.get("scaleTargetRef") or {}, deployment):
            continue
        where = _name(hpa)
        out = []
        lo, hi = spec.get("minReplicas"), spec.get("maxReplicas")
        if not isinstance(lo, int) or not isinstance(hi, int):
            out.append(_fail("autoscaling", f"{where}: set both minReplicas and maxReplicas"))
        elif lo > hi or lo < 1:
            out.append(_fail("autoscaling", f"{where}: needs 1 <= minReplicas ({lo}) <= maxReplicas ({hi})"))
        metrics = spec.get("metrics") or []
        if not metrics:
            out.append(_fail("autoscaling", f"{where}: no metrics to scale on"))
        for i, metric in enumerate(metrics):
            target = _hpa_target(metric)
            if not any(k in target for k in ("averageValue", "averageUtilization", "value")):
                out.append(_fail("autoscaling", f"{where}: metrics[{i}] has no target value"))
        out += _behavior_findings(where, spec.get("behavior") or {})
        if not out:
            names = [
                ((m.get("pods") or m.get("object") or m.get("external") or {}).get("metric") or {}).get(
                    "name"
                )
                for m in metrics
            ]
            out.append(
                _ok("autoscaling", f"{where}: {lo}..{hi} replicas on {', '.join(str(n) for n in names)}")
            )
        return out
    for so in _kind(bodies, "ScaledObject"):
        spec = so.get("spec") or {}
        if not _targets_deployment(spec.get("scaleTargetRef") or {}, deployment):
            continue
        where = _name(so)
        out = []
        lo, hi = spec.get("minReplicaCount"), spec.get("maxReplicaCount")
        if not isinstance(lo, int) or not isinstance(hi, int):
            out.append(_fail("autoscaling", f"{where}: set both minReplicaCount and maxReplicaCount"))
        elif lo > hi:
            out.append(_fail("autoscaling", f"{where}: minReplicaCount ({lo}) > maxReplicaCount ({hi})"))
        triggers = spec.get("triggers") or []
        if not triggers:
            out.append(_fail("autoscaling", f"{where}: no triggers"))
        for i, trigger in enumerate(triggers):
            if "threshold" not in (trigger.get("metadata") or {}):
                out.append(_fail("autoscaling", f"{where}: triggers[{i}] has no threshold"))
        behavior = ((spec.get("advanced") or {}).get("horizontalPodAutoscalerConfig") or {}).get(
            "behavior"
        ) or {}
        out += _behavior_findings(where, behavior)
        if "cooldownPeriod" not in spec:
            out.append(_fail("autoscaling", f"{where}: no cooldownPeriod"))
        if not out:
            out.append(_ok("autoscaling", f"{where}: {lo}..{hi} replicas on {len(triggers)} KEDA triggers"))
        return out
    return [_fail("autoscaling", f"no HorizontalPodAutoscaler or ScaledObject scales {_name(deployment)}")]


# The adapter rules ConfigMap's annotations (infra/manifests/monitoring.py; kept literal here so that this
# module stays importable on its own).
_ADAPTER_ANNOTATION = ("kvstack.dev/config", "prometheus-adapter")
_ADAPTER_WIRING_ANNOTATION = "kvstack.dev/adapter-wiring"
ADAPTER_WIRINGS = frozenset({"helm_values", "existing_configmap"})


def check_adapter_wiring(bodies: Sequence[dict[str, Any]], deployment: dict[str, Any]) -> list[Finding]:
    """WARN when an HPA scales on custom ``Pods`` metrics but nothing says how prometheus-adapter gets them.

    A warning, not a failure: the adapter lives outside the stack (often another team's Helm release) and
    may already publish these metrics; kvstack cannot see the cluster. But an undeclared wiring is the
    usual way an HPA ends up with ``<unknown>`` targets, so it must not pass silently.
    """
    custom: list[str] = []
    for hpa in _kind(bodies, "HorizontalPodAutoscaler"):
        spec = hpa.get("spec") or {}
        if not _targets_deployment(spec.get("scaleTargetRef") or {}, deployment):
            continue
        for metric in spec.get("metrics") or []:
            if metric.get("type") == "Pods":
                custom.append(str(((metric.get("pods") or {}).get("metric") or {}).get("name")))
    if not custom:
        return []
    adapters = [
        cm
        for cm in _kind(bodies, "ConfigMap")
        if ((cm.get("metadata") or {}).get("annotations") or {}).get(_ADAPTER_ANNOTATION[0])
        == _ADAPTER_ANNOTATION[1]
    ]
    metrics = ", ".join(custom)
    if not adapters:
        return [
            Finding(
                "adapter",
                "warn",
                f"the HPA reads custom metrics {metrics} but no prometheus-adapter rules are among the "
                "manifests: make sure the adapter publishes them (docs/infra.md, 'Autoscaling with HPA')",
            )
        ]
    out = []
    for cm in adapters:
        meta = cm.get("metadata") or {}
        wiring = (meta.get("annotations") or {}).get(_ADAPTER_WIRING_ANNOTATION, "undeclared")
        if wiring in ADAPTER_WIRINGS:
            out.append(_ok("adapter", f"prometheus-adapter gets the rules for {metrics} via {wiring}"))
        else:
            out.append(
                Finding(
                    "adapter",
                    "warn",
                    f"the HPA scales on {metrics}, which only prometheus-adapter publishes, but "
                    "kvstack:monitoring.adapter_wiring is undeclared: nothing mounts "
                    f"{_name(cm)} in {meta.get('namespace')}. Feed the stack output adapter_rules_values "
                    "to the chart's rules.custom (adapter_wiring: helm_values) or set the chart's "
                    f"rules.existing={meta.get('name')} (adapter_wiring: existing_configmap); "
                    "docs/infra.md, 'Autoscaling with HPA: wiring prometheus-adapter'",
                )
            )
    return out


def _policy_selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    spec = policy.get("spec") or {}
    selector = spec.get("podSelector") or {}
    match = selector.get("matchLabels") or {}
    if selector.get("matchExpressions"):
        return False  # not evaluated here: treat as not selecting, so lint never over-trusts it
    types = spec.get("policyTypes") or (["Ingress"] if "ingress" in spec or "egress" not in spec else [])
    return "Ingress" in types and all(labels.get(k) == v for k, v in match.items())


def _open_peers(policy: dict[str, Any]) -> list[str]:
    """What each ingress rule of a policy admits that reaches beyond what it names."""
    out = []
    for i, rule in enumerate((policy.get("spec") or {}).get("ingress") or []):
        peers = rule.get("from")
        if not peers:
            out.append(f"ingress[{i}] has no 'from': every source in every namespace")
            continue
        for j, peer in enumerate(peers):
            if "namespaceSelector" in peer and not (peer["namespaceSelector"] or {}):
                out.append(f"ingress[{i}].from[{j}] has an empty namespaceSelector: every namespace")
            cidr = (peer.get("ipBlock") or {}).get("cidr", "")
            if cidr.endswith("/0"):
                out.append(f"ingress[{i}].from[{j}] ipBlock {cidr}: every address")
    return out


def check_network(bodies: Sequence[dict[str, Any]], deployment: dict[str, Any]) -> list[Finding]:
    """Fails when the vLLM pods are reachable from every namespace."""
    where = _name(deployment)
    labels = _pod_labels(deployment)
    policies = [p for p in _kind(bodies, "NetworkPolicy") if _policy_selects(p, labels)]
    if not policies:
        return [
            _fail(
                "network",
                f"{where} is reachable from every namespace: no NetworkPolicy selects its pods "
                "(kvstack:network.enabled)",
            )
        ]
    out = [
        _fail("network", f"{_name(p)} opens {where}: {problem}")
        for p in policies
        for problem in _open_peers(p)
    ]
    if out:
        return out
    names = ", ".join(_name(p) for p in policies)
    return [_ok("network", f"{names} guards {where}: no rule admits every namespace or every address")]


# ----------------------------------------------------------------------------------------- router tier
# vllm-router (0.1.17) in front of the replicas; its flags, ports and paths are described in
# infra/config/sections/router.py (kept literal here so that this module stays importable on its own).

_ROUTER_PROBE_PATHS = frozenset({"/liveness", "/readiness", "/health"})
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_DISCOVERY_VERBS = frozenset({"list", "watch"})


def router_container(deployment: dict[str, Any]) -> dict[str, Any] | None:
    """The container running vllm-router: its command names it, or it passes discovery/worker flags."""
    for c in _pod_spec(deployment).get("containers") or []:
        argv = _argv(c)
        flags = flag_values(argv)
        if any("vllm-router" in a or "vllm_router" in a for a in argv[:2]) or (
            "--policy" in flags and ("--service-discovery" in flags or "--worker-urls" in flags)
        ):
            return dict(c)
    return None


def _routers(bodies: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    out = []
    for deployment in _kind(bodies, "Deployment"):
        container = router_container(deployment)
        if container is not None:
            out.append((deployment, container))
    return out


def _max_replicas(bodies: Sequence[dict[str, Any]], deployment: dict[str, Any]) -> int:
    """The most replicas the workload may run: its autoscaler's maximum, else spec.replicas."""
    for hpa in _kind(bodies, "HorizontalPodAutoscaler"):
        spec = hpa.get("spec") or {}
        if _targets_deployment(spec.get("scaleTargetRef") or {}, deployment):
            return int(spec.get("maxReplicas") or 1)
    for so in _kind(bodies, "ScaledObject"):
        spec = so.get("spec") or {}
        if _targets_deployment(spec.get("scaleTargetRef") or {}, deployment):
            return int(spec.get("maxReplicaCount") or 1)
    return int((deployment.get("spec") or {}).get("replicas", 1))


def _selector_arg(argv: Sequence[str]) -> dict[str, str]:
    """``--selector k=v k2=v2`` (nargs="+", up to the next flag)."""
    out: dict[str, str] = {}
    if "--selector" not in argv:
        return out
    for arg in argv[list(argv).index("--selector") + 1 :]:
        if arg.startswith("--"):
            break
        key, eq, value = arg.partition("=")
        if eq:
            out[key] = value
    return out


def image_tag(image: str) -> str | None:
    """The tag of an image reference (``repo:tag``, ``repo:tag@sha256:...``); None when it has none."""
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else None


def _image_pinned(image: str) -> bool:
    tag = image_tag(image)
    return "@sha256:" in image or (tag is not None and tag.lower() not in MOVING_TAGS)


def check_router_presence(bodies: Sequence[dict[str, Any]], deployment: dict[str, Any]) -> list[Finding]:
    """WARN when several replicas sit behind a plain Service: a session's turns spread over the replicas
    and find their cached prefix about 1/N of the time."""
    replicas = _max_replicas(bodies, deployment)
    if replicas <= 1 or _routers(bodies):
        return []
    return [
        Finding(
            "router",
            "warn",
            f"{_name(deployment)} runs up to {replicas} replicas behind a plain Service: kube-proxy spreads "
            f"a session's turns, which find their cached prefix about 1/{replicas} of the time; put a "
            "cache-aware router in front (kvstack:router, docs/infra.md 'The router tier')",
        )
    ]


def _bound_rules(
    bodies: Sequence[dict[str, Any]], account: str, namespace: str | None
) -> list[dict[str, Any]]:
    """The rules of every Role/ClusterRole bound to ``account`` by a binding among the manifests."""
    out: list[dict[str, Any]] = []
    for binding in _kind(bodies, "RoleBinding", "ClusterRoleBinding"):
        subjects = binding.get("subjects") or []
        if not any(
            s.get("kind") == "ServiceAccount"
            and s.get("name") == account
            and s.get("namespace", (binding.get("metadata") or {}).get("namespace")) == namespace
            for s in subjects
        ):
            continue
        ref = binding.get("roleRef") or {}
        for role in _kind(bodies, str(ref.get("kind"))):
            if (role.get("metadata") or {}).get("name") == ref.get("name"):
                out += list(role.get("rules") or [])
    return out


def _router_discovery(
    bodies: Sequence[dict[str, Any]],
    router: dict[str, Any],
    container: dict[str, Any],
    engine: dict[str, Any],
    engine_container: dict[str, Any],
) -> list[Finding]:
    """Discovery finds exactly the engine's pods, on the vLLM port, in the engine's namespace."""
    where, argv = _name(router), _argv(container)
    flags = flag_values(argv)
    if "--service-discovery" not in flags:
        if "--worker-urls" in flags:
            message = f"{where}: static --worker-urls; pods come and go: use --service-discovery"
            return [Finding("router-select", "warn", message)]
        return [_fail("router-select", f"{where}: neither --service-discovery nor --worker-urls")]
    selector, engine_port = _selector_arg(argv), serving_port(engine_container)
    engine_ns = (engine.get("metadata") or {}).get("namespace")
    fails = []
    if not _selects(selector, _pod_labels(engine)):
        fails.append(f"--selector {selector} does not match {_name(engine)}'s pod labels")
    if _selects(selector, _pod_labels(router)):
        fails.append(f"--selector {selector} matches the router's own pods")
    port = flags.get("--service-discovery-port") or "80"  # vllm-router's default
    if str(port) != str(engine_port):
        fails.append(f"--service-discovery-port {port} is not the vLLM port {engine_port}")
    namespace = flags.get("--service-discovery-namespace")
    if namespace is None:
        fails.append("no --service-discovery-namespace: it would watch every namespace")
    elif namespace != engine_ns:
        fails.append(f"--service-discovery-namespace {namespace} is not {engine_ns}")
    if fails:
        return [_fail("router-select", f"{where}: {f}") for f in fails]
    policy = flags.get("--policy") or "cache_aware"
    return [_ok("router-select", f"{where} discovers {_name(engine)}'s pods ({policy})")]


def _router_rbac(bodies: Sequence[dict[str, Any]], router: dict[str, Any]) -> list[Finding]:
    """Discovery's token and permissions: list and watch pods, nothing more."""
    where, pod = _name(router), _pod_spec(router)
    account = pod.get("serviceAccountName")
    if not account:
        return [_fail("router-rbac", f"{where}: no serviceAccountName: the default account cannot list pods")]
    accounts = {(a.get("metadata") or {}).get("name"): a for a in _kind(bodies, "ServiceAccount")}
    mount = pod.get("automountServiceAccountToken")
    if mount is None and account in accounts:
        mount = accounts[account].get("automountServiceAccountToken")
    if mount is False:
        # vllm-router 0.1.17 then logs "Continuing without service discovery" and never finds an engine
        return [_fail("router-rbac", f"{where}: the service-account token is not mounted: discovery fails")]
    rules = _bound_rules(bodies, str(account), (router.get("metadata") or {}).get("namespace"))
    pods = [r for r in rules if "pods" in (r.get("resources") or []) and "" in (r.get("apiGroups") or [])]
    verbs = {str(v) for r in pods for v in r.get("verbs") or []}
    if not (verbs >= _DISCOVERY_VERBS or "*" in verbs):
        return [
            _fail(
                "router-rbac", f"ServiceAccount {account} is not bound to a role that lists and watches pods"
            )
        ]
    extra = any(set(r.get("resources") or []) - {"pods"} for r in rules) or verbs - {"get", "list", "watch"}
    if extra:
        return [
            Finding("router-rbac", "warn", f"ServiceAccount {account} may do more than get/list/watch pods")
        ]
    return [_ok("router-rbac", f"ServiceAccount {account}: get/list/watch pods, nothing else")]


def _router_probes(router: dict[str, Any], container: dict[str, Any], port: int) -> list[Finding]:
    bad = []
    for probe in ("readinessProbe", "livenessProbe"):
        http = (container.get(probe) or {}).get("httpGet") or {}
        if http.get("path") not in _ROUTER_PROBE_PATHS or not _port_matches(
            http.get("port"), container, port
        ):
            bad.append(probe)
    if bad:
        message = f"{_name(router)}: {' and '.join(bad)} must GET /readiness or /liveness on port {port}"
        return [_fail("router-probes", message)]
    return [_ok("router-probes", f"{_name(router)}: readiness and liveness on the router's port {port}")]


def _services_of(
    bodies: Sequence[dict[str, Any]], router: dict[str, Any], container: dict[str, Any], port: int
) -> list[dict[str, Any]]:
    return [
        svc
        for svc in _kind(bodies, "Service")
        if _selects((svc.get("spec") or {}).get("selector") or {}, _pod_labels(router))
        and any(
            _port_matches(p.get("targetPort", p.get("port")), container, port)
            for p in (svc.get("spec") or {}).get("ports") or []
        )
    ]


def _router_metrics(
    bodies: Sequence[dict[str, Any]], router: dict[str, Any], container: dict[str, Any]
) -> list[Finding]:
    """The exporter listens beyond loopback and a ServiceMonitor/PodMonitor scrapes its port."""
    where, flags = _name(router), flag_values(_argv(container))
    host = flags.get("--prometheus-host") or "127.0.0.1"  # vllm-router's default
    port = int(flags.get("--prometheus-port") or 29000)
    if host in _LOOPBACK:
        return [_fail("router-metrics", f"{where}: metrics bound to {host}: pass --prometheus-host 0.0.0.0")]
    services = _services_of(bodies, router, container, port)
    service_ports = {
        str(p.get("name"))
        for s in services
        for p in (s.get("spec") or {}).get("ports") or []
        if p.get("name")
    }
    for mon in _kind(bodies, "ServiceMonitor", "PodMonitor"):
        spec = mon.get("spec") or {}
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        if mon.get("kind") == "PodMonitor":
            hit = _selects(selector, _pod_labels(router)) and any(
                _port_matches(ep.get("port"), container, port) for ep in spec.get("podMetricsEndpoints") or []
            )
        else:
            hit = any(
                _selects(selector, (s.get("metadata") or {}).get("labels") or {}) for s in services
            ) and any(ep.get("port") in service_ports for ep in spec.get("endpoints") or [])
        if hit:
            return [_ok("router-metrics", f"{_name(mon)} scrapes {where}'s metrics port {port}")]
    return [_fail("router-metrics", f"no ServiceMonitor or PodMonitor scrapes {where}'s metrics port {port}")]


def _router_render(policy: str, engine: dict[str, Any], engine_container: dict[str, Any]) -> Finding:
    """A policy that reads token ids from the engines' render routes gets an engine that serves them:
    vLLM >= 0.30 only with --enable-scale-out, <= 0.28 always (and it refuses the flag). Without them
    vllm-router 0.1.17 load-balances, nothing fails, and the fleet loses its prefix-cache hits."""
    engine_image = str(engine_container.get("image") or "")
    engine_flags = flag_values(_argv(engine_container))
    where = f"{_name(engine)} ({engine_image})"
    if not policy_needs_render(policy):
        return _ok("router-render", f"policy {policy} reads no render routes")
    needs = tag_needs_scale_out_flag(image_tag(engine_image))
    has = SCALE_OUT_FLAG in engine_flags
    if needs is True and not has:
        return _fail(
            "router-render",
            f"{policy} reads token ids from the engines' render routes, and {where} serves them only with "
            f"{SCALE_OUT_FLAG}: without it the router load-balances and the fleet loses its cache hits",
        )
    if needs is False and has:
        return _fail("router-render", f"{where} predates {SCALE_OUT_FLAG} and would exit on it")
    if needs is None:
        flag = f"passes {SCALE_OUT_FLAG}" if has else f"does not pass {SCALE_OUT_FLAG}"
        return Finding(
            "router-render",
            "warn",
            f"{policy} reads token ids from the engines' render routes; the engine image's tag names no "
            f"release whose routes are known, and {where} {flag}: check that /v1/completions/render answers",
        )
    return _ok("router-render", f"{where} serves the render routes {policy} reads")


def check_router(
    bodies: Sequence[dict[str, Any]], engine: dict[str, Any], engine_container: dict[str, Any]
) -> list[Finding]:
    """Each vllm-router Deployment: pinned image, discovery of exactly the engine pods with the RBAC and
    token it needs, engines that serve the render routes its policy reads, probes on its own health
    endpoints, a Service, metrics Prometheus scrapes."""
    out: list[Finding] = []
    for router, container in _routers(bodies):
        where, image = _name(router), str(container.get("image") or "")
        if _image_pinned(image):
            out.append(_ok("router-image", f"{where}: {image}"))
        else:
            out.append(_fail("router-image", f"{where}: image {image!r} is not pinned (exact tag or digest)"))
        out += _router_discovery(bodies, router, container, engine, engine_container)
        flags = flag_values(_argv(container))
        policy = flags.get("--policy") or "cache_aware"  # vllm-router's default
        out.append(_router_render(policy, engine, engine_container))
        if "--service-discovery" in flags:
            out += _router_rbac(bodies, router)
        port = int(flags.get("--port") or 30000)  # vllm-router's default
        out += _router_probes(router, container, port)
        if not _services_of(bodies, router, container, port):
            out.append(
                _fail("router-service", f"no Service selects {where}'s pods on the router port {port}")
            )
        out += _router_metrics(bodies, router, container)
    return out


def lint(bodies: Sequence[dict[str, Any]]) -> list[Finding]:
    """Every finding for a set of manifests."""
    found = _workload(bodies)
    if isinstance(found, Finding):
        return [found]
    deployment, container = found
    return [
        *check_args(deployment, container),
        *check_gpu(deployment, container),
        *check_probes(deployment, container),
        *check_service(bodies, deployment, container),
        *check_service_links(deployment),
        *check_network(bodies, deployment),
        *check_drain(deployment, container),
        *check_monitoring(bodies, deployment, container),
        *check_autoscaling(bodies, deployment),
        *check_adapter_wiring(bodies, deployment),
        *check_router_presence(bodies, deployment),
        *check_router(bodies, deployment, container),
    ]


def failed(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.failed]
