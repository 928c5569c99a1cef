"""kvstack's Prometheus recording and alerting rules, as a plain ``groups:`` document.

``rule_groups(AlertThresholds())`` dumped by ``rules_yaml`` is the committed ``alerts/kvstack-rules.yaml``
(``python -m kvstack.monitoring.alerts.rules`` rewrites it), the file ``promtool check rules`` /
``promtool test rules`` run on. Infra renders the same function with the stack's thresholds and wraps
the result into a PrometheusRule; nothing here knows about Kubernetes objects.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kvstack.contract import kube
from kvstack.contract import metrics as m
from kvstack.contract import signals as q
from kvstack.contract.promql import UP, by, engine_job_matcher, job_matcher, number, selector
from kvstack.contract.yaml_text import dump_yaml
from kvstack.monitoring.alerts.thresholds import AlertThresholds

RULES_FILE = Path(__file__).with_name("kvstack-rules.yaml")
RECORDING_GROUP = "kvstack-vllm.rules"
ALERTING_GROUP = "kvstack-vllm.alerts"
WINDOW = "5m"

Severity = Literal["critical", "warning", "info"]


# Recording rule names: level:metric:operations (https://prometheus.io/docs/practices/rules/).
class Record:
    KV_CACHE_USAGE_BY_POD = "namespace_pod_model:vllm_kv_cache_usage_perc:max"
    WAITING_BY_POD = "namespace_pod_model:vllm_num_requests_waiting:sum"
    RUNNING_BY_POD = "namespace_pod_model:vllm_num_requests_running:sum"
    WAITING_PER_REPLICA = "namespace_model:vllm_num_requests_waiting_per_replica:avg"
    TTFT_P95 = "namespace_model:vllm_time_to_first_token_seconds:p95_rate5m"
    TTFT_P99 = "namespace_model:vllm_time_to_first_token_seconds:p99_rate5m"
    ITL_P95 = "namespace_model:vllm_inter_token_latency_seconds:p95_rate5m"
    ITL_P99 = "namespace_model:vllm_inter_token_latency_seconds:p99_rate5m"
    REQUESTS_RATE = "namespace_model:vllm_requests:rate5m"
    PROMPT_TOKENS_RATE = "namespace_model:vllm_prompt_tokens:rate5m"
    GENERATION_TOKENS_RATE = "namespace_model:vllm_generation_tokens:rate5m"
    PREFIX_CACHE_QUERIES_RATE = "namespace_model:vllm_prefix_cache_queries:rate5m"
    PREFIX_CACHE_HIT_RATIO = "namespace_model:vllm_prefix_cache_hits:ratio_rate5m"
    PREEMPTIONS_RATE_BY_POD = "namespace_pod_model:vllm_num_preemptions:rate5m"
    HTTP_5XX_RATIO = "namespace_job:vllm_http_5xx:ratio_rate5m"
    REQUEST_ERROR_RATIO = "namespace_model:vllm_request_errors:ratio_rate5m"
    REQUESTS_RATE_BY_POD = "namespace_pod_model:vllm_requests:rate5m"
    PREFIX_CACHE_HIT_RATIO_BY_POD = "namespace_pod_model:vllm_prefix_cache_hits:ratio_rate5m"


FLEET_LABELS = q.MODEL_LABELS  # a fleet: every pod serving one model in one namespace
FLEET_MIN_PODS = 2  # below two pods no routing decision can move a session's prefix away


def recording_rules() -> list[dict[str, str]]:
    """The recording rules, in evaluation order (a rule may use the ones above it)."""
    rules = [
        (Record.KV_CACHE_USAGE_BY_POD, q.kv_cache_usage_by_pod()),
        (Record.WAITING_BY_POD, q.requests_waiting_by_pod()),
        (Record.RUNNING_BY_POD, q.requests_running_by_pod()),
        (Record.WAITING_PER_REPLICA, f"avg by ({by(q.MODEL_LABELS)}) ({Record.WAITING_BY_POD})"),
        (Record.TTFT_P95, q.histogram_quantile(0.95, m.TTFT, WINDOW)),
        (Record.TTFT_P99, q.histogram_quantile(0.99, m.TTFT, WINDOW)),
        (Record.ITL_P95, q.histogram_quantile(0.95, m.ITL, WINDOW)),
        (Record.ITL_P99, q.histogram_quantile(0.99, m.ITL, WINDOW)),
        (Record.REQUESTS_RATE, q.sum_rate(m.REQUEST_SUCCESS, WINDOW)),
        (Record.PROMPT_TOKENS_RATE, q.sum_rate(m.PROMPT_TOKENS, WINDOW)),
        (Record.GENERATION_TOKENS_RATE, q.sum_rate(m.GENERATION_TOKENS, WINDOW)),
        (Record.PREFIX_CACHE_QUERIES_RATE, q.sum_rate(m.PREFIX_CACHE_QUERIES, WINDOW)),
        (Record.PREFIX_CACHE_HIT_RATIO, q.prefix_cache_hit_ratio(WINDOW)),
        (Record.PREEMPTIONS_RATE_BY_POD, q.sum_rate(m.PREEMPTIONS, WINDOW, labels=q.POD_LABELS)),
        (Record.REQUEST_ERROR_RATIO, q.request_error_ratio(WINDOW)),
        (Record.REQUESTS_RATE_BY_POD, q.sum_rate(m.REQUEST_SUCCESS, WINDOW, labels=q.POD_LABELS)),
        (Record.PREFIX_CACHE_HIT_RATIO_BY_POD, q.prefix_cache_hit_ratio(WINDOW, labels=q.POD_LABELS)),
    ]
    return [{"record": name, "expr": expr} for name, expr in rules]


def _http_5xx_recording_rule(t: AlertThresholds) -> dict[str, str]:
    return {
        "record": Record.HTTP_5XX_RATIO,
        "expr": q.http_5xx_ratio(WINDOW, engine_job_matcher(t.scrape_job_regex, t.router_job_regex)),
    }


@dataclass(frozen=True)
class AlertSpec:
    name: str
    expr: str
    for_: str
    severity: Severity
    summary: str
    description: str
    runbook: str  # file name in docs/runbooks/, without .md
    component: str = "vllm"  # "router": the router tier's alerts

    def rule(self, runbook_base_url: str) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity, "component": self.component},
            "annotations": {
                "summary": self.summary,
                "description": self.description,
                "runbook_url": f"{runbook_base_url}/{self.runbook}.md",
            },
        }


MODEL_REF = "{{ $labels.namespace }}/{{ $labels.model_name }}"  # how a description names the model


def alert_specs(t: AlertThresholds) -> list[AlertSpec]:
    """Every kvstack alert with its condition, ``for:``, severity and texts."""
    job = engine_job_matcher(t.scrape_job_regex, t.router_job_regex)
    pod = "{{ $labels.namespace }}/{{ $labels.pod }}"
    model = MODEL_REF
    return [
        AlertSpec(
            name="VLLMKVCacheSaturated",
            expr=f"{Record.KV_CACHE_USAGE_BY_POD} > {number(t.kv_cache_saturation)}",
            for_=t.kv_cache_saturation_for,
            severity="warning",
            summary="vLLM KV cache is saturated on a pod.",
            description=(
                f"KV-cache usage of {pod} ({{{{ $labels.model_name }}}}) has been above "
                f"{t.kv_cache_saturation:.0%} for {t.kv_cache_saturation_for} "
                "(now {{ $value | humanizePercentage }}). New requests queue and running ones get "
                "preempted; add replicas or cut max_model_len / max_num_seqs."
            ),
            runbook="vllm-kv-cache-saturated",
        ),
        AlertSpec(
            name="VLLMQueueBuilding",
            expr=f"{Record.WAITING_BY_POD} > {number(t.queue_depth_per_replica)}",
            for_=t.queue_depth_for,
            severity="warning",
            summary="Requests are queueing on a vLLM pod.",
            description=(
                f"{pod} ({{{{ $labels.model_name }}}}) has had more than {number(t.queue_depth_per_replica)} "
                f"requests waiting for {t.queue_depth_for} (now {{{{ $value }}}}): the engine cannot admit "
                "them (max_num_seqs reached or KV cache full)."
            ),
            runbook="vllm-queue-building",
        ),
        AlertSpec(
            name="VLLMTTFTP95OverSLO",
            expr=f"{Record.TTFT_P95} > {number(t.ttft_p95_slo_seconds)}",
            for_=t.ttft_p95_for,
            severity="critical",
            summary="vLLM time to first token p95 is over the SLO.",
            description=(
                f"p95 TTFT of {model} over 5m has been above the {number(t.ttft_p95_slo_seconds)} s SLO "
                f"for {t.ttft_p95_for} (now {{{{ $value | humanizeDuration }}}})."
            ),
            runbook="vllm-ttft-p95-over-slo",
        ),
        AlertSpec(
            name="VLLMITLP99OverSLO",
            expr=f"{Record.ITL_P99} > {number(t.itl_p99_slo_seconds)}",
            for_=t.itl_p99_for,
            severity="warning",
            summary="vLLM inter-token latency p99 is over the SLO.",
            description=(
                f"p99 inter-token latency of {model} over 5m has been above the "
                f"{number(t.itl_p99_slo_seconds)} s SLO for {t.itl_p99_for} "
                "(now {{ $value | humanizeDuration }}): batches are too large or prefills stall decoding."
            ),
            runbook="vllm-itl-p99-over-slo",
        ),
        AlertSpec(
            name="VLLMPreemptions",
            expr=f"{Record.PREEMPTIONS_RATE_BY_POD} > {number(t.preemption_rate_per_second)}",
            for_=t.preemption_for,
            severity="warning",
            summary="vLLM is preempting requests for lack of KV-cache blocks.",
            description=(
                f"{pod} ({{{{ $labels.model_name }}}}) has preempted more than "
                f"{number(t.preemption_rate_per_second)} requests/s for {t.preemption_for} "
                "(now {{ $value | humanize }}/s). Preempted requests are recomputed: wasted GPU time."
            ),
            runbook="vllm-preemptions",
        ),
        AlertSpec(
            name="VLLMEngineDown",
            expr=f"{selector(UP, job)} == 0",
            for_=t.engine_down_for,
            severity="critical",
            summary="A vLLM pod's metrics endpoint is down.",
            description=(
                "Prometheus has failed to scrape {{ $labels.instance }} "
                f"({pod}, job {{{{ $labels.job }}}}) for {t.engine_down_for}: the server is not listening "
                "(crashed, restarting, or still loading the model past the startup budget)."
            ),
            runbook="vllm-engine-down",
        ),
        AlertSpec(
            name="VLLMMetricsAbsent",
            expr=(
                f"absent({selector(UP, job)} == 1)\n"
                "or\n"
                f"(\n  {selector(UP, job)} == 1\n  unless on (job, instance)\n  {m.REQUESTS_RUNNING}\n)"
            ),
            for_=t.metrics_absent_for,
            severity="critical",
            summary="No vLLM metrics: no target is up, or a target is up without vLLM series.",
            description=(
                "{{ if $labels.instance }}{{ $labels.instance }} (job {{ $labels.job }}) has been scraped "
                f"without exposing {m.REQUESTS_RUNNING}"
                f"{{{{ else }}}}No target of a scrape job matching /{t.scrape_job_regex}/ has been up"
                f"{{{{ end }}}} for {t.metrics_absent_for}. Every vLLM alert and the autoscaler are blind "
                "meanwhile."
            ),
            runbook="vllm-metrics-absent",
        ),
        AlertSpec(
            name="VLLMHighErrorRatio",
            expr=f"{Record.HTTP_5XX_RATIO} > {number(t.error_ratio)}",
            for_=t.error_ratio_for,
            severity="critical",
            summary="vLLM is answering the OpenAI API with 5xx errors.",
            description=(
                f"More than {t.error_ratio:.0%} of /v1 requests of job {{{{ $labels.job }}}} in "
                f"{{{{ $labels.namespace }}}} have been 5xx for {t.error_ratio_for} "
                "(now {{ $value | humanizePercentage }})."
            ),
            runbook="vllm-high-error-ratio",
        ),
        AlertSpec(
            name="VLLMAutoscalerAtMaxWithQueue",
            expr=(
                "(\n"
                f'  {kube.HPA_CURRENT_REPLICAS}{{horizontalpodautoscaler=~"{t.hpa_name_regex}"}}\n'
                "  >=\n"
                f'  clamp_max({kube.HPA_MAX_REPLICAS}{{horizontalpodautoscaler=~"{t.hpa_name_regex}"}}, '
                f"{t.max_replicas})\n"
                ")\n"
                "and on (namespace)\n"
                f"(max by (namespace) ({Record.WAITING_PER_REPLICA}) > {number(t.queue_depth_per_replica)})"
            ),
            for_=t.autoscaler_at_max_for,
            severity="critical",
            summary="The vLLM autoscaler is at its maximum and requests still queue.",
            description=(
                "HPA {{ $labels.namespace }}/{{ $labels.horizontalpodautoscaler }} has run "
                f"{{{{ $value }}}} replicas, its ceiling (at most {t.max_replicas}), for "
                f"{t.autoscaler_at_max_for} while more than {number(t.queue_depth_per_replica)} requests per "
                "replica wait. Scaling cannot help: raise the ceiling (GPU quota) or shed load."
            ),
            runbook="vllm-autoscaler-at-max-with-queue",
        ),
        AlertSpec(
            name="VLLMPrefixCacheHitRateCollapsed",
            expr=(
                f"{Record.PREFIX_CACHE_HIT_RATIO} < {number(t.prefix_cache_hit_rate_floor)}\n"
                f"and\n{Record.PREFIX_CACHE_QUERIES_RATE} > 0"
            ),
            for_=t.prefix_cache_hit_rate_for,
            severity="warning",
            summary="vLLM's prefix-cache hit rate has collapsed.",
            description=(
                f"Under {t.prefix_cache_hit_rate_floor:.0%} of the prompt tokens of {model} have hit the "
                f"prefix cache for {t.prefix_cache_hit_rate_for} "
                "(now {{ $value | humanizePercentage }}): prefix caching off, cache evicted by KV pressure, "
                "or the prompts' shared prefix changed."
            ),
            runbook="vllm-prefix-cache-hit-rate-collapsed",
        ),
        *(router_alert_specs(t) if t.router_alerts else []),
    ]


def _and_on(labels: tuple[str, ...], clauses: list[str]) -> str:
    joined = f"\nand on ({by(labels)})\n".join("(\n  " + c.replace("\n", "\n  ") + "\n)" for c in clauses)
    return joined


def fleet_prefix_collapse_clauses(t: AlertThresholds) -> dict[str, str]:
    """The conditions of VLLMFleetPrefixHitRatioCollapsed, each by (namespace, model_name), in the order
    the alert joins them; the first one's value (the fleet's ratio now) is the alert's value.

    collapsed: the fleet's ratio over 5m is under ``drop`` x its own ratio over the baseline window (which
    ends ``baseline_offset`` ago, so that the collapse itself does not lower the bar at once);
    on_every_pod: so is the best pod's, so one pod that lost its cache (restart, KV pressure: the per-pod
    alerts' business) cannot fire it; fleet: at least two pods serve (not idle, and routing can matter);
    traffic_holds: the quietest pod still gets ``fleet_request_share_floor`` of the mean per-pod request
    rate, so a pod that is down or drained (VLLMEngineDown's business) cannot fire it either.
    """
    labels = by(FLEET_LABELS)
    baseline = q.prefix_cache_hit_ratio(
        t.fleet_prefix_hit_ratio_baseline, offset=t.fleet_prefix_hit_ratio_baseline_offset
    )
    bar = f"{number(t.fleet_prefix_hit_ratio_drop)} * (\n  {baseline.replace(chr(10), chr(10) + '  ')}\n)"
    rate = Record.REQUESTS_RATE_BY_POD
    return {
        "collapsed": f"{Record.PREFIX_CACHE_HIT_RATIO}\n<\n{bar}",
        "on_every_pod": f"max by ({labels}) ({Record.PREFIX_CACHE_HIT_RATIO_BY_POD})\n<\n{bar}",
        "fleet": f"count by ({labels}) ({rate} > 0) >= {FLEET_MIN_PODS}",
        "traffic_holds": (
            f"min by ({labels}) ({rate})\n>=\n"
            f"{number(t.fleet_request_share_floor)} * avg by ({labels}) ({rate})"
        ),
    }


def router_alert_specs(t: AlertThresholds) -> list[AlertSpec]:
    """The router tier's alerts (left out when ``router_alerts`` is off: a stack without a router)."""
    router_up = selector(UP, job_matcher(t.router_job_regex))
    router_job = "{{ $labels.job }} (namespace {{ $labels.namespace }})"
    model = MODEL_REF
    return [
        AlertSpec(
            name="VLLMRouterDown",
            expr=f"sum by ({by(q.ROUTER_LABELS)}) ({router_up}) == 0\nor\nabsent({router_up})",
            for_=t.router_down_for,
            severity="critical",
            summary="No vllm-router target is up: clients of the router get no answer.",
            description=(
                f"{{{{ if $labels.job }}}}Every target of router job {router_job} has failed its scrape"
                f"{{{{ else }}}}Prometheus has no target of a scrape job matching /{t.router_job_regex}/"
                f"{{{{ end }}}} for {t.router_down_for}. The engines may be fine; the endpoint clients use "
                "is not."
            ),
            runbook="vllm-router-down",
            component="router",
        ),
        AlertSpec(
            name="VLLMRouterPrefixRoutingWithoutTokens",
            expr=(
                f"{q.router_missing_tokens_ratio(WINDOW, job_matcher(t.router_job_regex))}\n"
                f"> {number(t.router_missing_tokens_ratio)}"
            ),
            for_=t.router_missing_tokens_for,
            severity="warning",
            summary="The cache-aware router routes without the prompts' tokens: prefix routing is off.",
            description=(
                f"More than {t.router_missing_tokens_ratio:.0%} of the {{{{ $labels.policy }}}} decisions of "
                f"router {router_job} have been taken without the prompt's tokens (outcome "
                f'"missing_tokens") for {t.router_missing_tokens_for} '
                "(now {{ $value | humanizePercentage }}). The engines do not serve /v1/completions/render "
                "(vLLM without --enable-scale-out), so the router balances load instead of keeping "
                "prefixes on the pod that caches them."
            ),
            runbook="vllm-router-prefix-routing-without-tokens",
            component="router",
        ),
        AlertSpec(
            name="VLLMFleetPrefixHitRatioCollapsed",
            expr=_and_on(FLEET_LABELS, list(fleet_prefix_collapse_clauses(t).values())),
            for_=t.fleet_prefix_hit_ratio_for,
            severity="warning",
            summary="The fleet's prefix-cache hit ratio collapsed while every pod still serves its share.",
            description=(
                f"The prefix-cache hit ratio of {model} over all its pods, and of its best pod, has been "
                f"under {t.fleet_prefix_hit_ratio_drop:.0%} of the fleet's ratio over the "
                f"{t.fleet_prefix_hit_ratio_baseline} before the last "
                f"{t.fleet_prefix_hit_ratio_baseline_offset} for {t.fleet_prefix_hit_ratio_for} "
                "(now {{ $value | humanizePercentage }}), while every pod still gets its share of the "
                "requests: the traffic is there, but the router no longer sends a session's turns to the "
                "pod that caches its prefix."
            ),
            runbook="vllm-fleet-prefix-hit-ratio-collapsed",
            component="router",
        ),
    ]


def rule_groups(thresholds: AlertThresholds, *, runbook_base_url: str | None = None) -> dict[str, Any]:
    """The whole plain rule file: ``{"groups": [recording rules, alerts]}``."""
    base = (runbook_base_url or thresholds.runbook_base_url).rstrip("/")
    return {
        "groups": [
            {"name": RECORDING_GROUP, "rules": [*recording_rules(), _http_5xx_recording_rule(thresholds)]},
            {"name": ALERTING_GROUP, "rules": [spec.rule(base) for spec in alert_specs(thresholds)]},
        ]
    }


def rules_yaml(document: dict[str, Any]) -> str:
    """The YAML text of a rule document (key order kept, long lines not folded)."""
    header = (
        "# Generated by `python -m kvstack.monitoring.alerts.rules` from alerts/rules.py: "
        "edit that, not this file.\n"
    )
    return header + dump_yaml(document, width=1_000)


def main(argv: list[str] | None = None) -> int:
    """Rewrite ``alerts/kvstack-rules.yaml`` from the default thresholds (or write to argv[0])."""
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else RULES_FILE
    target.write_text(rules_yaml(rule_groups(AlertThresholds())), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
