"""The rule generator: committed file == generator output, thresholds flow into the rules, every alert has
severity, summary, description and a runbook that exists."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from kvstack.contract.promql import vector_selectors
from kvstack.monitoring.alerts.rules import RULES_FILE, alert_specs, rule_groups, rules_yaml
from kvstack.monitoring.alerts.thresholds import AlertThresholds

REPO = Path(__file__).resolve().parents[2]
RUNBOOKS = REPO / "docs" / "runbooks"


def test_committed_rule_file_equals_the_generator_output() -> None:
    expected = rules_yaml(rule_groups(AlertThresholds()))
    committed = RULES_FILE.read_text(encoding="utf-8")
    assert committed == expected, "alerts/kvstack-rules.yaml is stale: run `python -m alerts.rules`"


def test_rule_file_ships_as_package_data() -> None:
    text = (
        resources.files("kvstack.monitoring.alerts")
        .joinpath("kvstack-rules.yaml")
        .read_text(encoding="utf-8")
    )
    assert yaml.safe_load(text) == rule_groups(AlertThresholds())


def test_rule_file_is_plain_groups_not_a_prometheusrule() -> None:
    document = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    assert set(document) == {"groups"}
    assert "apiVersion" not in RULES_FILE.read_text(encoding="utf-8")


def test_every_alert_has_severity_summary_description_and_runbook() -> None:
    document = rule_groups(AlertThresholds())
    alerts = [r for g in document["groups"] for r in g["rules"] if "alert" in r]
    assert len(alerts) == len(alert_specs(AlertThresholds())) >= 9
    for alert in alerts:
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}, alert["alert"]
        assert alert["annotations"]["summary"].strip(), alert["alert"]
        assert alert["annotations"]["description"].strip(), alert["alert"]
        assert re.fullmatch(r"https?://\S+/[a-z0-9-]+\.md", alert["annotations"]["runbook_url"]), alert[
            "alert"
        ]


def test_issue_alerts_are_all_there() -> None:
    names = {spec.name for spec in alert_specs(AlertThresholds())}
    assert names == {
        "VLLMKVCacheSaturated",
        "VLLMQueueBuilding",
        "VLLMTTFTP95OverSLO",
        "VLLMITLP99OverSLO",
        "VLLMPreemptions",
        "VLLMEngineDown",
        "VLLMMetricsAbsent",
        "VLLMHighErrorRatio",
        "VLLMAutoscalerAtMaxWithQueue",
        "VLLMPrefixCacheHitRateCollapsed",
        "VLLMRouterDown",
        "VLLMRouterPrefixRoutingWithoutTokens",
        "VLLMFleetPrefixHitRatioCollapsed",
    }


def test_a_stack_without_a_router_has_no_router_alerts() -> None:
    names = {spec.name for spec in alert_specs(AlertThresholds(router_alerts=False))}
    assert not names & {
        "VLLMRouterDown",
        "VLLMRouterPrefixRoutingWithoutTokens",
        "VLLMFleetPrefixHitRatioCollapsed",
    }
    assert "VLLMEngineDown" in names
    routers = {s.name for s in alert_specs(AlertThresholds()) if s.component == "router"}
    assert routers == {
        "VLLMRouterDown",
        "VLLMRouterPrefixRoutingWithoutTokens",
        "VLLMFleetPrefixHitRatioCollapsed",
    }


# The jobs a router gets: ServiceMonitor (the Service's name), PodMonitor ("<namespace>/<monitor>"), the
# local fleet's; and the engines'.
ROUTER_JOBS = ("vllm-router", "llm/vllm-router", "kvstack-router", "prod-vllm-router")
ENGINE_JOBS = ("vllm", "llm/vllm", "prod-vllm")
_JOB_MATCHER = re.compile(r'job(=~|!~)"([^"]*)"')


def _job_selected(matchers: str, job: str) -> bool:
    """Whether a selector's job matchers select ``job`` (Prometheus anchors regexes: fullmatch)."""
    found = _JOB_MATCHER.findall(matchers)
    assert found, matchers
    return all((re.fullmatch(regex, job) is not None) == (op == "=~") for op, regex in found)


def test_engine_selectors_never_select_a_router_job() -> None:
    """Regression: `up` and http_requests_total are not vLLM's own names, so the engine alerts scope them by
    job; the default `.*vllm.*` alone also matched a router scraped as `vllm-router` (the prod stack's
    ServiceMonitor job), which made VLLMMetricsAbsent fire for ever (a router exposes no vLLM series) and
    VLLMEngineDown page for the router."""
    document = rule_groups(AlertThresholds())
    engine_rules = [
        r for g in document["groups"] for r in g["rules"] if r.get("labels", {}).get("component") != "router"
    ]
    checked = 0
    for rule in engine_rules:
        for sel in vector_selectors(rule["expr"]):
            if sel.name in ("up", "http_requests_total"):
                checked += 1
                origin = rule.get("alert") or rule.get("record")
                for job in ROUTER_JOBS:
                    assert not _job_selected(sel.matchers, job), (origin, sel.text, job)
                for job in ENGINE_JOBS:
                    assert _job_selected(sel.matchers, job), (origin, sel.text, job)
    assert checked >= 5  # EngineDown, MetricsAbsent (3), the 5xx recording rule (2)
    # and the router's own alert selects exactly the router jobs
    router_down = next(s for s in alert_specs(AlertThresholds()) if s.name == "VLLMRouterDown")
    for sel in vector_selectors(router_down.expr):
        assert all(_job_selected(sel.matchers, job) for job in ROUTER_JOBS)
        assert not any(_job_selected(sel.matchers, job) for job in ENGINE_JOBS)


@pytest.mark.parametrize("spec", alert_specs(AlertThresholds()), ids=lambda s: s.name)
def test_runbook_exists_and_says_how_to_confirm_and_what_to_do(spec: object) -> None:
    from kvstack.monitoring.alerts.rules import AlertSpec

    assert isinstance(spec, AlertSpec)
    runbook = RUNBOOKS / f"{spec.runbook}.md"
    assert runbook.is_file(), f"missing runbook {runbook}"
    text = runbook.read_text(encoding="utf-8")
    assert spec.name in text
    assert "```promql" in text, "a runbook shows the PromQL that confirms the alert"
    for heading in ("## What it means", "## Confirm", "## What to do"):
        assert heading in text, f"{runbook.name} lacks {heading!r}"


def test_kv_cache_runbooks_name_the_kv_cache_knobs() -> None:
    for name in ("vllm-kv-cache-saturated", "vllm-preemptions", "vllm-queue-building"):
        text = (RUNBOOKS / f"{name}.md").read_text(encoding="utf-8")
        for knob in ("max_model_len", "gpu_memory_utilization", "max_num_seqs", "replicas"):
            flag = "--" + knob.replace("_", "-")
            assert knob in text or flag in text, f"{name}.md does not mention {knob} ({flag})"


def test_every_runbook_belongs_to_an_alert() -> None:
    expected = {f"{spec.runbook}.md" for spec in alert_specs(AlertThresholds())}
    present = {p.name for p in RUNBOOKS.glob("*.md") if p.name != "README.md"}
    assert present == expected


def test_thresholds_flow_into_the_rules() -> None:
    t = AlertThresholds(
        kv_cache_saturation=0.8,
        kv_cache_saturation_for="15m",
        ttft_p95_slo_seconds=1.0,
        queue_depth_per_replica=3,
        max_replicas=4,
        scrape_job_regex="prod/vllm-.*",
        runbook_base_url="https://runbooks.example.com/kvstack",
    )
    rules = {r.get("alert"): r for g in rule_groups(t)["groups"] for r in g["rules"]}
    kv = rules["VLLMKVCacheSaturated"]
    assert kv["expr"].endswith("> 0.8")
    assert kv["for"] == "15m"
    assert rules["VLLMTTFTP95OverSLO"]["expr"].endswith("> 1")
    assert rules["VLLMQueueBuilding"]["expr"].endswith("> 3")
    assert ", 4)" in rules["VLLMAutoscalerAtMaxWithQueue"]["expr"]
    assert rules["VLLMEngineDown"]["expr"] == 'up{job=~"prod/vllm-.*",job!~".*router.*"} == 0'
    assert (
        kv["annotations"]["runbook_url"] == "https://runbooks.example.com/kvstack/vllm-kv-cache-saturated.md"
    )


def test_router_thresholds_flow_into_the_router_alerts() -> None:
    t = AlertThresholds(
        router_job_regex="prod/edge",
        router_down_for="3m",
        router_missing_tokens_ratio=0.2,
        fleet_prefix_hit_ratio_drop=0.6,
        fleet_prefix_hit_ratio_baseline="2h",
        fleet_prefix_hit_ratio_baseline_offset="30m",
        fleet_request_share_floor=0.25,
        fleet_prefix_hit_ratio_for="20m",
    )
    rules = {r.get("alert"): r for g in rule_groups(t)["groups"] for r in g["rules"]}
    down = rules["VLLMRouterDown"]
    assert (
        down["expr"]
        == 'sum by (namespace, job) (up{job=~"prod/edge"}) == 0\nor\nabsent(up{job=~"prod/edge"})'
    )
    assert down["for"] == "3m"
    assert down["labels"] == {"severity": "critical", "component": "router"}
    missing = rules["VLLMRouterPrefixRoutingWithoutTokens"]["expr"]
    assert missing.endswith("\n> 0.2")
    assert (
        'vllm_router_prefix_routing_decisions_total{job=~"prod/edge",outcome="missing_tokens"}[5m]' in missing
    )
    collapse = rules["VLLMFleetPrefixHitRatioCollapsed"]
    assert collapse["for"] == "20m"
    assert collapse["expr"].count("0.6 * (") == 2
    assert collapse["expr"].count("[2h] offset 30m") == 4
    assert "0.25 * avg by (namespace, model_name)" in collapse["expr"]
    assert rules["VLLMEngineDown"]["expr"] == 'up{job=~".*vllm.*",job!~"prod/edge"} == 0'


def test_runbook_base_url_argument_overrides_the_thresholds() -> None:
    document = rule_groups(AlertThresholds(), runbook_base_url="https://wiki.example.com/rb/")
    urls = {r["annotations"]["runbook_url"] for g in document["groups"] for r in g["rules"] if "alert" in r}
    assert all(u.startswith("https://wiki.example.com/rb/vllm-") for u in urls)


def test_unknown_threshold_is_rejected_with_its_name() -> None:
    with pytest.raises(ValidationError, match="kv_cache_saturaton"):
        AlertThresholds.model_validate({"kv_cache_saturaton": 0.9})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kv_cache_saturation", 0),
        ("kv_cache_saturation", 1.5),
        ("error_ratio", 2),
        ("prefix_cache_hit_rate_floor", 1),
        ("ttft_p95_slo_seconds", -1),
        ("max_replicas", 0),
        ("queue_depth_for", "5 minutes"),
        ("engine_down_for", "10"),
        ("kv_cache_saturation_for", "1h30x"),
        ("runbook_base_url", "docs/runbooks"),
        ("scrape_job_regex", 'vllm"} or vector(1) or {x="'),
        ("router_job_regex", 'r"} or vector(1) or {x="'),
        ("router_missing_tokens_ratio", 0),
        ("fleet_prefix_hit_ratio_drop", 1),
        ("fleet_request_share_floor", 0),
        ("fleet_prefix_hit_ratio_baseline", "6 hours"),
    ],
)
def test_thresholds_are_bounded(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        AlertThresholds.model_validate({field: value})


@pytest.mark.parametrize("duration", ["30s", "5m", "1h30m", "1d", "500ms"])
def test_prometheus_durations_are_accepted(duration: str) -> None:
    assert AlertThresholds(queue_depth_for=duration).queue_depth_for == duration


def test_every_field_has_a_default() -> None:
    assert AlertThresholds() == AlertThresholds.model_validate({})
    assert all(not f.is_required() for f in AlertThresholds.model_fields.values())
