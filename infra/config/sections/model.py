"""``kvstack:model``: which model vLLM serves and under what name."""

from __future__ import annotations

from pydantic import Field

from kvstack.infra.config.types import Strict


class ModelSpec(Strict):
    """Which model vLLM serves and under what name."""

    id: str = Field(
        min_length=1,
        description="Hugging Face repo id (org/name) or a path inside the container (e.g. /models/llama)",
    )
    served_name: str | None = Field(
        default=None, min_length=1, description="name clients pass as 'model'; default: the id"
    )
    revision: str | None = Field(default=None, min_length=1, description="HF revision: branch, tag or commit")
    shape: str | None = Field(
        default=None,
        min_length=1,
        description="for the KV planner: a built-in shape name or a path to the model's config.json; "
        "default: the built-in shape whose alias matches the id",
    )
    trust_remote_code: bool = False

    @property
    def served_model_name(self) -> str:
        return self.served_name or self.id
