"""Every PromQL expression kvstack ships, with where it comes from, ready to evaluate on a Prometheus.

Sources: the committed rule file (alerts and recording rules), the committed dashboards (panel targets and
variable queries), the prometheus-adapter rules and the KEDA triggers. For each, ``promql`` is what a
plain Prometheus can evaluate: recording-rule names expanded into their expressions, Grafana variables
and the adapter's ``<<...>>`` templating filled in from an ``EvaluationContext``.

The live proof (``kvstack.monitoring.live_check``, run by ``tests/monitoring/test_live_promql.py``)
evaluates all of them; the offline tests check their vLLM metric names against real expositions. This
module sits above both ``alerts`` and ``dashboards``, which do not import each other.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

import yaml

from kvstack.contract.kube import KUBE_STATE_METRICS_SERIES
from kvstack.contract.metrics import vllm_metric_names
from kvstack.contract.promql import (
    VectorSelector,
    expand_recording_rules,
    label_values_selector,
    vector_selectors,
)
from kvstack.contract.router import is_router_name
from kvstack.monitoring.alerts.autoscaling import (
    keda_triggers,
    prometheus_adapter_rules,
    render_adapter_query,
)
from kvstack.monitoring.alerts.thresholds import AlertThresholds
from kvstack.monitoring.dashboards import dashboard_documents

RULES_RESOURCE = "kvstack-rules.yaml"  # package data of kvstack.monitoring.alerts

Kind = Literal["alert", "recording_rule", "panel", "dashboard_variable", "adapter", "keda", "runbook"]

# Series that no local stack can have: kube-state-metrics' HPA series (no Kubernetes here). Expressions
# made only of these are evaluated for syntax alone; their other selectors are held to returning data.
UNAVAILABLE_LOCALLY: Mapping[str, str] = dict.fromkeys(
    KUBE_STATE_METRICS_SERIES, "kube-state-metrics (needs a Kubernetes HPA)"
)

# The router's job as the committed rules and the runbooks select it (``up{job=~".*router.*"}``).
ROUTER_JOB_MATCHER = f'job=~"{AlertThresholds().router_job_regex}"'


def reads_router(selector: VectorSelector) -> bool:
    """Whether a selector reads the router tier: a ``vllm_router_`` series, or ``up`` of its job. Only a
    stack with a router has them: the single-engine stack's proof evaluates them for syntax, the local
    fleet's holds them to returning data (``tests/local/test_fleet.py``)."""
    return is_router_name(selector.name) or ROUTER_JOB_MATCHER in selector.matchers


GRAFANA_BUILTINS = frozenset({"__rate_interval", "__interval", "__range", "__range_s", "__range_ms"})
_GRAFANA_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


@dataclass(frozen=True)
class EvaluationContext:
    """Values for what the shipped text leaves open: the adapter's pod, KEDA's workload, Grafana variables.

    ``variables`` overrides Grafana variables; a variable without an override takes its ``allValue``
    (what "All" sends), and one without an ``allValue`` must be overridden (``job``: the regex of the
    vLLM scrape jobs, as Grafana's "All" would send it).
    """

    namespace: str = "kvstack-local"
    pod: str = "vllm-local-0"
    app_label: str = "vllm-local"
    prometheus_address: str = "http://127.0.0.1:9090"
    rate_interval: str = "1m"
    variables: Mapping[str, str] = field(default_factory=lambda: {"job": ".*"})


@dataclass(frozen=True)
class ShippedExpression:
    kind: Kind
    origin: str  # where it lives, e.g. "kvstack-overview.json: Requests/s [A]"
    shipped: str  # the text as shipped
    promql: str  # what a plain Prometheus evaluates

    @property
    def is_condition(self) -> bool:
        """An alert's condition (or a runbook's check such as ``up == 0``) may be empty; its series must
        still exist."""
        return self.kind in ("alert", "runbook")

    @property
    def selectors(self) -> list[VectorSelector]:
        return vector_selectors(self.promql)

    @property
    def checked_selectors(self) -> list[VectorSelector]:
        """Selectors that must return data on a live stack (all but those unavailable locally)."""
        return [s for s in self.selectors if s.name not in UNAVAILABLE_LOCALLY]

    @property
    def needs_data(self) -> bool:
        """Whether the whole expression must return data on a live stack."""
        return not self.is_condition and bool(self.checked_selectors) and not self.unavailable_selectors

    @property
    def unavailable_selectors(self) -> list[VectorSelector]:
        return [s for s in self.selectors if s.name in UNAVAILABLE_LOCALLY]

    @property
    def router_selectors(self) -> list[VectorSelector]:
        return [s for s in self.selectors if reads_router(s)]

    @property
    def vllm_metric_names(self) -> set[str]:
        return vllm_metric_names(self.shipped) | vllm_metric_names(self.promql)


def committed_rules() -> dict[str, Any]:
    """The committed ``alerts/kvstack-rules.yaml``, parsed (package data)."""
    text = resources.files("kvstack.monitoring.alerts").joinpath(RULES_RESOURCE).read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    if not isinstance(document, dict):
        raise TypeError(f"{RULES_RESOURCE} is not a mapping")
    return document


def committed_dashboards() -> dict[str, dict[str, Any]]:
    """The committed dashboards' JSON, parsed (package data)."""
    return dashboard_documents()


def recording_rules_of(rules: Mapping[str, Any]) -> dict[str, str]:
    """Recording-rule name -> expression, over every group."""
    return {
        str(rule["record"]): str(rule["expr"])
        for group in rules["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


def _rule_expressions(rules: Mapping[str, Any]) -> list[ShippedExpression]:
    records = recording_rules_of(rules)
    out: list[ShippedExpression] = []
    for group in rules["groups"]:
        for rule in group["rules"]:
            expr = str(rule["expr"])
            if "alert" in rule:
                kind: Kind = "alert"
                name = str(rule["alert"])
            else:
                kind = "recording_rule"
                name = str(rule["record"])
            origin = f"{RULES_RESOURCE}: {group['name']}: {name}"
            out.append(ShippedExpression(kind, origin, expr, expand_recording_rules(expr, records)))
    return out


def _variable_values(document: Mapping[str, Any], context: EvaluationContext) -> dict[str, str]:
    values: dict[str, str] = {"__rate_interval": context.rate_interval, "__interval": context.rate_interval}
    for variable in document.get("templating", {}).get("list", []):
        name = str(variable["name"])
        if name in context.variables:
            values[name] = context.variables[name]
        elif "allValue" in variable:
            values[name] = str(variable["allValue"])
    return values


def fill_grafana_variables(expr: str, values: Mapping[str, str]) -> str:
    """Replace ``$var``, ``${var}`` and ``[[var]]``; an unknown variable is an error, not a silent blank."""

    def fill(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in values:
            raise KeyError(f"no value for Grafana variable ${name} in {expr!r}")
        return values[name]

    return _GRAFANA_VARIABLE.sub(fill, expr)


def _panels(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for panel in document.get("panels", []):
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # panels of collapsed rows
    return panels


def _dashboard_expressions(
    file_name: str, document: Mapping[str, Any], context: EvaluationContext
) -> list[ShippedExpression]:
    values = _variable_values(document, context)
    out: list[ShippedExpression] = []
    for panel in _panels(document):
        for target in panel.get("targets", []):
            expr = target.get("expr")
            if not expr:
                continue
            origin = f"{file_name}: {panel.get('title', '?')} [{target.get('refId', '?')}]"
            out.append(ShippedExpression("panel", origin, expr, fill_grafana_variables(expr, values)))
    for variable in document.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query)
        selector = label_values_selector(text)
        if selector is None:
            raise ValueError(f"{file_name}: variable {variable['name']}: unsupported query {text!r}")
        origin = f"{file_name}: variable ${variable['name']}"
        promql = fill_grafana_variables(selector, values)
        out.append(ShippedExpression("dashboard_variable", origin, text, promql))
    return out


def _autoscaling_expressions(context: EvaluationContext) -> list[ShippedExpression]:
    out: list[ShippedExpression] = []
    for rule in prometheus_adapter_rules()["rules"]:
        published = rule["name"]["as"]
        series_query = str(rule["seriesQuery"])
        out.append(
            ShippedExpression("adapter", f"adapter {published}: seriesQuery", series_query, series_query)
        )
        rendered = render_adapter_query(rule, namespace=context.namespace, pod=context.pod)
        out.append(
            ShippedExpression("adapter", f"adapter {published}: metricsQuery", rule["metricsQuery"], rendered)
        )
    triggers = keda_triggers(
        prometheus_address=context.prometheus_address,
        namespace=context.namespace,
        app_label=context.app_label,
        queue_target=1.0,
        kv_cache_target=0.8,
    )
    for trigger in triggers:
        query = str(trigger["metadata"]["query"])
        out.append(ShippedExpression("keda", f"KEDA trigger {trigger['name']}", query, query))
    return out


def shipped_expressions(
    context: EvaluationContext | None = None,
    *,
    rules: Mapping[str, Any] | None = None,
    dashboards: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[ShippedExpression]:
    """Every expression we ship. ``rules``/``dashboards`` default to the committed files."""
    ctx = context or EvaluationContext()
    rule_doc = committed_rules() if rules is None else rules
    dash_docs = committed_dashboards() if dashboards is None else dashboards
    out = _rule_expressions(rule_doc)
    for file_name, document in sorted(dash_docs.items()):
        out.extend(_dashboard_expressions(file_name, document, ctx))
    out.extend(_autoscaling_expressions(ctx))
    return out


def referenced_vllm_metric_names(expressions: list[ShippedExpression]) -> dict[str, list[str]]:
    """vLLM metric name -> origins that reference it."""
    names: dict[str, list[str]] = {}
    for expression in expressions:
        for name in sorted(expression.vllm_metric_names):
            names.setdefault(name, []).append(expression.origin)
    return names
