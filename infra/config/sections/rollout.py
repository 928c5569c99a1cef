"""``kvstack:rollout``: how pods are replaced and drained."""

from __future__ import annotations

from pydantic import Field, model_validator

from kvstack.infra.config.errors import cross_check_error
from kvstack.infra.config.types import AnnotationMap, LabelMap, Strict, SubdomainName
from kvstack.infra.drain import (
    DEFAULT_PRE_STOP_SLEEP_SECONDS,
    DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS,
    drain_problem,
)


class RolloutSpec(Strict):
    """How pods are replaced and drained."""

    replicas: int = Field(default=1, ge=0, le=1000, description="replicas when scaling.mode is none")
    max_surge: int = Field(default=0, ge=0, description="extra pods during a rollout (each needs GPUs)")
    max_unavailable: int = Field(default=1, ge=0)
    pre_stop_sleep_seconds: int = Field(default=DEFAULT_PRE_STOP_SLEEP_SECONDS, ge=0, le=3600)
    termination_grace_period_seconds: int = Field(
        default=DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS, ge=1, le=7200
    )
    pdb_max_unavailable: int = Field(default=1, ge=1)
    priority_class_name: SubdomainName | None = None
    pod_labels: LabelMap = Field(default_factory=dict)
    pod_annotations: AnnotationMap = Field(default_factory=dict)

    @model_validator(mode="after")
    def _can_progress_and_drain(self) -> RolloutSpec:
        problems: list[tuple[tuple[str | int, ...], str, object]] = []
        if self.max_surge == 0 and self.max_unavailable == 0:
            problems.append(
                (
                    ("max_unavailable",),
                    "max_surge and max_unavailable are both 0: a rollout could never replace a pod",
                    0,
                )
            )
        # the grace period must hold the preStop sleep, vLLM's --shutdown-timeout and a margin (drain.py)
        drain = drain_problem(self.termination_grace_period_seconds, self.pre_stop_sleep_seconds)
        if drain is not None:
            problems.append(
                (("termination_grace_period_seconds",), drain, self.termination_grace_period_seconds)
            )
        if problems:
            raise cross_check_error("RolloutSpec", problems)
        return self
