"""PagedAttention capacity read from a vLLM ``/metrics`` exposition: pure, no network.

vLLM publishes its KV-cache configuration as the labels of an info gauge (value 1; its name is
``kvstack.contract.metrics.CACHE_CONFIG_INFO``).
The labels that matter here are ``block_size``, ``num_gpu_blocks`` (also used by the CPU build),
``kv_cache_size_tokens`` and ``kv_cache_max_concurrency``. KV tokens = blocks x block size; the number of
requests of the full context length that fit at once = KV tokens / ``max_model_len``. The server's own
``kv_cache_max_concurrency`` is computed against the engine's ``max_model_len``; this module recomputes it
against the length the server actually serves (from ``/v1/models``) and keeps the server's figure beside it.

A server with several engines (data parallel) publishes one series per ``engine`` label; each engine has
its own KV cache, so tokens and concurrency add up while the block size must be the same.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, ConfigDict

from kvstack.contract.metrics import CACHE_CONFIG_INFO

CACHE_CONFIG_FAMILY = CACHE_CONFIG_INFO


class CapacityParseError(ValueError):
    """The exposition has no usable cache-config info series."""


class KvCapacity(BaseModel):
    """The KV cache a vLLM server allocated, as numbers.

    ``max_concurrency`` is KV tokens / ``max_model_len`` when the served length is known, else the
    server's own ``kv_cache_max_concurrency`` figure (``server_max_concurrency``).
    """

    block_size: int
    num_blocks: int
    kv_tokens: int
    max_model_len: int | None
    max_concurrency: float | None
    server_max_concurrency: float | None
    engines: int
    prefix_caching_enabled: bool | None
    kv_cache_memory_bytes: int | None
    cache_dtype: str | None

    model_config = ConfigDict(frozen=True)


def _int_label(labels: dict[str, str], name: str) -> int | None:
    raw = labels.get(name)
    if raw is None or raw in ("None", ""):
        return None
    try:
        return int(float(raw))
    except ValueError:
        return None


def _float_label(labels: dict[str, str], name: str) -> float | None:
    raw = labels.get(name)
    if raw is None or raw in ("None", ""):
        return None
    try:
        return float(raw)
    except ValueError:
        return None


def _bool_label(labels: dict[str, str], name: str) -> bool | None:
    raw = labels.get(name)
    if raw is None:
        return None
    if raw.lower() == "true":
        return True
    if raw.lower() == "false":
        return False
    return None


def cache_config_labels(text: str, model_name: str | None = None) -> list[dict[str, str]]:
    """The label sets of every cache-config info sample (one per engine), optionally for one model.

    Raises ``CapacityParseError`` when the text is not a Prometheus exposition.
    """
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as exc:  # the parser raises ValueError, TypeError or IndexError on junk
        raise CapacityParseError(f"not a Prometheus text exposition: {exc}") from exc
    found: list[dict[str, str]] = []
    for family in families:
        if family.name != CACHE_CONFIG_FAMILY:
            continue
        for sample in family.samples:
            labels = dict(sample.labels)
            if model_name is not None and labels.get("model_name", model_name) != model_name:
                continue
            found.append(labels)
    return found


def kv_capacity_from_labels(labels_per_engine: list[dict[str, str]], max_model_len: int | None) -> KvCapacity:
    """Combine the per-engine label sets into one ``KvCapacity``."""
    if not labels_per_engine:
        raise CapacityParseError(f"no {CACHE_CONFIG_FAMILY} series in the exposition")
    block_sizes: set[int] = set()
    blocks = 0
    tokens = 0
    server_conc: float | None = 0.0
    memory: int | None = 0
    for labels in labels_per_engine:
        block_size = _int_label(labels, "block_size")
        num_blocks = _int_label(labels, "num_gpu_blocks")
        kv_tokens = _int_label(labels, "kv_cache_size_tokens")
        if block_size is None or block_size <= 0:
            raise CapacityParseError(f"{CACHE_CONFIG_FAMILY} has no usable block_size label")
        if num_blocks is None and kv_tokens is not None:
            num_blocks = kv_tokens // block_size
        if num_blocks is None:
            raise CapacityParseError(
                f"{CACHE_CONFIG_FAMILY} has neither num_gpu_blocks nor kv_cache_size_tokens "
                "(the engine may not have finished allocating its KV cache)"
            )
        if kv_tokens is None:
            kv_tokens = num_blocks * block_size
        block_sizes.add(block_size)
        blocks += num_blocks
        tokens += kv_tokens
        conc = _float_label(labels, "kv_cache_max_concurrency")
        server_conc = None if server_conc is None or conc is None else server_conc + conc
        mem = _int_label(labels, "kv_cache_memory_bytes")
        memory = None if memory is None or mem is None else memory + mem
    if len(block_sizes) != 1:
        raise CapacityParseError(f"engines disagree on block_size: {sorted(block_sizes)}")
    first = labels_per_engine[0]
    max_concurrency = tokens / max_model_len if max_model_len else server_conc
    return KvCapacity(
        block_size=block_sizes.pop(),
        num_blocks=blocks,
        kv_tokens=tokens,
        max_model_len=max_model_len,
        max_concurrency=max_concurrency,
        server_max_concurrency=server_conc,
        engines=len(labels_per_engine),
        prefix_caching_enabled=_bool_label(first, "enable_prefix_caching"),
        kv_cache_memory_bytes=memory,
        cache_dtype=first.get("cache_dtype"),
    )


def parse_kv_capacity(
    text: str, max_model_len: int | None = None, model_name: str | None = None
) -> KvCapacity:
    """Parse a ``/metrics`` exposition into a ``KvCapacity``.

    ``max_model_len`` is the served context length (``/v1/models`` -> ``max_model_len``); without it
    ``max_concurrency`` falls back to the server's own figure. Raises ``CapacityParseError``.
    """
    return kv_capacity_from_labels(cache_config_labels(text, model_name), max_model_len)
