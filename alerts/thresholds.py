"""Alert thresholds and SLOs: one strict model, defaults defended in ``docs/autoscaling.md``/runbooks.

Infra renders the rules with the stack's values (``rule_groups(AlertThresholds(**stack.alerts))``); the
committed ``alerts/kvstack-rules.yaml`` is the rendering of the defaults, which is what ``promtool`` checks
and tests. Latency SLOs default to bucket boundaries of vLLM's histograms (TTFT: ..., 1.0, 2.5, 5.0;
ITL: ..., 0.075, 0.1, 0.15) so that ``histogram_quantile``'s linear interpolation inside a bucket does not
decide whether an alert fires.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from kvstack.contract.types import PrometheusDuration as Duration


class AlertThresholds(BaseModel):
    """Every threshold, SLO and ``for:`` of the kvstack alerts. Unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # KV cache: 1.0 means every block is held by a running request; new requests wait or preempt.
    kv_cache_saturation: float = Field(default=0.9, gt=0, le=1, description="fraction of KV blocks in use")
    kv_cache_saturation_for: Duration = "10m"

    # Queue: vLLM only queues what it cannot admit (max_num_seqs or KV blocks exhausted).
    queue_depth_per_replica: float = Field(default=5, gt=0, le=10_000, description="waiting requests per pod")
    queue_depth_for: Duration = "5m"

    ttft_p95_slo_seconds: float = Field(default=2.5, gt=0, le=600)
    ttft_p95_for: Duration = "10m"
    itl_p99_slo_seconds: float = Field(default=0.1, gt=0, le=60)
    itl_p99_for: Duration = "10m"

    error_ratio: float = Field(default=0.05, gt=0, le=1, description="5xx share of /v1 requests")
    error_ratio_for: Duration = "5m"

    preemption_rate_per_second: float = Field(default=0.05, gt=0, le=10_000)
    preemption_for: Duration = "10m"

    # 0 disables the alert in effect (a ratio is never < 0): right for workloads without shared prefixes.
    prefix_cache_hit_rate_floor: float = Field(default=0.1, ge=0, lt=1)
    prefix_cache_hit_rate_for: Duration = "30m"

    # The autoscaler's ceiling as the stack configures it (HPA maxReplicas / KEDA maxReplicaCount). The
    # alert compares kube-state-metrics' current replicas with min(HPA spec max, this value).
    max_replicas: int = Field(default=8, ge=1, le=1000)
    autoscaler_at_max_for: Duration = "10m"

    # A GPU pod is scraped while it loads the model (no listener yet, up == 0): keep this above the
    # startupProbe budget (production-stack: 15 s + 10 s x 60 = 615 s) or every scale-up pages.
    engine_down_for: Duration = "10m"
    metrics_absent_for: Duration = "5m"

    # Which scrape jobs are vLLM (PodMonitor jobs are "<namespace>/<podmonitor>", ServiceMonitor jobs the
    # Service name). Used where a metric name alone is not vLLM-specific (up, http_requests_total), always
    # minus the router's jobs below: ".*vllm.*" alone would take a router scraped as "vllm-router".
    scrape_job_regex: str = Field(default=".*vllm.*", min_length=1, pattern=r'^[^"\\\n]+$')
    # Which scrape jobs are vllm-router (infra sets the stack's; the local fleet's is "kvstack-router").
    router_job_regex: str = Field(default=".*router.*", min_length=1, pattern=r'^[^"\\\n]+$')

    # The router tier's alerts. False leaves them out: a stack without a router (infra sets it).
    router_alerts: bool = True
    # The router starts in seconds (no model to load): every target of a router job down this long means
    # clients get no answer at all.
    router_down_for: Duration = "2m"
    # Share of cache-aware decisions taken without the prompt's tokens (outcome="missing_tokens"): the
    # router cannot match prefixes and silently balances load instead.
    router_missing_tokens_ratio: float = Field(default=0.5, gt=0, le=1)
    router_missing_tokens_for: Duration = "10m"
    # Fleet prefix-hit ratio collapsed: the fleet's 5m ratio (and every pod's) under this share of the
    # fleet's own ratio over the baseline window, ending baseline_offset ago, while every pod still gets at
    # least fleet_request_share_floor of the mean per-pod request rate. 0.75: cache_aware -> round_robin
    # with two H200 replicas went 0.72 -> 0.49 (0.68 of it).
    fleet_prefix_hit_ratio_drop: float = Field(default=0.75, gt=0, lt=1)
    fleet_prefix_hit_ratio_baseline: Duration = "6h"
    fleet_prefix_hit_ratio_baseline_offset: Duration = "1h"
    fleet_request_share_floor: float = Field(default=0.5, gt=0, le=1)
    fleet_prefix_hit_ratio_for: Duration = "15m"
    # Which HPAs scale vLLM (KEDA names its HPA "keda-hpa-<ScaledObject>"), for kube-state-metrics series.
    hpa_name_regex: str = Field(default=".*vllm.*", min_length=1, pattern=r'^[^"\\\n]+$')

    runbook_base_url: str = Field(
        default="https://kvstack.invalid/docs/runbooks",
        pattern=r"^https?://[^\s]+[^/\s]$",
        description="absolute URL of docs/runbooks (no trailing slash); infra sets the real one",
    )
