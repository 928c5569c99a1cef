"""The state file of a running local stack: what was started, where, and how to find it again.

``down`` stops exactly the processes recorded here (checked by pid *and* start time, so a recycled pid
is never signalled), never anything found by name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

STATE_FILE = "state.json"


class ProcessRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    pid: int
    start_ticks: int  # /proc/PID/stat field 22: tells a recycled pid from ours
    port: int
    url: str
    log: Path
    argv: list[str]
    # the CPUs a vLLM replica runs on ("0" or "2,3": its processes' affinity and its
    # VLLM_CPU_OMP_THREADS_BIND), so that a rollout restarts it on the same ones; None: every CPU
    cpus: str | None = None


class StackState(BaseModel):
    """What `kvstack local up` started; also what the test fixtures hand to tests.

    ``engines`` are the vLLM replicas (one unless a fleet was asked for); ``router`` is the vllm-router
    in front of them, if any (its ``url`` serves the API, ``metrics_url`` its Prometheus metrics).
    """

    model_config = ConfigDict(extra="forbid")

    state_dir: Path
    engines: list[ProcessRecord]
    router: ProcessRecord | None = None
    router_policy: str | None = None
    router_metrics_url: str | None = None
    prometheus: ProcessRecord | None = None
    served_model_name: str
    max_model_len: int
    model_dir: Path
    kv_cache_space_gib: int
    block_size: int
    enable_prefix_caching: bool

    shutdown_timeout_s: int = 0

    @property
    def vllm(self) -> ProcessRecord:
        """The first (in a single-replica stack: the only) vLLM engine."""
        return self.engines[0]

    @property
    def vllm_url(self) -> str:
        """The first engine's own URL (its /metrics, /version); clients should use ``endpoint``."""
        return self.engines[0].url

    @property
    def endpoint(self) -> str:
        """Where clients send requests: the router when there is one, else the single engine."""
        return self.router.url if self.router is not None else self.vllm_url

    @property
    def engine_urls(self) -> list[str]:
        return [e.url for e in self.engines]

    @property
    def engine_metrics_urls(self) -> list[str]:
        return [f"{e.url}/metrics" for e in self.engines]

    @property
    def prometheus_url(self) -> str | None:
        return self.prometheus.url if self.prometheus else None

    def processes(self) -> list[ProcessRecord]:
        """Everything started, in the order `down` stops it: clients' side first, engines last."""
        front = [p for p in (self.prometheus, self.router) if p is not None]
        return [*front, *self.engines]

    def summary(self) -> dict[str, object]:
        """The URLs a later step needs (verify through the router, per-engine metrics, Prometheus)."""
        return {
            "endpoint": self.endpoint,
            "router": None
            if self.router is None
            else {
                "url": self.router.url,
                "metrics_url": self.router_metrics_url,
                "policy": self.router_policy,
            },
            "engines": [
                {"name": e.name, "url": e.url, "metrics_url": f"{e.url}/metrics", "pid": e.pid}
                for e in self.engines
            ],
            "engine_metrics_urls": self.engine_metrics_urls,
            "prometheus_url": self.prometheus_url,
            "served_model_name": self.served_model_name,
            "max_model_len": self.max_model_len,
            "block_size": self.block_size,
            "enable_prefix_caching": self.enable_prefix_caching,
            "shutdown_timeout_s": self.shutdown_timeout_s,
            "state_dir": str(self.state_dir),
        }


def process_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may contain spaces and parentheses: split after the last ')'
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19])  # field 22 overall


def is_alive(record: ProcessRecord) -> bool:
    """True only if this pid still runs and is the very process we started."""
    ticks = process_start_ticks(record.pid)
    if ticks is None or ticks != record.start_ticks:
        return False
    try:
        state = Path(f"/proc/{record.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def save(state: StackState) -> Path:
    state.state_dir.mkdir(parents=True, exist_ok=True)
    path = state.state_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(state.model_dump_json(indent=2) + "\n")
    os.replace(tmp, path)
    return path


def load(state_dir: Path) -> StackState | None:
    path = state_dir / STATE_FILE
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    if isinstance(data, dict) and "vllm" in data and "engines" not in data:
        # written before fleets existed: one engine under "vllm"
        data["engines"] = [data.pop("vllm")]
    return StackState.model_validate(data)


def forget(state_dir: Path) -> None:
    (state_dir / STATE_FILE).unlink(missing_ok=True)
