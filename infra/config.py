"""The stack's one typed config: every environment difference, validated once.

A Pulumi stack file (``Pulumi.<stack>.yaml``) holds structured values under the ``kvstack`` namespace::

    config:
      kvstack:model: {id: meta-llama/Llama-3.1-8B-Instruct, shape: llama-3.1-8b}
      kvstack:engine: {max_model_len: 8192, gpu_memory_utilization: 0.9}
      kvstack:hf_token: {secure: v1:...}        # pulumi config set --secret kvstack:hf_token hf_...

:func:`parse_stack_config` turns those values (namespace stripped) into :class:`StackConfig`, or raises
:class:`ConfigError`, whose message names each bad field as ``kvstack:<section>.<field>`` and the stack
file. Both the Pulumi program (values from ``pulumi.Config``) and ``kvstack render/lint/plan`` (values
from the YAML file, :func:`read_stack_file`) go through it. This module never imports Pulumi.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationError,
    field_validator,
)

from kvstack.infra.router_config import RouterSection, router_cross_checks
from kvstack.monitoring.alerts.thresholds import AlertThresholds

NAMESPACE = "kvstack"
"""The Pulumi config namespace (also the Pulumi project name)."""

SECRET_KEYS = ("hf_token", "api_key")
"""Top-level keys whose value is a Pulumi secret (or a reference to an existing Kubernetes Secret)."""

# Kubernetes names and values
DNS_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"
DURATION = r"^([0-9]+(ms|s|m|h|d|w|y))+$"
# <prefix>/<name>, e.g. nvidia.com/gpu, amd.com/gpu, nvidia.com/mig-1g.10gb
EXTENDED_RESOURCE = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"

PATTERN_HELP = {
    DNS_LABEL: "must be a Kubernetes name: lowercase letters, digits and '-', starting with a letter",
    DNS_SUBDOMAIN: "must be a Kubernetes name: lowercase letters, digits, '-' and '.'",
    QUANTITY: "must be a Kubernetes quantity such as 100Gi, 512Mi or 4",
    DURATION: "must be a duration such as 30s, 5m or 1h30m",
    EXTENDED_RESOURCE: "must be an extended resource name such as nvidia.com/gpu or amd.com/gpu",
}

K8sName = Annotated[str, StringConstraints(pattern=DNS_LABEL, max_length=63)]
SubdomainName = Annotated[str, StringConstraints(pattern=DNS_SUBDOMAIN, max_length=253)]
Quantity = Annotated[str, StringConstraints(pattern=QUANTITY)]
Duration = Annotated[str, StringConstraints(pattern=DURATION)]
LabelMap = dict[Annotated[str, StringConstraints(min_length=1, max_length=316)], str]

# Total memory of one GPU as CUDA reports it (torch.cuda.mem_get_info, what vLLM multiplies by
# gpu_memory_utilization), keyed by the GPU product label. Measured on the lent machines (November 2026):
# nvidia-smi shows more (H100: 81559 MiB, H200: 143771 MiB) because it counts memory the driver reserves.
# Any other GPU: set gpu.memory_gib.
KNOWN_GPU_MEMORY_BYTES: dict[str, int] = {
    "NVIDIA-H100-80GB-HBM3": 85_017_493_504,  # 79.18 GiB
    "NVIDIA-H200": 150_109_880_320,  # 139.80 GiB
}

# vLLM flags that the stack config owns; extra_args may not repeat them.
MANAGED_FLAGS = frozenset(
    {
        "--model",
        "--served-model-name",
        "--revision",
        "--host",
        "--port",
        "--max-model-len",
        "--gpu-memory-utilization",
        "--max-num-seqs",
        "--max-num-batched-tokens",
        "--tensor-parallel-size",
        "--dtype",
        "--kv-cache-dtype",
        "--enable-prefix-caching",
        "--no-enable-prefix-caching",
        "--block-size",
        "--kv-cache-memory-bytes",
        "--api-key",
        "--trust-remote-code",
        "--download-dir",
    }
)
# Environment variables that the manifests set themselves.
MANAGED_ENV = frozenset({"HF_TOKEN", "VLLM_API_KEY", "HF_HOME", "HOME", "VLLM_PORT", "VLLM_HOST_IP"})


class Strict(BaseModel):
    """Base of every config section: unknown fields are an error, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------- sections


class ExistingSecret(Strict):
    """A Kubernetes Secret that already exists in the namespace (created outside this stack)."""

    existing_secret: K8sName = Field(description="name of the Secret")
    key: str = Field(min_length=1, description="key inside the Secret")


class StackSecret(Strict):
    """The value is a Pulumi secret in the stack file; the program creates a Secret holding it.

    Produced by the loader from a ``secure:`` value; never written by hand.
    """

    stack_secret: Literal[True] = True


def _secret_kind(value: Any) -> str:
    if isinstance(value, StackSecret) or (isinstance(value, dict) and "stack_secret" in value):
        return "StackSecret"
    return "ExistingSecret"


# One branch per value shape, so that an error is reported against that branch only.
SecretSource = Annotated[
    Annotated[ExistingSecret, Tag("ExistingSecret")] | Annotated[StackSecret, Tag("StackSecret")],
    Discriminator(_secret_kind),
]
_UNION_TAGS = frozenset({"ExistingSecret", "StackSecret"})


class ModelSpec(Strict):
    """Which model vLLM serves and under what name."""

    id: str = Field(
        min_length=1,
        description="Hugging Face repo id (org/name) or a path inside the container (e.g. /models/llama)",
    )
    served_name: str | None = Field(
        default=None, min_length=1, description="name clients pass as 'model'; default: the id"
    )
    revision: str | None = Field(default=None, min_length=1, description="HF revision: branch, tag or commit")
    shape: str | None = Field(
        default=None,
        min_length=1,
        description="for the KV planner: a built-in shape name or a path to the model's config.json; "
        "default: the built-in shape whose alias matches the id",
    )
    trust_remote_code: bool = False

    @property
    def served_model_name(self) -> str:
        return self.served_name or self.id


class ImageSpec(Strict):
    """The vLLM container image, pinned."""

    repository: str = Field(default="vllm/vllm-openai", min_length=1)
    tag: str | None = Field(default="v0.26.0", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
    digest: str | None = Field(default=None, pattern=r"^sha256:[a-f0-9]{64}$")
    pull_policy: Literal["IfNotPresent", "Always", "Never"] = "IfNotPresent"
    pull_secrets: list[K8sName] = Field(default_factory=list)

    @field_validator("repository")
    @classmethod
    def _no_tag_in_repository(cls, value: str) -> str:
        last = value.rsplit("/", 1)[-1]
        if ":" in last or "@" in value:
            raise ValueError("put the tag in image.tag and the digest in image.digest, not in the repository")
        return value

    @field_validator("tag")
    @classmethod
    def _pinned(cls, value: str | None) -> str | None:
        if value is not None and value.lower() in {"latest", "nightly", "main", "stable"}:
            raise ValueError(f"tag {value!r} moves; pin a release tag (e.g. v0.26.0) or set image.digest")
        return value

    @property
    def reference(self) -> str:
        ref = self.repository
        if self.tag:
            ref += f":{self.tag}"
        if self.digest:
            ref += f"@{self.digest}"
        return ref


class Toleration(Strict):
    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(default=None, ge=0)


def _default_tolerations() -> list[Toleration]:
    return [Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")]


class GpuSpec(Strict):
    """GPUs per replica and where they are."""

    count: int = Field(default=1, ge=1, le=16, description="GPUs per replica (= tensor_parallel_size)")
    resource_name: str = Field(default="nvidia.com/gpu", pattern=EXTENDED_RESOURCE)
    product: str | None = Field(
        default=None, min_length=1, description="GPU product label value, e.g. NVIDIA-H100-80GB-HBM3"
    )
    product_label: str = Field(default="nvidia.com/gpu.product", min_length=1)
    node_selector: LabelMap = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=_default_tolerations)
    runtime_class_name: K8sName | None = None
    memory_gib: float | None = Field(
        default=None,
        gt=0,
        le=1024,
        description="total memory of one GPU in GiB as CUDA reports it (planner); known products have it",
    )

    @property
    def total_memory_gib(self) -> float | None:
        if self.memory_gib is not None:
            return self.memory_gib
        if self.product in KNOWN_GPU_MEMORY_BYTES:
            return KNOWN_GPU_MEMORY_BYTES[self.product] / 1024**3
        return None


class EngineSpec(Strict):
    """vLLM engine knobs; each one is a KV-cache knob in disguise."""

    max_model_len: int = Field(ge=16, le=10_000_000)
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=0.98)
    max_num_seqs: int = Field(default=256, ge=1, le=65_536)
    max_num_batched_tokens: int | None = Field(default=None, ge=16, le=10_000_000)
    tensor_parallel_size: int = Field(default=1, ge=1, le=16)
    dtype: Literal["auto", "bfloat16", "float16", "half", "float32"] = "auto"
    kv_cache_dtype: Literal["auto", "bfloat16", "fp8", "fp8_e4m3", "fp8_e5m2"] = "auto"
    enable_prefix_caching: bool = True
    block_size: Literal[8, 16, 32, 64, 128] | None = Field(
        default=None, description="tokens per KV block; None: vLLM's default (16 on GPU)"
    )
    kv_cache_memory_gib: float | None = Field(
        default=None, gt=0, le=4096, description="fixed KV memory per GPU (--kv-cache-memory-bytes)"
    )
    port: int = Field(default=8000, ge=1024, le=65535)
    extra_args: list[str] = Field(default_factory=list)
    env: dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], str] = Field(
        default_factory=dict
    )

    @field_validator("extra_args")
    @classmethod
    def _not_managed(cls, value: list[str]) -> list[str]:
        for arg in value:
            flag = arg.split("=", 1)[0]
            if flag in MANAGED_FLAGS:
                raise ValueError(
                    f"{flag} is set from the typed config (kvstack:engine / kvstack:model); "
                    "remove it from extra_args"
                )
        return value

    @field_validator("env")
    @classmethod
    def _env_not_managed(cls, value: dict[str, str]) -> dict[str, str]:
        clash = sorted(set(value) & MANAGED_ENV)
        if clash:
            raise ValueError(f"{', '.join(clash)} set by the stack itself; remove from engine.env")
        return value


class StorageSpec(Strict):
    """Where model weights are cached (HF_HOME)."""

    mode: Literal["pvc", "existing_claim", "ephemeral"] = "pvc"
    storage_class: SubdomainName | None = None
    size: Quantity = "100Gi"
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany", "ReadWriteOncePod"] = (
        "ReadWriteMany"
    )
    claim_name: K8sName | None = Field(default=None, description="existing_claim: the PVC's name")
    mount_path: str = Field(default="/models", pattern=r"^/[^:]*$")


class ProbeSpec(Strict):
    """Health probes, all on vLLM's /health."""

    model_load_budget_seconds: int = Field(
        default=600, ge=30, le=7200, description="longest model load (download + load + compile) allowed"
    )
    startup_period_seconds: int = Field(default=10, ge=1, le=300)
    readiness_period_seconds: int = Field(default=5, ge=1, le=300)
    readiness_failure_threshold: int = Field(default=3, ge=1, le=100)
    liveness_period_seconds: int = Field(default=15, ge=1, le=300)
    liveness_failure_threshold: int = Field(default=6, ge=3, le=100)
    timeout_seconds: int = Field(default=5, ge=1, le=120)


class ResourcesSpec(Strict):
    """CPU and memory of the vLLM container (GPUs come from kvstack:gpu)."""

    cpu_request: Quantity = "4"
    cpu_limit: Quantity | None = None
    memory_request: Quantity = "32Gi"
    memory_limit: Quantity | None = "64Gi"
    shm_size: Quantity = Field(default="8Gi", description="size of the /dev/shm memory emptyDir")
    ephemeral_storage_request: Quantity | None = None


class SecuritySpec(Strict):
    """The pod and container security context."""

    run_as_user: int = Field(default=1000, ge=1)
    run_as_group: int = Field(default=1000, ge=1)
    fs_group: int = Field(default=1000, ge=1)
    read_only_root_filesystem: bool = True
    service_account_name: K8sName | None = None
    automount_service_account_token: bool = False


class RolloutSpec(Strict):
    """How pods are replaced and drained."""

    replicas: int = Field(default=1, ge=0, le=1000, description="replicas when scaling.mode is none")
    max_surge: int = Field(default=0, ge=0, description="extra pods during a rollout (each needs GPUs)")
    max_unavailable: int = Field(default=1, ge=0)
    pre_stop_sleep_seconds: int = Field(default=30, ge=0, le=3600)
    termination_grace_period_seconds: int = Field(default=130, ge=1, le=7200)
    pdb_max_unavailable: int = Field(default=1, ge=1)
    priority_class_name: SubdomainName | None = None
    pod_labels: LabelMap = Field(default_factory=dict)
    pod_annotations: LabelMap = Field(default_factory=dict)


class ScaleBehavior(Strict):
    """One direction of the autoscaler's behavior."""

    stabilization_window_seconds: int = Field(ge=0, le=3600)
    pods: int = Field(default=1, ge=1, le=1000, description="at most this many pods per period")
    period_seconds: int = Field(default=60, ge=1, le=1800)


class KedaFallback(Strict):
    """KEDA's ``spec.fallback``: the replica count to hold while the scalers keep failing.

    KEDA supports it only for triggers with ``metricType: AverageValue`` (the stack's triggers use it),
    never for cpu/memory triggers.
    """

    enabled: bool = True
    failure_threshold: int = Field(
        default=3, ge=1, le=1000, description="consecutive failed polls before KEDA uses the fallback"
    )
    replicas: int | None = Field(
        default=None, ge=1, le=1000, description="replicas while failing; default: scaling.min_replicas"
    )


class ScalingSpec(Strict):
    """Replica bounds and the autoscaler (HPA on prometheus-adapter metrics, or KEDA)."""

    mode: Literal["hpa", "keda", "none"] = "hpa"
    min_replicas: int = Field(default=1, ge=1, le=1000)
    max_replicas: int = Field(default=1, ge=1, le=1000)
    queue_target: float = Field(default=3, gt=0, le=10_000, description="waiting requests per replica")
    kv_cache_target: float = Field(default=0.8, gt=0, le=1, description="KV-cache usage per replica (0-1)")
    scale_up: ScaleBehavior = ScaleBehavior(stabilization_window_seconds=180, pods=1, period_seconds=60)
    scale_down: ScaleBehavior = ScaleBehavior(stabilization_window_seconds=600, pods=1, period_seconds=300)
    keda_polling_interval_seconds: int = Field(default=15, ge=1, le=3600)
    keda_cooldown_period_seconds: int = Field(default=360, ge=0, le=86_400)
    prometheus_address: str = Field(
        default="http://prometheus-operated.monitoring.svc:9090",
        pattern=r"^https?://[^\s]+$",
        description="Prometheus that KEDA queries (keda mode)",
    )
    keda_fallback: KedaFallback = KedaFallback()

    @property
    def fallback_replicas(self) -> int:
        """The replicas KEDA holds while its scalers fail (``keda_fallback.replicas`` or ``min_replicas``)."""
        return self.keda_fallback.replicas or self.min_replicas


class MonitoringSpec(Strict):
    """Scrape config, alert rules, dashboards and prometheus-adapter rules."""

    scrape: Literal["service_monitor", "pod_monitor"] = "service_monitor"
    labels: LabelMap = Field(
        default_factory=lambda: {"release": "kube-prometheus-stack"},
        description="labels the Prometheus selects ServiceMonitors/PodMonitors/PrometheusRules by",
    )
    scrape_interval: Duration = "15s"
    prometheus_namespace: K8sName = "monitoring"
    prometheus_pod_labels: LabelMap = Field(
        default_factory=lambda: {"app.kubernetes.io/name": "prometheus"},
        description="pods allowed to scrape /metrics through the NetworkPolicy",
    )
    dashboards: bool = True
    dashboard_label: LabelMap = Field(default_factory=lambda: {"grafana_dashboard": "1"})
    dashboards_namespace: K8sName | None = Field(default=None, description="default: the stack's namespace")
    adapter_namespace: K8sName = "monitoring"
    adapter_configmap: K8sName | None = Field(default=None, description="default: <name>-adapter-rules")
    adapter_wiring: Literal["undeclared", "helm_values", "existing_configmap"] = Field(
        default="undeclared",
        description="how prometheus-adapter gets the rules (hpa mode): helm_values (the stack output "
        "adapter_rules_values as the chart's rules.custom), existing_configmap (the chart's rules.existing "
        "names the stack's ConfigMap), undeclared (kvstack lint warns)",
    )
    alerts: AlertThresholds = AlertThresholds()

    @field_validator("dashboard_label")
    @classmethod
    def _one_label(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("the Grafana sidecar needs a label to find dashboard ConfigMaps")
        return value


class NetworkPeer(Strict):
    """One allowed source of traffic to the API port (fields combine as in a NetworkPolicy peer)."""

    namespace_labels: LabelMap | None = None
    pod_labels: LabelMap | None = None
    cidr: str | None = Field(default=None, pattern=r"^[0-9a-fA-F:.]+/[0-9]{1,3}$")
    except_cidrs: list[Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F:.]+/[0-9]{1,3}$")]] = Field(
        default_factory=list
    )


class NetworkSpec(Strict):
    """Who may reach the API port."""

    enabled: bool = True
    allowed_sources: list[NetworkPeer] = Field(
        default_factory=list, description="empty: only pods in the stack's namespace (and Prometheus)"
    )
    allow_prometheus: bool = True


class CapacitySpec(Strict):
    """The KV-capacity planner's floor and overrides."""

    min_concurrency: float = Field(
        default=4,
        ge=0,
        le=100_000,
        description="refuse the stack when max concurrency at max_model_len is lower",
    )
    overhead_gib: float | None = Field(
        default=None, ge=0, le=512, description="override the planner's non-KV, non-weight overhead per GPU"
    )


class StackConfig(Strict):
    """Everything one environment (stack) sets. Top-level fields are the ``kvstack:<key>`` config keys."""

    name: K8sName = Field(default="vllm", max_length=30, description="base name of every Kubernetes object")
    namespace: K8sName = "kvstack"
    create_namespace: bool = False
    model: ModelSpec
    image: ImageSpec = ImageSpec()
    gpu: GpuSpec = GpuSpec()
    engine: EngineSpec
    storage: StorageSpec = StorageSpec()
    probes: ProbeSpec = ProbeSpec()
    resources: ResourcesSpec = ResourcesSpec()
    security: SecuritySpec = SecuritySpec()
    rollout: RolloutSpec = RolloutSpec()
    scaling: ScalingSpec = ScalingSpec()
    monitoring: MonitoringSpec = MonitoringSpec()
    network: NetworkSpec = NetworkSpec()
    capacity: CapacitySpec = CapacitySpec()
    router: RouterSection = RouterSection()
    hf_token: SecretSource | None = None
    api_key: SecretSource | None = None

    @property
    def autoscaled(self) -> bool:
        return self.scaling.mode != "none"

    @property
    def max_pods(self) -> int:
        """The most replicas this stack can run."""
        return self.scaling.max_replicas if self.autoscaled else self.rollout.replicas


# ----------------------------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class Issue:
    """One problem: the config key path (``kvstack:engine.max_model_len``) and what is wrong."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class ConfigError(ValueError):
    """A stack's config is invalid. ``source`` names the stack file; ``issues`` each bad field."""

    def __init__(self, source: str, issues: list[Issue]) -> None:
        self.source = source
        self.issues = issues
        count = f"{len(issues)} problem{'s' if len(issues) != 1 else ''}"
        lines = "\n".join(f"  {issue}" for issue in issues)
        super().__init__(f"{source}: invalid kvstack config ({count}):\n{lines}")

    @property
    def fields(self) -> list[str]:
        return [issue.field for issue in self.issues]


def field_path(loc: tuple[str | int, ...]) -> str:
    """``("engine", "max_model_len")`` -> ``kvstack:engine.max_model_len``; indexes as ``[i]``."""
    if not loc:
        return f"{NAMESPACE}:"
    out = f"{NAMESPACE}:{loc[0]}"
    for part in loc[1:]:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the last element of ``loc`` (for 'did you mean')."""
    model: type[BaseModel] | None = StackConfig
    for part in loc[:-1]:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        if info is None:
            return None
        annotation = info.annotation
        model = _first_model(annotation)
    return model


def _first_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def _issues_from(exc: ValidationError, secret_fields: Collection[str]) -> list[Issue]:
    issues: list[Issue] = []
    for err in exc.errors(include_url=False):
        loc = tuple(part for part in err["loc"] if part not in _UNION_TAGS)
        path = field_path(loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            owner = _model_at(loc)
            known = sorted(owner.model_fields) if owner else []
            hint = difflib.get_close_matches(str(loc[-1]), known, n=1)
            msg = "unknown field"
            msg += f" (did you mean {hint[0]!r}?)" if hint else ""
            msg += f"; known fields here: {', '.join(known)}" if known else ""
        elif kind == "missing":
            msg = "required field is missing"
        elif kind == "string_pattern_mismatch" and str((err.get("ctx") or {}).get("pattern")) in PATTERN_HELP:
            msg = PATTERN_HELP[str((err.get("ctx") or {}).get("pattern"))]
            shown = err.get("input")
            if loc and loc[0] not in secret_fields and isinstance(shown, str):
                msg += f" (got {shown!r})"
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            shown = err.get("input")
            if loc and loc[0] not in secret_fields and isinstance(shown, str | int | float | bool):
                msg += f" (got {shown!r})"
        issues.append(Issue(path, msg))
    return issues


# ----------------------------------------------------------------------------------------------- loader


def parse_stack_config(
    raw: Mapping[str, Any],
    *,
    source: str,
    secret_keys: Collection[str] = (),
) -> StackConfig:
    """Validate the namespace-stripped config of one stack.

    ``raw`` maps ``model``, ``engine``, ... to their structured values; ``secret_keys`` lists the keys
    whose value was a Pulumi secret (the value itself is never needed here). ``source`` is what the
    error names: the stack file, e.g. ``Pulumi.prod.yaml (stack prod)``.
    """
    issues: list[Issue] = []
    data: dict[str, Any] = {}
    known = set(StackConfig.model_fields)
    for key, value in raw.items():
        if key in SECRET_KEYS:
            if key in secret_keys:
                data[key] = {"stack_secret": True}
            elif isinstance(value, Mapping):
                data[key] = dict(value)
            else:
                issues.append(
                    Issue(
                        field_path((key,)),
                        f"must be a Pulumi secret: pulumi config set --secret {NAMESPACE}:{key} <value> "
                        f"(or {{existing_secret: <Secret name>, key: <key>}} to use an existing Secret)",
                    )
                )
            continue
        if key in secret_keys:
            issues.append(
                Issue(
                    field_path((key,)), f"is not a secret; set it without --secret (secrets: {SECRET_KEYS})"
                )
            )
            continue
        if key not in known:
            hint = difflib.get_close_matches(key, sorted(known), n=1)
            issues.append(
                Issue(
                    field_path((key,)),
                    "unknown config key"
                    + (f" (did you mean {NAMESPACE}:{hint[0]}?)" if hint else "")
                    + f"; known keys: {', '.join(sorted(known))}",
                )
            )
            continue
        data[key] = value
    try:
        config = StackConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, issues + _issues_from(exc, SECRET_KEYS)) from None
    issues += cross_checks(config)
    if issues:
        raise ConfigError(source, issues)
    return config


def duration_seconds(value: str) -> float:
    """Prometheus duration (``1h30m``) in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800, "y": 31_536_000}
    return sum(float(n) * units[u] for n, u in re.findall(r"([0-9]+)(ms|s|m|h|d|w|y)", value))


def cross_checks(config: StackConfig) -> list[Issue]:
    """Rules that span fields; each issue names the field to change."""
    issues: list[Issue] = []
    engine, gpu, scaling, rollout = config.engine, config.gpu, config.scaling, config.rollout
    if not config.image.tag and not config.image.digest:
        issues.append(Issue("kvstack:image.tag", "set a pinned image.tag (e.g. v0.26.0) or an image.digest"))
    if engine.tensor_parallel_size != gpu.count:
        issues.append(
            Issue(
                "kvstack:engine.tensor_parallel_size",
                f"is {engine.tensor_parallel_size} but gpu.count is {gpu.count}; each replica shards the "
                "model over all its GPUs, so they must be equal",
            )
        )
    if scaling.min_replicas > scaling.max_replicas:
        issues.append(
            Issue(
                "kvstack:scaling.min_replicas",
                f"{scaling.min_replicas} is above scaling.max_replicas ({scaling.max_replicas})",
            )
        )
    if (scaling.mode == "keda" and scaling.keda_fallback.enabled) and not (
        scaling.min_replicas <= scaling.fallback_replicas <= scaling.max_replicas
    ):
        issues.append(
            Issue(
                "kvstack:scaling.keda_fallback.replicas",
                f"{scaling.fallback_replicas} is outside scaling.min_replicas..max_replicas "
                f"({scaling.min_replicas}..{scaling.max_replicas})",
            )
        )
    if rollout.max_surge == 0 and rollout.max_unavailable == 0:
        issues.append(
            Issue(
                "kvstack:rollout.max_unavailable",
                "max_surge and max_unavailable are both 0: a rollout could never replace a pod",
            )
        )
    if rollout.termination_grace_period_seconds <= rollout.pre_stop_sleep_seconds:
        issues.append(
            Issue(
                "kvstack:rollout.termination_grace_period_seconds",
                f"{rollout.termination_grace_period_seconds} s leaves no time to drain after the "
                f"{rollout.pre_stop_sleep_seconds} s preStop sleep; make it longer",
            )
        )
    storage = config.storage
    if storage.mode == "existing_claim" and storage.claim_name is None:
        issues.append(Issue("kvstack:storage.claim_name", "required when storage.mode is existing_claim"))
    if storage.mode != "existing_claim" and storage.claim_name is not None:
        issues.append(Issue("kvstack:storage.claim_name", "only used when storage.mode is existing_claim"))
    if (
        storage.mode == "pvc"
        and storage.access_mode in {"ReadWriteOnce", "ReadWriteOncePod"}
        and config.max_pods > 1
    ):
        issues.append(
            Issue(
                "kvstack:storage.access_mode",
                f"{storage.access_mode} can't be mounted by up to {config.max_pods} replicas on different "
                "nodes; use ReadWriteMany or storage.mode ephemeral",
            )
        )
    if gpu.total_memory_gib is None and engine.kv_cache_memory_gib is None:
        known = ", ".join(sorted(KNOWN_GPU_MEMORY_BYTES))
        issues.append(
            Issue(
                "kvstack:gpu.memory_gib",
                f"the KV planner needs one GPU's total memory: set gpu.memory_gib, or gpu.product to one of "
                f"{known}, or engine.kv_cache_memory_gib",
            )
        )
    probes = config.probes
    if probes.model_load_budget_seconds < probes.startup_period_seconds:
        issues.append(
            Issue(
                "kvstack:probes.model_load_budget_seconds",
                "is shorter than one startup probe period",
            )
        )
    alerts = config.monitoring.alerts
    if "max_replicas" in alerts.model_fields_set and alerts.max_replicas != config.max_pods:
        issues.append(
            Issue(
                "kvstack:monitoring.alerts.max_replicas",
                f"is {alerts.max_replicas} but the stack runs at most {config.max_pods} replicas; "
                "leave it unset (the stack fills it in)",
            )
        )
    if duration_seconds(alerts.engine_down_for) < probes.model_load_budget_seconds:
        issues.append(
            Issue(
                "kvstack:monitoring.alerts.engine_down_for",
                f"{alerts.engine_down_for} is shorter than probes.model_load_budget_seconds "
                f"({probes.model_load_budget_seconds} s): every scale-up would page while the model loads",
            )
        )
    for i, peer in enumerate(config.network.allowed_sources):
        if peer.cidr is not None and (peer.namespace_labels is not None or peer.pod_labels is not None):
            issues.append(
                Issue(
                    f"kvstack:network.allowed_sources[{i}].cidr",
                    "a peer is either a cidr or label selectors, not both",
                )
            )
        if peer.cidr is None and peer.namespace_labels is None and peer.pod_labels is None:
            issues.append(
                Issue(
                    f"kvstack:network.allowed_sources[{i}]",
                    "set cidr, namespace_labels or pod_labels (an empty peer would allow everyone)",
                )
            )
        if peer.except_cidrs and peer.cidr is None:
            issues.append(Issue(f"kvstack:network.allowed_sources[{i}].except_cidrs", "needs cidr"))
    issues += [Issue(field, message) for field, message in router_cross_checks(config)]
    return issues


# ------------------------------------------------------------------------------------------ stack files


@dataclass(frozen=True)
class StackFile:
    """A parsed ``Pulumi.<stack>.yaml``: namespace-stripped values and which keys were secrets."""

    path: Path
    stack: str
    values: dict[str, Any]
    secret_keys: frozenset[str]

    @property
    def source(self) -> str:
        return f"{self.path.name} (stack {self.stack})"


def stack_file_path(stack: str, project_dir: Path) -> Path:
    return project_dir / f"Pulumi.{stack}.yaml"


def read_stack_file(path: Path) -> StackFile:
    """Read a stack file's ``config:`` section; keys of other namespaces (``kubernetes:``) are skipped."""
    match = re.fullmatch(r"Pulumi\.(.+)\.ya?ml", path.name)
    stack = match.group(1) if match else path.stem
    source = f"{path.name} (stack {stack})"
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            source,
            [Issue("file", f"{path} not found (run from the project directory or pass --project-dir)")],
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, [Issue("file", f"not valid YAML: {exc}")]) from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(source, [Issue("file", "a stack file is a mapping with a config: section")])
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigError(source, [Issue("config", "must be a mapping of <namespace>:<key> to values")])
    values: dict[str, Any] = {}
    secrets: set[str] = set()
    issues: list[Issue] = []
    for full_key, value in config.items():
        namespace, sep, key = str(full_key).partition(":")
        if not sep:
            issues.append(Issue(str(full_key), f"config keys are namespaced: write {NAMESPACE}:{full_key}"))
            continue
        if namespace != NAMESPACE:
            continue
        if isinstance(value, dict) and set(value) == {"secure"}:
            secrets.add(key)
            values[key] = None  # the value is encrypted; only the Pulumi engine can read it
        else:
            values[key] = value
    if issues:
        raise ConfigError(source, issues)
    return StackFile(path=path, stack=stack, values=values, secret_keys=frozenset(secrets))


def load_stack(stack: str, project_dir: Path) -> tuple[StackFile, StackConfig]:
    """Read and validate ``Pulumi.<stack>.yaml`` in ``project_dir``."""
    stack_file = read_stack_file(stack_file_path(stack, project_dir))
    config = parse_stack_config(
        stack_file.values, source=stack_file.source, secret_keys=stack_file.secret_keys
    )
    return stack_file, config
