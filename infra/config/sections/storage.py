"""``kvstack:storage``: where model weights are cached (HF_HOME)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from kvstack.infra.config.errors import cross_check_error
from kvstack.infra.config.types import K8sName, Quantity, Strict, SubdomainName

# Paths the pod already uses: the manifests mount /dev/shm and /tmp (HOME) themselves, and the image
# needs its system folders. The model volume may be mounted neither over them nor above them.
RESERVED_MOUNTS = ("/dev/shm", "/tmp")
SYSTEM_PATHS = (
    "/",
    "/bin",
    "/dev",
    "/etc",
    "/lib",
    "/lib64",
    "/proc",
    "/root",
    "/sbin",
    "/sys",
    "/usr",
    "/var",
)


def overlaps(a: str, b: str) -> bool:
    """True when one path is the other or lies inside it."""
    a, b = a.rstrip("/") or "/", b.rstrip("/") or "/"
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


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

    @field_validator("mount_path")
    @classmethod
    def _free_path(cls, value: str) -> str:
        for used in RESERVED_MOUNTS:
            if overlaps(value, used):
                raise ValueError(
                    f"{value} overlaps {used}, which the pod already mounts; pick a folder of its own "
                    "such as /models"
                )
        for system in SYSTEM_PATHS:
            if (value.rstrip("/") or "/") == system:
                raise ValueError(
                    f"{value} would hide the image's own {system}; pick a folder such as /models"
                )
        return value

    @model_validator(mode="after")
    def _claim(self) -> StorageSpec:
        if self.mode == "existing_claim" and self.claim_name is None:
            raise cross_check_error(
                "StorageSpec", [(("claim_name",), "required when storage.mode is existing_claim", None)]
            )
        if self.mode != "existing_claim" and self.claim_name is not None:
            raise cross_check_error(
                "StorageSpec",
                [(("claim_name",), "only used when storage.mode is existing_claim", self.claim_name)],
            )
        return self
