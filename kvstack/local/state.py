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


class StackState(BaseModel):
    """What `kvstack local up` started; also what the test fixtures hand to tests."""

    model_config = ConfigDict(extra="forbid")

    state_dir: Path
    vllm: ProcessRecord
    prometheus: ProcessRecord | None = None
    served_model_name: str
    max_model_len: int
    model_dir: Path
    kv_cache_space_gib: int
    block_size: int
    enable_prefix_caching: bool

    @property
    def vllm_url(self) -> str:
        return self.vllm.url

    @property
    def prometheus_url(self) -> str | None:
        return self.prometheus.url if self.prometheus else None

    def processes(self) -> list[ProcessRecord]:
        return [p for p in (self.prometheus, self.vllm) if p is not None]


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
    return StackState.model_validate(json.loads(path.read_text()))


def forget(state_dir: Path) -> None:
    (state_dir / STATE_FILE).unlink(missing_ok=True)
