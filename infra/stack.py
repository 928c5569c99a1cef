"""One stack, end to end and pure: config -> capacity estimate (with the floor enforced) -> manifests ->
stack outputs. The Pulumi program, ``kvstack render``, ``lint`` and ``plan`` all start here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kvstack.infra.capacity import (
    Advice,
    CapacityEstimate,
    PlanInputs,
    ShapeError,
    advise,
    builtin_shapes,
    describe,
    estimate,
    load_shape,
    shape_for_model_id,
)
from kvstack.infra.config import ConfigError, Issue, StackConfig
from kvstack.infra.config.sections.router import ROUTER_VERSION, router_enabled
from kvstack.infra.manifests import Manifest, build_manifests
from kvstack.infra.manifests.monitoring import adapter_rules_values, effective_thresholds
from kvstack.infra.manifests.names import ROUTER_METRICS_PATH, names_of, router_scrape_job, selector_labels
from kvstack.infra.manifests.workload import vllm_args
from kvstack.monitoring.alerts.autoscaling import KV_CACHE_METRIC, QUEUE_METRIC
from kvstack.monitoring.dashboards import DASHBOARD_UIDS


class CapacityError(ValueError):
    """The stack's estimated max concurrency is below ``capacity.min_concurrency``."""

    def __init__(self, source: str, est: CapacityEstimate, floor: float, advice: list[Advice]) -> None:
        self.source = source
        self.estimate = est
        self.floor = floor
        self.advice = advice
        knobs = (
            "\n".join(f"  - {a}" for a in advice)
            or "  - no single knob reaches it: use a bigger GPU or a smaller model"
        )
        super().__init__(
            f"{source}: kvstack:capacity.min_concurrency: estimated max concurrency "
            f"{est.max_concurrency:.2f} at max_model_len {est.max_model_len} is below the floor of "
            f"{floor:g}.\n"
            f"{describe(est)}\nTurn one of these knobs:\n{knobs}"
        )


def plan_inputs(config: StackConfig, *, base_dir: Path, source: str) -> PlanInputs:
    """The planner's inputs from a stack config (``model.shape`` paths are relative to ``base_dir``)."""
    shape_spec = config.model.shape or shape_for_model_id(config.model.id)
    if shape_spec is None:
        raise ConfigError(
            source,
            [
                Issue(
                    "kvstack:model.shape",
                    f"no built-in shape for model.id {config.model.id!r}: set model.shape to one of "
                    f"{', '.join(builtin_shapes())} or to the path of the model's config.json",
                )
            ],
        )
    try:
        shape = load_shape(shape_spec, base_dir=base_dir)
    except ShapeError as exc:
        raise ConfigError(source, [Issue("kvstack:model.shape", str(exc))]) from None
    engine = config.engine
    return PlanInputs(
        shape=shape,
        max_model_len=engine.max_model_len,
        gpu_memory_gib=config.gpu.total_memory_gib,
        gpu_memory_utilization=engine.gpu_memory_utilization,
        kv_cache_memory_gib=engine.kv_cache_memory_gib,
        block_size=engine.block_size or 16,
        dtype=engine.dtype,
        kv_cache_dtype=engine.kv_cache_dtype,
        tensor_parallel_size=engine.tensor_parallel_size,
        max_num_seqs=engine.max_num_seqs,
        max_num_batched_tokens=engine.max_num_batched_tokens,
        overhead_gib=config.capacity.overhead_gib,
    )


def slo_output(config: StackConfig) -> dict[str, Any]:
    """The objectives the alerts hold the deployment to, and the goodput floor (read by kvstack verify)."""
    thresholds = effective_thresholds(config)
    return {
        "ttft_seconds": thresholds.ttft_p95_slo_seconds,
        "itl_seconds": thresholds.itl_p99_slo_seconds,
        "min_goodput_concurrency": config.capacity.min_goodput_concurrency,
        "max_num_seqs": config.engine.max_num_seqs,
    }


def stack_outputs(config: StackConfig, manifests: list[Manifest], est: CapacityEstimate) -> dict[str, Any]:
    """What ``pulumi up`` exports (and ``kvstack render`` writes to outputs.json)."""
    names = names_of(config)
    engine_endpoint = f"http://{names.service}.{config.namespace}.svc.cluster.local:{config.engine.port}"
    router_on = router_enabled(config)
    router_host = f"{names.router}.{config.namespace}.svc.cluster.local"
    # what clients (and `kvstack verify --stack-outputs`) use: the router when there is one
    endpoint = f"http://{router_host}:{config.router.port}" if router_on else engine_endpoint
    scaling = config.scaling
    autoscaling: dict[str, Any] = {"mode": scaling.mode}
    if config.autoscaled:
        autoscaling |= {
            "min_replicas": scaling.min_replicas,
            "max_replicas": scaling.max_replicas,
            "targets": {QUEUE_METRIC: scaling.queue_target, KV_CACHE_METRIC: scaling.kv_cache_target},
            "scale_up_stabilization_seconds": scaling.scale_up.stabilization_window_seconds,
            "scale_down_stabilization_seconds": scaling.scale_down.stabilization_window_seconds,
        }
        if scaling.mode == "keda":
            autoscaling["cooldown_period_seconds"] = scaling.keda_cooldown_period_seconds
            if scaling.keda_fallback.enabled:
                autoscaling["fallback"] = {
                    "failure_threshold": scaling.keda_fallback.failure_threshold,
                    "replicas": scaling.fallback_replicas,
                }
        if scaling.mode == "hpa":
            autoscaling["adapter_wiring"] = config.monitoring.adapter_wiring
    else:
        autoscaling |= {"min_replicas": config.rollout.replicas, "max_replicas": config.rollout.replicas}
    outputs: dict[str, Any] = {
        "namespace": config.namespace,
        "endpoint": endpoint,
        "engine_endpoint": engine_endpoint,
        "completions_url": f"{endpoint}/v1/completions",
        "chat_completions_url": f"{endpoint}/v1/chat/completions",
        # vLLM's metrics through the engine Service (one pod per scrape; Prometheus scrapes each pod)
        "metrics_url": f"{engine_endpoint}/metrics",
        "served_model_name": config.model.served_model_name,
        "image": config.image.reference,
        "vllm_args": vllm_args(config),
        "resource_names": {m.role: f"{m.kind}/{m.name}" for m in manifests},
        "autoscaling": autoscaling,
        "dashboard_uids": dict(DASHBOARD_UIDS) if config.monitoring.dashboards else {},
        "capacity": {**est.as_output(), "min_concurrency": config.capacity.min_concurrency},
        "slo": slo_output(config),
    }
    if router_on:
        router = config.router
        assert router.image is not None  # router_cross_checks
        outputs["router"] = {
            "policy": router.policy,
            "replicas": router.replicas,
            "image": router.image.reference,
            "version": ROUTER_VERSION,
            "service": names.router,
            "deployment": names.router,
            "metrics_url": f"http://{router_host}:{router.metrics_port}{ROUTER_METRICS_PATH}",
            "scrape_job": router_scrape_job(config),
            "discovery_selector": selector_labels(config),
        }
    adapter_values = adapter_rules_values(config)
    if adapter_values is not None:
        # `pulumi stack output adapter_rules_values --json` -> the prometheus-adapter chart's values
        outputs["adapter_rules_values"] = adapter_values
    return outputs


@dataclass(frozen=True)
class StackPlan:
    """Everything derived from one stack config."""

    config: StackConfig
    source: str
    estimate: CapacityEstimate
    advice: list[Advice]
    manifests: list[Manifest]
    outputs: dict[str, Any]

    @property
    def meets_floor(self) -> bool:
        return self.estimate.max_concurrency >= self.config.capacity.min_concurrency


def build_stack(config: StackConfig, *, base_dir: Path, source: str, enforce_floor: bool = True) -> StackPlan:
    """Plan capacity, refuse a stack under the concurrency floor, build manifests and outputs."""
    inputs = plan_inputs(config, base_dir=base_dir, source=source)
    est = estimate(inputs)
    floor = config.capacity.min_concurrency
    advice = advise(inputs, floor)
    if enforce_floor and est.max_concurrency < floor:
        raise CapacityError(source, est, floor, advice)
    manifests = build_manifests(config)
    return StackPlan(
        config=config,
        source=source,
        estimate=est,
        advice=advice,
        manifests=manifests,
        outputs=stack_outputs(config, manifests, est),
    )
