"""``kvstack:resources``: CPU and memory of the vLLM container (GPUs come from kvstack:gpu)."""

from __future__ import annotations

from pydantic import Field, model_validator

from kvstack.infra.config.errors import cross_check_error
from kvstack.infra.config.types import Quantity, Strict, quantity_value


class ResourcesSpec(Strict):
    """CPU and memory of the vLLM container (GPUs come from kvstack:gpu)."""

    cpu_request: Quantity = "4"
    cpu_limit: Quantity | None = None
    memory_request: Quantity = "32Gi"
    memory_limit: Quantity | None = "64Gi"
    shm_size: Quantity = Field(default="8Gi", description="size of the /dev/shm memory emptyDir")
    ephemeral_storage_request: Quantity | None = None

    @model_validator(mode="after")
    def _limits_not_below_requests(self) -> ResourcesSpec:
        problems: list[tuple[tuple[str | int, ...], str, object]] = []
        for what in ("cpu", "memory"):
            request, limit = getattr(self, f"{what}_request"), getattr(self, f"{what}_limit")
            if limit is not None and quantity_value(limit) < quantity_value(request):
                problems.append(
                    (
                        (f"{what}_limit",),
                        f"{limit} is below {what}_request ({request}); the API server refuses a limit "
                        "under its request: raise the limit or lower the request",
                        limit,
                    )
                )
        if problems:
            raise cross_check_error("ResourcesSpec", problems)
        return self
