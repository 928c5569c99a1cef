"""One line of KV capacity for `kvstack local status`, read from the live server's /metrics."""

from __future__ import annotations

import httpx

from kvstack.bench.capacity import parse_kv_capacity
from kvstack.contract.metrics import CACHE_CONFIG_INFO


def read_capacity(vllm_url: str, max_model_len: int) -> str:
    try:
        text = httpx.get(f"{vllm_url}/metrics", timeout=5.0).text
        cap = parse_kv_capacity(text, max_model_len)
    except (httpx.HTTPError, ValueError) as exc:
        return f"KV capacity: unavailable ({exc})"
    concurrency = f"{cap.max_concurrency:.1f}" if cap.max_concurrency is not None else "?"
    return (
        f"KV capacity ({CACHE_CONFIG_INFO}): block size {cap.block_size}, {cap.num_blocks} blocks, "
        f"{cap.kv_tokens} KV tokens, max concurrency {concurrency} at max_model_len {max_model_len}"
    )
