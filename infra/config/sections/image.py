"""``kvstack:image``: the vLLM container image, pinned."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from kvstack.infra.config.errors import cross_check_error
from kvstack.infra.config.types import K8sName, Strict

TAG_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
DIGEST_PATTERN = r"^sha256:[a-f0-9]{64}$"
MOVING_TAGS = frozenset({"latest", "nightly", "main", "stable"})


class PinnedImage(Strict):
    """A container image pinned by a release tag or a digest: the engine's and the router's.

    Subclasses say where they sit in the stack file (``where``) and what a pinned tag looks like
    (``example_tag``), for the messages."""

    where: ClassVar[str] = "image"
    example_tag: ClassVar[str] = "v0.26.0"

    repository: str = Field(min_length=1)
    tag: str | None = Field(default=None, pattern=TAG_PATTERN)
    digest: str | None = Field(default=None, pattern=DIGEST_PATTERN)
    pull_policy: Literal["IfNotPresent", "Always", "Never"] = "IfNotPresent"
    pull_secrets: list[K8sName] = Field(default_factory=list)

    @field_validator("repository")
    @classmethod
    def _no_tag_in_repository(cls, value: str) -> str:
        if ":" in value.rsplit("/", 1)[-1] or "@" in value:
            raise ValueError(
                f"put the tag in {cls.where}.tag and the digest in {cls.where}.digest, not in the repository"
            )
        return value

    @field_validator("tag")
    @classmethod
    def _pinned(cls, value: str | None) -> str | None:
        if value is not None and value.lower() in MOVING_TAGS:
            raise ValueError(
                f"tag {value!r} moves; pin a release tag (e.g. {cls.example_tag}) or set {cls.where}.digest"
            )
        return value

    @property
    def reference(self) -> str:
        ref = self.repository
        if self.tag:
            ref += f":{self.tag}"
        if self.digest:
            ref += f"@{self.digest}"
        return ref


class ImageSpec(PinnedImage):
    """The vLLM container image, pinned."""

    repository: str = Field(default="vllm/vllm-openai", min_length=1)
    tag: str | None = Field(default="v0.26.0", pattern=TAG_PATTERN)

    @model_validator(mode="after")
    def _tag_or_digest(self) -> ImageSpec:
        if not self.tag and not self.digest:
            raise cross_check_error(
                "ImageSpec",
                [
                    (
                        ("tag",),
                        f"set a pinned {self.where}.tag (e.g. {self.example_tag}) or an {self.where}.digest",
                        None,
                    )
                ],
            )
        return self
