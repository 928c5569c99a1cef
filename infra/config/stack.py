"""The stack's one typed config: :class:`StackConfig`, validated once and whole.

``StackConfig.model_validate(values)`` alone refuses every bad config: each section checks itself, and the
stack's validator runs the rules that span sections (:mod:`kvstack.infra.config.checks`), including the
model-aware ones that read the model's config.json. ``values`` is the namespace-stripped mapping
(``{"engine": {...}}``), a stack file's ``config:`` mapping as written (``{"kvstack:engine": {...},
"kubernetes:context": ...}``) or the whole parsed stack file: keys of other namespaces are skipped, a near
miss of ``kvstack`` is an error, and a ``{secure: ...}`` value is a Pulumi secret.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationInfo, model_validator

from kvstack.infra.config.checks import all_problems
from kvstack.infra.config.errors import NAMESPACE, cross_check_error
from kvstack.infra.config.sections.auth import AuthSpec
from kvstack.infra.config.sections.capacity_floor import CapacitySpec
from kvstack.infra.config.sections.engine import EngineSpec
from kvstack.infra.config.sections.gpu import GpuSpec
from kvstack.infra.config.sections.image import ImageSpec
from kvstack.infra.config.sections.model import ModelSpec
from kvstack.infra.config.sections.monitoring import MonitoringSpec
from kvstack.infra.config.sections.network import NetworkSpec
from kvstack.infra.config.sections.probes import ProbeSpec
from kvstack.infra.config.sections.resources import ResourcesSpec
from kvstack.infra.config.sections.rollout import RolloutSpec
from kvstack.infra.config.sections.router import RouterSection
from kvstack.infra.config.sections.scaling import ScalingSpec
from kvstack.infra.config.sections.secrets import SECRET_KEYS, SecretSource
from kvstack.infra.config.sections.security import SecuritySpec
from kvstack.infra.config.sections.storage import StorageSpec
from kvstack.infra.config.types import K8sName, Strict

NEAR_MISS_DISTANCE = 2
"""A namespace this close to ``kvstack`` (edits, after dropping '-', '_' and case) is a misspelling."""


def _normalised(namespace: str) -> str:
    return "".join(ch for ch in namespace.lower() if ch.isalnum())


def _distance(a: str, b: str) -> int:
    """Levenshtein distance (small strings)."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (ca != cb))
    return row[-1]


def is_near_miss(namespace: str) -> bool:
    """``kvstak``, ``kv-stack``, ``KVStack``, ``kvstacks``: meant as ``kvstack`` but not it."""
    if namespace == NAMESPACE:
        return False
    return _distance(_normalised(namespace), NAMESPACE) <= NEAR_MISS_DISTANCE


def is_secure_value(value: Any) -> bool:
    """A Pulumi secret as the stack file holds it: ``{secure: v1:...}``."""
    return isinstance(value, Mapping) and set(value) == {"secure"}


def strip_namespace(values: Mapping[Any, Any]) -> dict[str, Any]:
    """``kvstack:<key>`` -> ``<key>``; other namespaces dropped; near misses kept as written (so that they
    are reported); ``{secure: ...}`` of a secret key -> a stack secret."""
    out: dict[str, Any] = {}
    for full_key, value in values.items():
        namespace, sep, key = str(full_key).partition(":")
        if not sep:
            namespace, key = NAMESPACE, str(full_key)
        elif namespace != NAMESPACE:
            if is_near_miss(namespace):
                out[str(full_key)] = value
            continue
        out[key] = {"stack_secret": True} if key in SECRET_KEYS and is_secure_value(value) else value
    return out


def unknown_key_message(key: str) -> str:
    """What to say about a top-level key that is no field (``scalling``, ``kvstak:api_key``)."""
    known = sorted(StackConfig.model_fields)
    namespace, sep, rest = key.partition(":")
    if sep:
        return (
            f"namespace {namespace!r} is a misspelling of {NAMESPACE!r}: Pulumi would hand this value to no "
            f"one and the stack would run without it; write {NAMESPACE}:{rest}"
        )
    hint = difflib.get_close_matches(key, known, n=1)
    return (
        "unknown config key"
        + (f" (did you mean {NAMESPACE}:{hint[0]}?)" if hint else "")
        + f"; known keys: {', '.join(known)}"
    )


class StackConfig(Strict):
    """Everything one environment (stack) sets. Top-level fields are the ``kvstack:<key>`` config keys."""

    name: K8sName = Field(default="vllm", max_length=30, description="base name of every Kubernetes object")
    namespace: K8sName = Field(default="kvstack", description="namespace of the workload")
    create_namespace: bool = Field(
        default=False, description="create the namespace (labelled pod-security enforce: restricted)"
    )
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
    auth: AuthSpec = AuthSpec()
    router: RouterSection = RouterSection()
    hf_token: SecretSource | None = Field(
        default=None, description="Pulumi secret, or {existing_secret, key}"
    )
    api_key: SecretSource | None = Field(default=None, description="Pulumi secret, or {existing_secret, key}")

    @model_validator(mode="before")
    @classmethod
    def _stack_file_keys(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        if isinstance(data.get("config"), Mapping):
            data = data["config"]  # a whole stack file document (config:, encryptionsalt:, ...)
        return strip_namespace(data)

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> StackConfig:
        context = info.context if isinstance(info.context, Mapping) else {}
        base_dir = Path(context.get("base_dir") or Path.cwd())
        problems = all_problems(self, base_dir)
        if problems:
            raise cross_check_error("StackConfig", problems)
        return self

    @property
    def autoscaled(self) -> bool:
        return self.scaling.mode != "none"

    @property
    def max_pods(self) -> int:
        """The most replicas this stack can run."""
        return self.scaling.max_replicas if self.autoscaled else self.rollout.replicas
