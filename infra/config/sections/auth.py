"""``kvstack:auth``: opting out of the API key that a multi-replica stack needs."""

from __future__ import annotations

from pydantic import Field

from kvstack.infra.config.types import Strict


class AuthSpec(Strict):
    """Whether the API may run without ``kvstack:api_key``."""

    allow_unauthenticated: bool = Field(
        default=False,
        description="serve /v1 without an API key although the stack may run more than one replica "
        "(a stack with one replica at most needs no opt-out)",
    )
