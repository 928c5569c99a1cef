"""``kvstack:scaling``: replica bounds and the autoscaler (HPA on prometheus-adapter metrics, or KEDA).

The scale-up stabilization window is 300 s (llm-d's value): a new vLLM pod takes 60-150 s to become Ready
even with weights on disk and minutes more with an image pull, so a shorter window lets the HPA add
replicas again for demand that the loading pods will absorb (docs/autoscaling.md).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from kvstack.infra.config.errors import cross_check_error
from kvstack.infra.config.types import Strict


class ScaleBehavior(Strict):
    """One direction of the autoscaler's behavior."""

    stabilization_window_seconds: int = Field(ge=0, le=3600)
    pods: int = Field(default=1, ge=1, le=1000, description="at most this many pods per period")
    period_seconds: int = Field(default=60, ge=1, le=1800)


class ScaleUpBehavior(ScaleBehavior):
    """Scale-up: damped by 300 s because pods take minutes to become Ready (llm-d)."""

    stabilization_window_seconds: int = Field(default=300, ge=0, le=3600)
    pods: int = Field(default=1, ge=1, le=1000, description="at most this many pods per period")
    period_seconds: int = Field(default=60, ge=1, le=1800)


class ScaleDownBehavior(ScaleBehavior):
    """Scale-down: slow, because a removed pod takes its warm prefix cache with it."""

    stabilization_window_seconds: int = Field(default=600, ge=0, le=3600)
    pods: int = Field(default=1, ge=1, le=1000, description="at most this many pods per period")
    period_seconds: int = Field(default=300, ge=1, le=1800)


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
    scale_up: ScaleUpBehavior = ScaleUpBehavior()
    scale_down: ScaleDownBehavior = ScaleDownBehavior()
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

    @model_validator(mode="after")
    def _bounds(self) -> ScalingSpec:
        problems: list[tuple[tuple[str | int, ...], str, object]] = []
        if self.min_replicas > self.max_replicas:
            problems.append(
                (
                    ("min_replicas",),
                    f"{self.min_replicas} is above scaling.max_replicas ({self.max_replicas})",
                    self.min_replicas,
                )
            )
        elif (self.mode == "keda" and self.keda_fallback.enabled) and not (
            self.min_replicas <= self.fallback_replicas <= self.max_replicas
        ):
            problems.append(
                (
                    ("keda_fallback", "replicas"),
                    f"{self.fallback_replicas} is outside scaling.min_replicas..max_replicas "
                    f"({self.min_replicas}..{self.max_replicas})",
                    self.fallback_replicas,
                )
            )
        if problems:
            raise cross_check_error("ScalingSpec", problems)
        return self
