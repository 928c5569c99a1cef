"""Autoscaling signals: prometheus-adapter rules and KEDA triggers, and the adapter's templating filled in
the way prometheus-adapter fills it."""

from __future__ import annotations

import re

import pytest

from kvstack.monitoring.alerts.autoscaling import (
    DEFAULT_KV_CACHE_TARGET,
    DEFAULT_QUEUE_TARGET,
    KV_CACHE_METRIC,
    QUEUE_METRIC,
    adapter_series_name,
    keda_triggers,
    prometheus_adapter_rules,
    render_adapter_query,
    workload_pod_regex,
)


def _rules_by_name() -> dict[str, dict[str, object]]:
    return {r["name"]["as"]: r for r in prometheus_adapter_rules()["rules"]}


def test_custom_metric_names_are_the_contract() -> None:
    assert KV_CACHE_METRIC == "vllm_kv_cache_usage_perc"
    assert QUEUE_METRIC == "vllm_num_requests_waiting"
    assert set(_rules_by_name()) == {KV_CACHE_METRIC, QUEUE_METRIC}


def test_adapter_rules_publish_per_pod_metrics() -> None:
    for published, rule in _rules_by_name().items():
        assert rule["resources"] == {
            "overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
        }
        series = adapter_series_name(rule)
        assert series.startswith("vllm:")
        assert series.replace(":", "_") == published
        assert rule["seriesQuery"] == f'{series}{{namespace!="",pod!=""}}'
        name = rule["name"]
        assert isinstance(name, dict)
        assert re.fullmatch(name["matches"], series)
        template = str(rule["metricsQuery"])
        for field in ("<<.Series>>", "<<.LabelMatchers>>", "<<.GroupBy>>"):
            assert field in template


def test_render_adapter_query_for_one_pod() -> None:
    rule = _rules_by_name()[QUEUE_METRIC]
    rendered = render_adapter_query(rule, namespace="llm", pod="vllm-7d9f-abcde")
    assert rendered == 'sum(vllm:num_requests_waiting{namespace="llm",pod="vllm-7d9f-abcde"}) by (pod)'


def test_render_adapter_query_for_several_pods_uses_a_regex_like_the_adapter() -> None:
    rule = _rules_by_name()[KV_CACHE_METRIC]
    rendered = render_adapter_query(rule, namespace="llm", pod=["vllm-a", "vllm-b"])
    assert rendered == 'max(vllm:kv_cache_usage_perc{namespace="llm",pod=~"vllm-a|vllm-b"}) by (pod)'


def test_render_adapter_query_refuses_unknown_template_fields() -> None:
    rule = {"seriesQuery": "vllm:x{}", "metricsQuery": "sum(<<.Series>>{<<.LabelValuesByName>>})"}
    with pytest.raises(ValueError, match="LabelValuesByName"):
        render_adapter_query(rule, namespace="llm", pod="p")


def _triggers() -> list[dict[str, object]]:
    return keda_triggers(
        prometheus_address="http://prometheus-operated.monitoring:9090",
        namespace="llm",
        app_label="vllm",
        queue_target=DEFAULT_QUEUE_TARGET,
        kv_cache_target=DEFAULT_KV_CACHE_TARGET,
    )


def test_keda_triggers_shape() -> None:
    triggers = _triggers()
    assert [t["name"] for t in triggers] == ["vllm-queue-depth", "vllm-kv-cache-usage"]
    for trigger in triggers:
        assert trigger["type"] == "prometheus"
        assert trigger["metricType"] == "AverageValue"
        metadata = trigger["metadata"]
        assert isinstance(metadata, dict)
        assert all(isinstance(v, str) for v in metadata.values()), "KEDA metadata values are strings"
        assert metadata["serverAddress"] == "http://prometheus-operated.monitoring:9090"
        assert metadata["ignoreNullValues"] == "false"
    queue, kv = (t["metadata"] for t in triggers)
    assert isinstance(queue, dict)
    assert isinstance(kv, dict)
    assert queue["threshold"] == "3"
    assert kv["threshold"] == "0.8"
    selector = 'namespace="llm",pod=~"vllm-[a-z0-9]+(-[a-z0-9]+)?"'
    assert queue["query"] == f"sum(vllm:num_requests_waiting{{{selector}}})"
    assert kv["query"] == f"sum(max by (pod) (vllm:kv_cache_usage_perc{{{selector}}}))"


def test_keda_triggers_validate_against_the_keda_crd_model() -> None:
    from cloudcoil.models.keda.v1alpha1 import TriggerModel  # the infra extra; installed by make setup

    for trigger in _triggers():
        model = TriggerModel.model_validate(trigger)
        assert model.model_dump(by_alias=True, exclude_none=True) == trigger


@pytest.mark.parametrize(
    ("pod", "matches"),
    [
        ("vllm-7d9f8c6b5-x2x4z", True),  # Deployment
        ("vllm-0", True),  # StatefulSet
        ("vllm", False),
        ("other-vllm-0", False),
        ("vllm-canary-7d9f8c6b5-x2x4z", False),
    ],
)
def test_workload_pod_regex(pod: str, matches: bool) -> None:
    assert bool(re.fullmatch(workload_pod_regex("vllm"), pod)) is matches


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"queue_target": 0}, "queue_target"),
        ({"kv_cache_target": 1.2}, "kv_cache_target"),
        ({"app_label": "vLLM.x"}, "app_label"),
        ({"namespace": 'llm"} or vector(1) or {a="'}, "namespace"),
    ],
)
def test_keda_triggers_reject_bad_input(kwargs: dict[str, object], error: str) -> None:
    args: dict[str, object] = {
        "prometheus_address": "http://p:9090",
        "namespace": "llm",
        "app_label": "vllm",
        "queue_target": 3.0,
        "kv_cache_target": 0.8,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=error):
        keda_triggers(**args)  # type: ignore[arg-type]
