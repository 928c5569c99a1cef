"""``kvstack:capacity``: the KV-capacity planner's floor and overrides, and the goodput floor."""

from __future__ import annotations

from pydantic import Field

from kvstack.infra.config.types import Strict


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
    min_goodput_concurrency: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="the concurrency at which the deployment must still meet its SLOs (kvstack verify's "
        "goodput check, from the stack output slo)",
    )
