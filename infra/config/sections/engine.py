"""``kvstack:engine``: vLLM engine knobs; each one is a KV-cache knob in disguise."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator

from kvstack.contract.scale_out import SCALE_OUT_FLAGS
from kvstack.infra.config.types import Strict

# vLLM flags that the stack config owns; extra_args may not repeat them (in any spelling vLLM accepts).
MANAGED_FLAGS = frozenset(
    {
        "--model",
        "--served-model-name",
        "--revision",
        "--host",
        "--port",
        "--max-model-len",
        "--gpu-memory-utilization",
        "--max-num-seqs",
        "--max-num-batched-tokens",
        "--tensor-parallel-size",
        "-tp",
        "--dtype",
        "--kv-cache-dtype",
        "--enable-prefix-caching",
        "--no-enable-prefix-caching",
        "--block-size",
        "--kv-cache-memory-bytes",
        "--api-key",
        "--trust-remote-code",
        "--download-dir",
        "--shutdown-timeout",
    }
    | SCALE_OUT_FLAGS  # from kvstack:router.engine_scale_out (what the router's policy needs)
)
# Environment variables that the manifests set themselves.
MANAGED_ENV = frozenset(
    {"HF_TOKEN", "VLLM_API_KEY", "HF_HOME", "HOME", "VLLM_PORT", "VLLM_HOST_IP"}
    | {"USER", "LOGNAME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "VLLM_CACHE_ROOT", "TORCHINDUCTOR_CACHE_DIR"}
    | {"TRITON_CACHE_DIR"}
)


def flag_name(arg: str) -> str | None:
    """The flag an ``extra_args`` element sets, as vLLM reads it: ``--max_model_len=8`` and
    ``"--max-model-len 8"`` both give ``--max-model-len`` (vLLM turns underscores into dashes)."""
    word = arg.strip().split(None, 1)[0] if arg.strip() else ""
    if not word.startswith("-"):
        return None
    name = word.split("=", 1)[0]
    return name[:2] + name[2:].replace("_", "-") if name.startswith("--") else name


class EngineSpec(Strict):
    """vLLM engine knobs; each one is a KV-cache knob in disguise."""

    max_model_len: int = Field(
        ge=16, le=10_000_000, description="longest request (prompt + output) in tokens"
    )
    gpu_memory_utilization: float = Field(
        default=0.9, gt=0, le=0.98, description="share of each GPU's memory vLLM may use"
    )
    max_num_seqs: int = Field(default=256, ge=1, le=65_536, description="most requests decoded at once")
    max_num_batched_tokens: int | None = Field(
        default=None,
        ge=16,
        le=10_000_000,
        description="tokens per scheduler step (prefill chunk); unset: vLLM's choice",
    )
    tensor_parallel_size: int = Field(
        default=1, ge=1, le=16, description="GPUs one replica shards the model over (= gpu.count)"
    )
    dtype: Literal["auto", "bfloat16", "float16", "half", "float32"] = Field(
        default="auto", description="weights and activations dtype"
    )
    kv_cache_dtype: Literal["auto", "bfloat16", "fp8", "fp8_e4m3", "fp8_e5m2"] = Field(
        default="auto", description="KV-cache dtype (fp8 halves KV bytes)"
    )
    enable_prefix_caching: bool = True
    block_size: Literal[8, 16, 32, 64, 128] | None = Field(
        default=None, description="tokens per KV block; unset: vLLM's default (16 on GPU)"
    )
    kv_cache_memory_gib: float | None = Field(
        default=None, gt=0, le=4096, description="fixed KV memory per GPU (--kv-cache-memory-bytes)"
    )
    port: int = Field(default=8000, ge=1024, le=65535)
    extra_args: list[str] = Field(default_factory=list)
    env: dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], str] = Field(
        default_factory=dict
    )

    @field_validator("extra_args")
    @classmethod
    def _not_managed(cls, value: list[str]) -> list[str]:
        for arg in value:
            flag = flag_name(arg)
            if flag in SCALE_OUT_FLAGS:
                raise ValueError(
                    f"{flag} ({arg!r}) is set from kvstack:router.engine_scale_out, which checks it against "
                    "the image's vLLM release and the router policy; remove it from extra_args and set "
                    "that field instead"
                )
            if flag in MANAGED_FLAGS:
                raise ValueError(
                    f"{flag} ({arg!r}) is set from the typed config (kvstack:engine / kvstack:model); "
                    "remove it from extra_args and set the field instead"
                )
            if arg.strip() != arg or (arg.startswith("-") and " " in arg.split("=", 1)[0]):
                raise ValueError(
                    f"{arg!r} holds a flag and its value in one element, which vLLM would read as one "
                    "unknown flag; write them as two list elements (or --flag=value)"
                )
        return value

    @field_validator("env")
    @classmethod
    def _env_not_managed(cls, value: dict[str, str]) -> dict[str, str]:
        clash = sorted(set(value) & MANAGED_ENV)
        if clash:
            raise ValueError(f"{', '.join(clash)} set by the stack itself; remove from engine.env")
        return value
