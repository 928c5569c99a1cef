"""``kvstack:image``: the vLLM container image, pinned."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from kvstack.infra.config.errors import cross_check_error
from kvstack.infra.config.types import K8sName, Strict


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

    @model_validator(mode="after")
    def _tag_or_digest(self) -> ImageSpec:
        if not self.tag and not self.digest:
            raise cross_check_error(
                "ImageSpec", [(("tag",), "set a pinned image.tag (e.g. v0.26.0) or an image.digest", None)]
            )
        return self

    @property
    def reference(self) -> str:
        ref = self.repository
        if self.tag:
            ref += f":{self.tag}"
        if self.digest:
            ref += f"@{self.digest}"
        return ref
