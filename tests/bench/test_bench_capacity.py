"""bench.capacity: real vLLM expositions -> KvCapacity, and the capacity verdict."""

from __future__ import annotations

import pytest

from kvstack.bench.capacity import CapacityParseError, parse_kv_capacity
from kvstack.bench.checks.kv_capacity import judge_capacity
from kvstack.bench.config import ExpectedCapacity, Thresholds
from kvstack.bench.report import Verdict
from tests.bench.bench_helpers import CPU_METRICS, H100_METRICS

CPU = CPU_METRICS.read_text()
H100 = H100_METRICS.read_text()


def test_cpu_exposition_served_at_2048() -> None:
    cap = parse_kv_capacity(CPU, max_model_len=2048)
    assert cap.block_size == 128
    assert cap.num_blocks == 728
    assert cap.kv_tokens == 93_184 == 728 * 128
    # recomputed at the served length, not the engine's (the label says 91.0, measured at 1024)
    assert cap.max_concurrency == pytest.approx(45.5)
    assert cap.server_max_concurrency == pytest.approx(91.0)
    assert cap.prefix_caching_enabled is True
    assert cap.kv_cache_memory_bytes == 2 * 1024**3
    assert cap.engines == 1


def test_h100_exposition() -> None:
    cap = parse_kv_capacity(H100, max_model_len=8192)
    assert (cap.block_size, cap.num_blocks, cap.kv_tokens) == (16, 28_992, 463_872)
    assert cap.max_concurrency == pytest.approx(56.625)
    assert cap.kv_cache_memory_bytes is None  # the label says "None" on 0.26.0


def test_without_max_model_len_the_server_figure_is_used() -> None:
    cap = parse_kv_capacity(H100)
    assert cap.max_model_len is None
    assert cap.max_concurrency == pytest.approx(56.625)


def _two_engines(text: str) -> str:
    line = next(ln for ln in text.splitlines() if ln.startswith("vllm:cache_config_info{"))
    return text + "\n" + line.replace('engine="0"', 'engine="1"') + "\n"


def test_engines_add_up() -> None:
    cap = parse_kv_capacity(_two_engines(CPU), max_model_len=2048)
    assert cap.engines == 2
    assert cap.kv_tokens == 2 * 93_184
    assert cap.max_concurrency == pytest.approx(91.0)


def test_model_filter() -> None:
    with pytest.raises(CapacityParseError, match="no vllm:cache_config_info"):
        parse_kv_capacity(
            CPU.replace('engine="0",gpu', 'engine="0",model_name="other",gpu'), model_name="smol"
        )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("# nothing here\nup 1\n", "no vllm:cache_config_info"),
        ('vllm:cache_config_info{block_size="x",num_gpu_blocks="7"} 1\n', "block_size"),
        ('vllm:cache_config_info{block_size="16",num_gpu_blocks="None"} 1\n', "neither num_gpu_blocks"),
        ("<html>502 Bad Gateway</html>", "not a Prometheus text exposition|no vllm:cache_config_info"),
    ],
)
def test_unusable_expositions(text: str, message: str) -> None:
    with pytest.raises(CapacityParseError, match=message):
        parse_kv_capacity(text, max_model_len=2048)


def test_judge_defaults_pass_and_fail() -> None:
    cap = parse_kv_capacity(CPU, max_model_len=2048)
    verdict, reason, _ = judge_capacity(cap, Thresholds(), None)
    assert verdict is Verdict.PASS, reason
    verdict, reason, _ = judge_capacity(cap, Thresholds(min_block_size=256), None)
    assert verdict is Verdict.FAIL
    assert "block size 128 < 256" in reason
    verdict, reason, _ = judge_capacity(cap, Thresholds(min_max_concurrency=64), None)
    assert verdict is Verdict.FAIL
    assert "max concurrency 45.5 < 64" in reason


def test_judge_against_expected_capacity() -> None:
    cap = parse_kv_capacity(H100, max_model_len=8192)
    ok = ExpectedCapacity(block_size=16, kv_tokens=463_872, max_concurrency=56.6, tolerance=0.05)
    verdict, reason, lines = judge_capacity(cap, Thresholds(), ok)
    assert verdict is Verdict.PASS, reason
    assert any(line.startswith("kv_tokens: 463872") for line in lines)
    short = ExpectedCapacity(kv_tokens=600_000, tolerance=0.05)
    verdict, reason, _ = judge_capacity(cap, Thresholds(), short)
    assert verdict is Verdict.FAIL
    assert "kv_tokens" in reason
    wrong_block = ExpectedCapacity(block_size=32)
    verdict, reason, _ = judge_capacity(cap, Thresholds(), wrong_block)
    assert verdict is Verdict.FAIL
    assert "must match" in reason
