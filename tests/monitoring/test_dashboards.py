"""Dashboards: the committed JSON is exactly what the generator makes, UIDs are stable, the datasource is
a variable, the loader works without grafana-foundation-sdk, and the Overview has the issue's panels."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kvstack.monitoring.dashboards import DASHBOARD_UIDS, KV_CAPACITY_FILE, OVERVIEW_FILE, dashboard_documents
from kvstack.monitoring.dashboards.generate import build_dashboards, dashboard_json, write_dashboards

DASHBOARDS_DIR = Path(__file__).resolve().parents[2] / "dashboards"


def _panels(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in document["panels"] if p["type"] != "row"]


def _targets(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for p in _panels(document) for t in p.get("targets", [])]


@pytest.mark.parametrize("name", sorted(DASHBOARD_UIDS))
def test_committed_json_is_byte_identical_to_the_generator_output(name: str) -> None:
    committed = (DASHBOARDS_DIR / name).read_text(encoding="utf-8")
    expected = dashboard_json(build_dashboards()[name])
    assert committed == expected, (
        f"dashboards/{name} is stale: run `python -m kvstack.monitoring.dashboards.generate`"
    )


def test_generator_is_deterministic(tmp_path: Path) -> None:
    first = {p.name: p.read_text(encoding="utf-8") for p in write_dashboards(tmp_path)}
    second = {p.name: p.read_text(encoding="utf-8") for p in write_dashboards(tmp_path)}
    assert first == second
    assert set(first) == set(DASHBOARD_UIDS)


def test_json_has_sorted_keys_and_a_trailing_newline() -> None:
    for name in DASHBOARD_UIDS:
        text = (DASHBOARDS_DIR / name).read_text(encoding="utf-8")
        assert text.endswith("}\n")
        assert text == json.dumps(json.loads(text), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def test_stable_uids() -> None:
    assert DASHBOARD_UIDS == {OVERVIEW_FILE: "kvstack-overview", KV_CAPACITY_FILE: "kvstack-kv-capacity"}
    for name, document in dashboard_documents().items():
        assert document["uid"] == DASHBOARD_UIDS[name]


def test_loader_reads_package_data_without_the_sdk() -> None:
    code = (
        "import sys\nfrom kvstack.monitoring import dashboards\n"
        "docs = dashboards.dashboard_documents()\n"
        "assert 'grafana_foundation_sdk' not in sys.modules, 'the loader imported the SDK'\n"
        "print(sorted(docs))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(sorted(DASHBOARD_UIDS))


def test_loader_returns_the_committed_documents() -> None:
    assert dashboard_documents() == build_dashboards()


@pytest.mark.parametrize("name", sorted(DASHBOARD_UIDS))
def test_datasource_is_a_variable_everywhere(name: str) -> None:
    document = dashboard_documents()[name]
    variables = {v["name"]: v for v in document["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ref = {"type": "prometheus", "uid": "${datasource}"}
    for panel in _panels(document):
        assert panel["datasource"] == ref, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == ref, panel["title"]
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == ref, variable["name"]


@pytest.mark.parametrize("name", sorted(DASHBOARD_UIDS))
def test_panel_ids_are_unique_and_panels_fit_the_grid(name: str) -> None:
    document = dashboard_documents()[name]
    ids = [p["id"] for p in document["panels"]]
    assert len(ids) == len(set(ids))
    for panel in document["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]


@pytest.mark.parametrize("name", sorted(DASHBOARD_UIDS))
def test_every_target_has_a_rate_window_from_grafana(name: str) -> None:
    for target in _targets(dashboard_documents()[name]):
        expr = target["expr"]
        assert not re.search(r"\[\d+[smh]\]", expr), f"hard-coded window in {expr}"
        if "rate(" in expr:
            assert "[$__rate_interval]" in expr, expr


def test_overview_has_the_issue_panels() -> None:
    overview = dashboard_documents()[OVERVIEW_FILE]
    titles = {p["title"] for p in _panels(overview)}
    assert titles >= {
        "Requests/s",
        "Tokens/s in and out",
        "Time to first token p50/p95/p99",
        "Inter-token latency p50/p95/p99",
        "End-to-end request latency p50/p95/p99",
        "Running and waiting requests per pod",
        "KV-cache usage per pod",
        "Prefix-cache hit rate",
        "Preemptions/s per pod",
        "Errors",
        "Replicas vs autoscaler's desired count",
    }
    exprs = "\n".join(t["expr"] for t in _targets(overview))
    for quantile in ("0.5", "0.95", "0.99"):
        for histogram in ("time_to_first_token", "inter_token_latency", "e2e_request_latency"):
            assert f"histogram_quantile({quantile}, " in exprs
            assert f"vllm:{histogram}_seconds_bucket" in exprs
    assert "kube_horizontalpodautoscaler_status_desired_replicas" in exprs


def test_kv_capacity_dashboard_reads_the_paged_attention_capacity() -> None:
    kv = dashboard_documents()[KV_CAPACITY_FILE]
    exprs = "\n".join(t["expr"] for t in _targets(kv))
    for label in ("num_gpu_blocks", "block_size", "kv_cache_size_tokens", "kv_cache_max_concurrency"):
        assert label in exprs
    assert "vllm:num_requests_waiting_by_reason" in exprs


def test_overview_has_the_router_row() -> None:
    """Issue 9 item 5: requests per engine, routing decisions by outcome, queue, errors, workers; the
    router's series are picked by its own job variable, read from its own series."""
    overview = dashboard_documents()[OVERVIEW_FILE]
    rows = [p["title"] for p in overview["panels"] if p["type"] == "row"]
    assert rows[-1] == "Router"
    titles = {p["title"] for p in _panels(overview)}
    assert titles >= {
        "Router: requests/s per engine",
        "Router: routing decisions/s",
        "Router: decisions without tokens",
        "Router: requests in flight per engine",
        "Router: errors/s",
        "Router: engines routed to and healthy",
        "Prefix-cache hit rate: fleet and per pod",
        "Requests/s per pod",
    }
    exprs = "\n".join(t["expr"] for t in _targets(overview))
    for by_labels, metric in (
        ("namespace, job, worker", "vllm_router_processed_requests_total"),
        ("namespace, job, policy, outcome", "vllm_router_prefix_routing_decisions_total"),
        ("namespace, job, policy, worker", "vllm_router_policy_decisions_total"),
        ("namespace, job, result", "vllm_router_kv_routing_inputs_total"),
        ("namespace, job, worker", "vllm_router_running_requests"),
        ("namespace, job, route, error_type", "vllm_router_request_errors_total"),
    ):
        assert re.search(rf"sum by \({by_labels}\) \((rate\()?{metric}\{{", exprs), metric
    router_selectors = re.findall(r"vllm_router_\w+\{([^}]*)\}", exprs)
    assert router_selectors
    assert all(s.startswith('namespace=~"$namespace",job=~"$router_job"') for s in router_selectors)
    variables = {v["name"]: v for v in overview["templating"]["list"]}
    assert variables["router_job"]["query"].startswith("label_values(vllm_router_active_workers{")
