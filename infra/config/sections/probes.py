"""``kvstack:probes``: health probes, all on vLLM's /health."""

from __future__ import annotations

from pydantic import Field, model_validator

from kvstack.infra.config.errors import cross_check_error
from kvstack.infra.config.types import Strict


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

    @model_validator(mode="after")
    def _budget_covers_a_period(self) -> ProbeSpec:
        if self.model_load_budget_seconds < self.startup_period_seconds:
            raise cross_check_error(
                "ProbeSpec",
                [
                    (
                        ("model_load_budget_seconds",),
                        "is shorter than one startup probe period",
                        self.model_load_budget_seconds,
                    )
                ],
            )
        return self
