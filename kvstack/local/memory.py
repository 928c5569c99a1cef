"""The memory check before a fleet starts: N replicas must fit in the memory the machine has free."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kvstack.local.settings import REPLICA_BASE_RSS_BYTES

GIB = 1024**3


@dataclass(frozen=True)
class MemoryPlan:
    replicas: int
    per_replica_bytes: int
    available_bytes: int

    @property
    def needed_bytes(self) -> int:
        return self.replicas * self.per_replica_bytes

    @property
    def fits(self) -> bool:
        return self.needed_bytes <= self.available_bytes

    def describe(self) -> str:
        return (
            f"{self.replicas} vLLM replica(s) need about {self.needed_bytes / GIB:.1f} GiB "
            f"({self.per_replica_bytes / GIB:.1f} GiB each: {REPLICA_BASE_RSS_BYTES / GIB:.1f} GiB measured "
            f"per replica plus its KV space), and {self.available_bytes / GIB:.1f} GiB is available "
            "(MemAvailable in /proc/meminfo)"
        )


def plan(replicas: int, kv_cache_space_gib: int, available_bytes: int) -> MemoryPlan:
    """Pure: what N replicas with this KV space need against what is available."""
    return MemoryPlan(replicas, REPLICA_BASE_RSS_BYTES + kv_cache_space_gib * GIB, available_bytes)


def parse_mem_available(meminfo: str) -> int:
    """Bytes of MemAvailable from the text of /proc/meminfo."""
    for line in meminfo.splitlines():
        if line.startswith("MemAvailable:"):
            value, unit = line.split()[1:3]
            if unit != "kB":
                raise ValueError(f"unexpected unit in /proc/meminfo: {line!r}")
            return int(value) * 1024
    raise ValueError("/proc/meminfo has no MemAvailable line")


def available_bytes(meminfo: Path = Path("/proc/meminfo")) -> int:
    return parse_mem_available(meminfo.read_text())
