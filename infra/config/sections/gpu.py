"""``kvstack:gpu``: GPUs per replica and where they are."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from kvstack.infra.config.errors import cross_check_error
from kvstack.infra.config.types import EXTENDED_RESOURCE, K8sName, LabelKey, LabelMap, LabelValue, Strict

# Total memory of one GPU as CUDA reports it (torch.cuda.mem_get_info, what vLLM multiplies by
# gpu_memory_utilization), keyed by the GPU product label. Measured on the lent machines (November 2026):
# nvidia-smi shows more (H100: 81559 MiB, H200: 143771 MiB) because it counts memory the driver reserves.
# Any other GPU: set gpu.memory_gib.
KNOWN_GPU_MEMORY_BYTES: dict[str, int] = {
    "NVIDIA-H100-80GB-HBM3": 85_017_493_504,  # 79.18 GiB
    "NVIDIA-H200": 150_109_880_320,  # 139.80 GiB
}


class Toleration(Strict):
    """A pod toleration; the API server refuses ``operator: Exists`` with a value."""

    key: LabelKey | None = None
    operator: Literal["Exists", "Equal"] = "Exists"
    value: LabelValue | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _matches_operator(self) -> Toleration:
        problems: list[tuple[tuple[str | int, ...], str, object]] = []
        if self.operator == "Exists" and self.value:
            problems.append(
                (
                    ("value",),
                    "operator Exists matches any value: drop value, or use operator Equal",
                    self.value,
                )
            )
        if self.operator == "Equal" and self.key is None:
            problems.append((("key",), "operator Equal needs a key (or use operator Exists)", None))
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            problems.append(
                (("toleration_seconds",), "only applies with effect NoExecute", self.toleration_seconds)
            )
        if problems:
            raise cross_check_error("Toleration", problems)
        return self


def _default_tolerations() -> list[Toleration]:
    return [Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")]


class GpuSpec(Strict):
    """GPUs per replica and where they are."""

    count: int = Field(default=1, ge=1, le=16, description="GPUs per replica (= tensor_parallel_size)")
    resource_name: str = Field(default="nvidia.com/gpu", pattern=EXTENDED_RESOURCE)
    product: LabelValue | None = Field(
        default=None, min_length=1, description="GPU product label value, e.g. NVIDIA-H100-80GB-HBM3"
    )
    product_label: LabelKey = Field(default="nvidia.com/gpu.product", min_length=1)
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
