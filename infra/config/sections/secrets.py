"""``kvstack:hf_token`` and ``kvstack:api_key``: a Pulumi secret, or a Secret that already exists."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag

from kvstack.infra.config.types import K8sName, Strict

SECRET_KEYS = ("hf_token", "api_key")
"""Top-level keys whose value is a Pulumi secret (or a reference to an existing Kubernetes Secret)."""


class ExistingSecret(Strict):
    """A Kubernetes Secret that already exists in the namespace (created outside this stack)."""

    existing_secret: K8sName = Field(description="name of the Secret")
    key: str = Field(min_length=1, description="key inside the Secret")


class StackSecret(Strict):
    """The value is a Pulumi secret in the stack file; the program creates a Secret holding it.

    Produced by the loader from a ``secure:`` value; never written by hand.
    """

    stack_secret: Literal[True] = True


def _secret_kind(value: Any) -> str:
    if isinstance(value, StackSecret) or (isinstance(value, dict) and "stack_secret" in value):
        return "StackSecret"
    return "ExistingSecret"


# One branch per value shape, so that an error is reported against that branch only.
SecretSource = Annotated[
    Annotated[ExistingSecret, Tag("ExistingSecret")] | Annotated[StackSecret, Tag("StackSecret")],
    Discriminator(_secret_kind),
]
