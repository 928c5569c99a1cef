"""The planner against the local live vLLM server (``local_stack`` fixture, tests/conftest.py)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kvstack.infra.capacity import PlanInputs, estimate, load_shape


@pytest.mark.live
def test_planner_matches_the_live_server_within_3_percent(local_stack: Any) -> None:
    response = httpx.get(f"{local_stack.vllm_url}/metrics", timeout=30.0)
    response.raise_for_status()
    (labels,) = [
        dict(sample.labels)
        for family in text_string_to_metric_families(response.text)
        if family.name == "vllm:cache_config_info"
        for sample in family.samples
    ]
    block_size = int(labels["block_size"])
    reported_tokens = int(labels["num_gpu_blocks"]) * block_size

    est = estimate(
        PlanInputs(
            shape=load_shape(str(local_stack.model_dir / "config.json")),
            max_model_len=local_stack.max_model_len,
            kv_cache_memory_gib=float(local_stack.kv_cache_space_gib),  # VLLM_CPU_KVCACHE_SPACE
            block_size=block_size,
        )
    )
    assert est.kv_tokens == pytest.approx(reported_tokens, rel=0.03)
    assert est.max_concurrency == pytest.approx(reported_tokens / local_stack.max_model_len, rel=0.03)
