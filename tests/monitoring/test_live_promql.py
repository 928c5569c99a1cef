"""The live proof: real traffic to the local vLLM, the local Prometheus scrapes it, then every expression we
ship (alerts, recording rules, dashboard panels and variables, prometheus-adapter rules, KEDA triggers) is
evaluated through prometheus-api-client. Each must parse; all but alert conditions must return finite
data; every series each one reads must exist; every vLLM name must be in the live exposition.

Set KVSTACK_LIVE_STACK_JSON to a JSON file with vllm_url, prometheus_url and served_model_name to run
these against an already running stack instead of starting one (development only).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_api_client import PrometheusConnect

from kvstack.contract.exposition import sample_names as exposition_sample_names
from kvstack.monitoring.alerts.rules import ALERTING_GROUP, RECORDING_GROUP
from kvstack.monitoring.live_check import LiveChecker, discover_context
from kvstack.monitoring.shipped import (
    UNAVAILABLE_LOCALLY,
    EvaluationContext,
    ShippedExpression,
    committed_rules,
    recording_rules_of,
    shipped_expressions,
)
from tests.monitoring.live_traffic import poll, scalar, send_traffic

pytestmark = pytest.mark.live


@dataclass(frozen=True)
class LiveStack:
    vllm_url: str
    prometheus_url: str
    served_model_name: str


@dataclass(frozen=True)
class Traffic:
    stack: LiveStack
    prometheus: PrometheusConnect
    context: EvaluationContext
    requests_ok: int


@pytest.fixture(scope="module")
def live_stack(request: pytest.FixtureRequest) -> LiveStack:
    dev = os.environ.get("KVSTACK_LIVE_STACK_JSON")
    if dev:
        data = json.loads(Path(dev).read_text(encoding="utf-8"))
        return LiveStack(data["vllm_url"], data["prometheus_url"], data["served_model_name"])
    state = request.getfixturevalue("local_stack")
    assert state.prometheus_url is not None, "the local stack was started without Prometheus"
    return LiveStack(state.vllm_url, state.prometheus_url, state.served_model_name)


@pytest.fixture(scope="module")
def traffic(live_stack: LiveStack) -> Traffic:
    prom = PrometheusConnect(url=live_stack.prometheus_url, disable_ssl=True)
    poll("Prometheus to have scraped vLLM", lambda: scalar(prom, 'count(up{job=~".*vllm.*"} == 1)') >= 1)
    before = scalar(prom, "sum(vllm:request_success_total)")
    served = send_traffic(live_stack.vllm_url, live_stack.served_model_name)

    def scraped() -> bool:
        return (
            scalar(prom, "sum(vllm:request_success_total)") >= before + served
            and scalar(prom, "sum(increase(vllm:request_success_total[1m]))") > 0
            and scalar(prom, "sum(increase(vllm:prefix_cache_hits_total[1m]))") > 0
            and scalar(prom, "sum(increase(vllm:time_to_first_token_seconds_count[1m]))") > 0
            and scalar(prom, "sum(increase(vllm:inter_token_latency_seconds_count[1m]))") > 0
            and scalar(prom, 'count(http_requests_total{handler=~"/v1/.*",status="4xx"})') > 0
        )

    poll("the traffic's counters to reach Prometheus", scraped)
    context = discover_context(prom, prometheus_address=live_stack.prometheus_url)
    return Traffic(live_stack, prom, context, served)


def _report(problems: list[Any]) -> str:
    return f"{len(problems)} problem(s):\n" + "\n".join(str(p) for p in problems)


def test_every_shipped_expression_evaluates_with_data_on_the_live_stack(traffic: Traffic) -> None:
    expressions = shipped_expressions(traffic.context)
    problems = LiveChecker(traffic.prometheus).check_all(expressions)
    assert not problems, _report(problems)
    # the proof covered every kind, and only the kube-state-metrics series were excused
    kinds = {e.kind for e in expressions}
    assert kinds == {"alert", "recording_rule", "panel", "dashboard_variable", "adapter", "keda"}
    excused = {s.name for e in expressions for s in e.unavailable_selectors}
    assert excused <= set(UNAVAILABLE_LOCALLY)
    # this stack has no router: what reads the router tier is only evaluated here, and proven with data on
    # the local fleet (tests/local/test_fleet.py); nothing else is excused that way
    router_reads = {s.name for e in expressions for s in e.router_selectors}
    assert router_reads - {"up"}
    assert all(n.startswith("vllm_router_") for n in router_reads - {"up"})


def test_every_referenced_vllm_name_is_in_the_live_exposition(traffic: Traffic) -> None:
    exposition = httpx.get(f"{traffic.stack.vllm_url}/metrics", timeout=30).text
    live_names = exposition_sample_names(exposition)
    referenced = {n for e in shipped_expressions(traffic.context) for n in e.vllm_metric_names}
    assert referenced, "no vLLM names found in the shipped expressions"
    assert referenced <= live_names, f"not in the live exposition: {sorted(referenced - live_names)}"


def test_instrumentator_status_labels_are_grouped_like_5xx(traffic: Traffic) -> None:
    """Our 5xx ratio matches status="5xx": the live server groups statuses as 2xx/4xx/5xx."""
    result = traffic.prometheus.custom_query(query='group by (status) (http_requests_total{job=~".*vllm.*"})')
    statuses = {r["metric"]["status"] for r in result}
    assert {"2xx", "4xx"} <= statuses
    assert all(len(s) == 3 and s.endswith("xx") for s in statuses)


def test_a_broken_metric_name_is_caught_live(
    traffic: Traffic,
    broken_rules: dict[str, Any],
    broken_dashboards: dict[str, dict[str, Any]],
    broken_names: tuple[str, ...],
) -> None:
    expressions = shipped_expressions(traffic.context, rules=broken_rules, dashboards=broken_dashboards)
    affected = [e for e in expressions if any(n in e.promql for n in broken_names)]
    kinds = {e.kind for e in affected}
    assert {"alert", "recording_rule", "panel"} <= kinds
    problems = LiveChecker(traffic.prometheus).check_all(affected)
    flagged = {p.origin for p in problems}
    assert flagged == {e.origin for e in affected}, _report(problems)


def test_loaded_rules_are_ours_and_healthy(traffic: Traffic) -> None:
    """The local Prometheus loads alerts/kvstack-rules.yaml: every rule evaluates without error and the
    recording rules that need data produce series."""
    response = httpx.get(f"{traffic.stack.prometheus_url}/api/v1/rules", timeout=30)
    groups = response.json()["data"]["groups"]
    if not groups and os.environ.get("KVSTACK_LIVE_STACK_JSON"):
        pytest.skip("the stack named by KVSTACK_LIVE_STACK_JSON has no rules loaded")
    assert {g["name"] for g in groups} == {RECORDING_GROUP, ALERTING_GROUP}
    unhealthy = [(r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] != "ok"]
    assert not unhealthy
    needs_data = {
        e.origin.rsplit(": ", 1)[1]
        for e in shipped_expressions(traffic.context)
        if e.kind == "recording_rule" and e.needs_data
    }
    records = set(recording_rules_of(committed_rules()))
    assert needs_data <= records

    def produced() -> bool:
        return all(traffic.prometheus.custom_query(query=name) for name in needs_data)

    poll("the loaded recording rules to produce series", produced)


def test_runbook_queries_evaluate_live(traffic: Traffic, runbook_queries: list[tuple[str, str]]) -> None:
    """What on-call pastes from a runbook parses, and every series it reads exists."""
    assert len(runbook_queries) >= 20
    expressions = [ShippedExpression("runbook", origin, query, query) for origin, query in runbook_queries]
    problems = LiveChecker(traffic.prometheus).check_all(expressions)
    assert not problems, _report(problems)
