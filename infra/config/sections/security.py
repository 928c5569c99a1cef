"""``kvstack:security``: the pod and container security context."""

from __future__ import annotations

from pydantic import Field

from kvstack.infra.config.types import K8sName, Strict


class SecuritySpec(Strict):
    """The pod and container security context."""

    run_as_user: int = Field(default=1000, ge=1)
    run_as_group: int = Field(default=1000, ge=1)
    fs_group: int = Field(default=1000, ge=1)
    read_only_root_filesystem: bool = True
    service_account_name: K8sName | None = None
    automount_service_account_token: bool = False
