"""Rules that span sections. Each check takes the validated :class:`~kvstack.infra.config.stack.StackConfig`
and returns problems as ``(loc, message, value)``; the stack's validator raises them all at once, each
naming the field to change.

The model-aware checks read the model's ``config.json`` (a built-in shape, or ``model.shape`` as a path
relative to the project folder given in the validation context as ``base_dir``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from kvstack.infra.capacity import ModelShape, ShapeError, builtin_shapes, load_shape, shape_for_model_id
from kvstack.infra.config.sections.gpu import KNOWN_GPU_MEMORY_BYTES
from kvstack.infra.config.sections.monitoring import is_placeholder_url
from kvstack.infra.config.sections.router import router_cross_checks
from kvstack.infra.config.types import duration_seconds

if TYPE_CHECKING:
    from kvstack.infra.config.stack import StackConfig

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str, Any]
Check = Callable[["StackConfig"], list[Problem]]


def gpus_match_tensor_parallel(config: StackConfig) -> list[Problem]:
    engine, gpu = config.engine, config.gpu
    if engine.tensor_parallel_size == gpu.count:
        return []
    return [
        (
            ("engine", "tensor_parallel_size"),
            f"is {engine.tensor_parallel_size} but gpu.count is {gpu.count}; each replica shards the "
            "model over all its GPUs, so they must be equal",
            engine.tensor_parallel_size,
        )
    ]


def replicas_can_run(config: StackConfig) -> list[Problem]:
    if config.scaling.mode == "none" and config.rollout.replicas == 0:
        return [
            (
                ("rollout", "replicas"),
                "is 0 with scaling.mode none: the stack would serve nothing; set rollout.replicas >= 1 "
                "(or remove the stack)",
                0,
            )
        ]
    return []


def storage_fits_replicas(config: StackConfig) -> list[Problem]:
    storage = config.storage
    if (
        storage.mode == "pvc"
        and storage.access_mode in {"ReadWriteOnce", "ReadWriteOncePod"}
        and config.max_pods > 1
    ):
        return [
            (
                ("storage", "access_mode"),
                f"{storage.access_mode} can't be mounted by up to {config.max_pods} replicas on different "
                "nodes; use ReadWriteMany or storage.mode ephemeral",
                storage.access_mode,
            )
        ]
    return []


def gpu_memory_known(config: StackConfig) -> list[Problem]:
    gpu, engine = config.gpu, config.engine
    total = gpu.total_memory_gib
    if total is None and engine.kv_cache_memory_gib is None:
        known = ", ".join(sorted(KNOWN_GPU_MEMORY_BYTES))
        return [
            (
                ("gpu", "memory_gib"),
                f"the KV planner needs one GPU's total memory: set gpu.memory_gib, or gpu.product to one of "
                f"{known}, or engine.kv_cache_memory_gib",
                None,
            )
        ]
    if total is not None and engine.kv_cache_memory_gib is not None:
        usable = total * engine.gpu_memory_utilization
        if engine.kv_cache_memory_gib > usable:
            return [
                (
                    ("engine", "kv_cache_memory_gib"),
                    f"{engine.kv_cache_memory_gib:g} GiB of KV per GPU is more than the {usable:.2f} GiB "
                    f"vLLM may use ({total:.2f} GiB x gpu_memory_utilization "
                    f"{engine.gpu_memory_utilization:g}), "
                    "before the weights; lower it or leave it unset to let vLLM size the cache",
                    engine.kv_cache_memory_gib,
                )
            ]
    return []


def engine_batch_reaches_floor(config: StackConfig) -> list[Problem]:
    engine, capacity = config.engine, config.capacity
    problems: list[Problem] = []
    if engine.max_num_seqs < capacity.min_concurrency:
        problems.append(
            (
                ("engine", "max_num_seqs"),
                f"{engine.max_num_seqs} is below capacity.min_concurrency ({capacity.min_concurrency:g}): "
                "vLLM would never run as many requests at once as the stack promises; raise max_num_seqs "
                "or lower the floor",
                engine.max_num_seqs,
            )
        )
    goodput = capacity.min_goodput_concurrency
    if goodput is not None and goodput > engine.max_num_seqs * config.max_pods:
        problems.append(
            (
                ("capacity", "min_goodput_concurrency"),
                f"{goodput} is more than the {engine.max_num_seqs * config.max_pods} requests the stack can "
                f"run at once (engine.max_num_seqs {engine.max_num_seqs} x {config.max_pods} replicas)",
                goodput,
            )
        )
    return problems


def alerts_fit_stack(config: StackConfig) -> list[Problem]:
    alerts, probes = config.monitoring.alerts, config.probes
    problems: list[Problem] = []
    if "max_replicas" in alerts.model_fields_set and alerts.max_replicas != config.max_pods:
        problems.append(
            (
                ("monitoring", "alerts", "max_replicas"),
                f"is {alerts.max_replicas} but the stack runs at most {config.max_pods} replicas; "
                "leave it unset (the stack fills it in)",
                alerts.max_replicas,
            )
        )
    if duration_seconds(alerts.engine_down_for) < probes.model_load_budget_seconds:
        problems.append(
            (
                ("monitoring", "alerts", "engine_down_for"),
                f"{alerts.engine_down_for} is shorter than probes.model_load_budget_seconds "
                f"({probes.model_load_budget_seconds} s): every scale-up would page while the model loads",
                alerts.engine_down_for,
            )
        )
    return problems


def prometheus_reaches_pods(config: StackConfig) -> list[Problem]:
    """The autoscaler reads metrics that Prometheus scrapes: the NetworkPolicy must let it in."""
    net, mon, scaling = config.network, config.monitoring, config.scaling
    if not (config.autoscaled and net.enabled):
        return []
    if not net.allow_prometheus:
        return [
            (
                ("network", "allow_prometheus"),
                f"is false, so the NetworkPolicy blocks the Prometheus that the {scaling.mode} autoscaler "
                "reads its metrics from; leave it true (it admits only monitoring.prometheus_pod_labels "
                "in monitoring.prometheus_namespace)",
                False,
            )
        ]
    if scaling.mode == "keda":
        host = urlparse(scaling.prometheus_address).hostname or ""
        match = re.fullmatch(r"[a-z0-9-]+\.([a-z0-9-]+)\.svc(\.cluster\.local)?", host)
        if match and match.group(1) != mon.prometheus_namespace:
            return [
                (
                    ("monitoring", "prometheus_namespace"),
                    f"is {mon.prometheus_namespace!r} but KEDA queries the Prometheus in namespace "
                    f"{match.group(1)!r} (scaling.prometheus_address), which the NetworkPolicy would "
                    "then keep from scraping; make them the same namespace",
                    mon.prometheus_namespace,
                )
            ]
    return []


def production_defaults(config: StackConfig) -> list[Problem]:
    """A stack that may run more than one replica is production: it needs an API key and real runbooks."""
    if config.max_pods <= 1:
        return []
    problems: list[Problem] = []
    if config.api_key is None and not config.auth.allow_unauthenticated:
        problems.append(
            (
                ("api_key",),
                f"a stack of up to {config.max_pods} replicas serves /v1 to anyone who reaches it: set "
                "kvstack:api_key (pulumi config set --secret kvstack:api_key <key>, or {existing_secret, "
                "key}), or opt out explicitly with kvstack:auth.allow_unauthenticated: true",
                None,
            )
        )
    runbooks = config.monitoring.alerts.runbook_base_url
    if is_placeholder_url(runbooks):
        problems.append(
            (
                ("monitoring", "alerts", "runbook_base_url"),
                f"{runbooks} is the placeholder: on-call would follow dead links; set it to where "
                "docs/runbooks is published (e.g. https://docs.example.com/kvstack/runbooks)",
                runbooks,
            )
        )
    return problems


def model_fits_engine(config: StackConfig, base_dir: Path) -> list[Problem]:
    """What the model's config.json allows: positions, and heads that tensor parallel must divide."""
    spec = config.model.shape or shape_for_model_id(config.model.id)
    if spec is None:
        return [
            (
                ("model", "shape"),
                f"no built-in shape for model.id {config.model.id!r}: set model.shape to one of "
                f"{', '.join(builtin_shapes())} or to the path of the model's config.json",
                None,
            )
        ]
    try:
        shape = load_shape(spec, base_dir=base_dir)
    except ShapeError as exc:
        return [(("model", "shape"), str(exc), None)]
    return shape_problems(config, shape)


def shape_problems(config: StackConfig, shape: ModelShape) -> list[Problem]:
    engine = config.engine
    problems: list[Problem] = []
    if (
        "max_position_embeddings" in shape.model_fields_set
        and engine.max_model_len > shape.max_position_embeddings
    ):
        problems.append(
            (
                ("engine", "max_model_len"),
                f"{engine.max_model_len} is beyond the model's {shape.max_position_embeddings:,} positions "
                f"(max_position_embeddings of {shape.name}); vLLM refuses to start: lower it",
                engine.max_model_len,
            )
        )
    tp = engine.tensor_parallel_size
    if shape.num_attention_heads % tp:
        problems.append(
            (
                ("engine", "tensor_parallel_size"),
                f"{tp} does not divide the model's {shape.num_attention_heads} attention heads; vLLM refuses "
                "to start: use a divisor of it (and the same gpu.count)",
                tp,
            )
        )
    kv = shape.num_key_value_heads
    if kv % tp and tp % kv:
        problems.append(
            (
                ("engine", "tensor_parallel_size"),
                f"{tp} neither divides the model's {kv} KV heads nor is a multiple of them; vLLM refuses to "
                "start: use a divisor or a multiple of it",
                tp,
            )
        )
    return problems


def router_fits_stack(config: StackConfig) -> list[Problem]:
    """The router section's rules that need the rest of the stack (``kvstack:router.<field>``)."""
    problems: list[Problem] = []
    for field, message in router_cross_checks(config):
        loc = tuple(field.removeprefix("kvstack:").split("."))
        problems.append((loc, message, None))
    return problems


CHECKS: tuple[Check, ...] = (
    gpus_match_tensor_parallel,
    replicas_can_run,
    storage_fits_replicas,
    gpu_memory_known,
    engine_batch_reaches_floor,
    alerts_fit_stack,
    prometheus_reaches_pods,
    production_defaults,
    router_fits_stack,
)


def all_problems(config: StackConfig, base_dir: Path) -> list[Problem]:
    problems = [problem for check in CHECKS for problem in check(config)]
    return problems + model_fits_engine(config, base_dir)
