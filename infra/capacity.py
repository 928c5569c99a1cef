"""KV-capacity planner: model shape + engine knobs -> KV tokens, blocks and max concurrency. Pure.

How vLLM sizes the KV cache (V1 engine, ``gpu_worker.determine_available_memory``)::

    kv_memory = total_gpu_memory x gpu_memory_utilization - non_kv_memory
    non_kv_memory = weights + torch peak increase of the profiling forward pass + non-torch increase
    blocks = floor(kv_memory / (block_size x kv_bytes_per_token))      tokens = blocks x block_size

``total_gpu_memory`` is what CUDA reports (``torch.cuda.mem_get_info``), a little less than nvidia-smi's
figure (H100 80GB HBM3: 79.18 GiB vs 81559 MiB). The planner models each non-KV term:

* weights: parameters counted from ``config.json`` (embeddings, attention, MLP, norms, the LM head unless
  tied) x dtype bytes / tensor_parallel, plus the rotary cos/sin cache (max positions x head_dim).
* activation peak (torch): the profiling pass runs ``max_num_batched_tokens`` tokens at once; the MLP holds
  about ``3 x hidden + 3 x intermediate / tp`` values per token (residual, normed input, gate/up and
  activation outputs), plus a fixed 0.08 GiB.
* non-torch increase (cuBLAS workspaces, NCCL, allocator slack): a fixed 0.22 GiB.

These constants come from three vLLM 0.26.0 start-ups on an H100 80GB (llama8b at 8192 and 2048 batched
tokens, llama1b at utilization 0.5); the planner reproduces each run's block count within 0.1%
(``tests/infra/data/h100-vllm-0.26.0-memory-profile.txt``). CUDA-graph memory is not subtracted by vLLM
0.26 before sizing the KV cache, so it is not modelled. When the KV memory is set explicitly (vLLM's
``--kv-cache-memory-bytes``, or ``VLLM_CPU_KVCACHE_SPACE`` on CPU builds) the memory model is skipped.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

GIB = 1024**3

# Calibrated on vLLM 0.26.0 / H100 (see module docstring): GiB per GPU.
ACTIVATION_FIXED_GIB = 0.08
NON_TORCH_GIB = 0.22
# vLLM's OpenAI server defaults when the stack leaves them unset (logged "Defaulting max_num_batched_tokens
# to 8192 for OPENAI_API_SERVER usage context" on an H100; smaller GPUs get 2048, so 8192 is the
# conservative assumption: more activation memory, fewer KV blocks).
DEFAULT_MAX_NUM_BATCHED_TOKENS = 8192
DEFAULT_BLOCK_SIZE = 16

DTYPE_BYTES: dict[str, int] = {
    "float32": 4,
    "float": 4,
    "bfloat16": 2,
    "float16": 2,
    "half": 2,
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
}

# config.json shapes shipped as package data, located from this file
BUILTIN_DIR = Path(__file__).with_name("models")


class ShapeError(ValueError):
    """A model shape could not be found or read."""


class ModelShape(BaseModel):
    """The parts of a Hugging Face ``config.json`` that size weights and the KV cache."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = "model"
    num_hidden_layers: int = Field(ge=1)
    num_attention_heads: int = Field(ge=1)
    num_key_value_heads: int = Field(ge=1)
    hidden_size: int = Field(ge=1)
    intermediate_size: int = Field(ge=1)
    vocab_size: int = Field(ge=1)
    head_dim: int = Field(ge=1)
    max_position_embeddings: int = Field(default=8192, ge=1)
    tie_word_embeddings: bool = False
    torch_dtype: str = "bfloat16"

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        # multimodal configs nest the language model
        if "num_hidden_layers" not in data and isinstance(data.get("text_config"), dict):
            data = {**data["text_config"], "name": data.get("name", "model")}
        if data.get("num_key_value_heads") is None and "num_attention_heads" in data:
            data["num_key_value_heads"] = data["num_attention_heads"]
        if data.get("head_dim") is None and "hidden_size" in data and "num_attention_heads" in data:
            data["head_dim"] = int(data["hidden_size"]) // int(data["num_attention_heads"])
        if data.get("torch_dtype") is None and isinstance(data.get("dtype"), str):
            data["torch_dtype"] = data["dtype"]
        return data

    def param_count(self) -> int:
        """Parameters of a Llama-style decoder (what vLLM loads for LlamaForCausalLM and its kin)."""
        h, i = self.hidden_size, self.intermediate_size
        q = h * self.num_attention_heads * self.head_dim
        kv = 2 * h * self.num_key_value_heads * self.head_dim
        o = self.num_attention_heads * self.head_dim * h
        mlp = 3 * h * i
        norms = 2 * h
        per_layer = q + kv + o + mlp + norms
        embeddings = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        return self.num_hidden_layers * per_layer + embeddings + h


def builtin_shapes() -> list[str]:
    """Names of the model shapes shipped with kvstack (``infra/models/*.json``)."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.json"))


# Hugging Face ids whose shape is shipped (so model.shape can be left out for them).
SHAPE_ALIASES: dict[str, str] = {
    "meta-llama/llama-3.1-8b": "llama-3.1-8b",
    "meta-llama/llama-3.1-8b-instruct": "llama-3.1-8b",
    "meta-llama/meta-llama-3.1-8b-instruct": "llama-3.1-8b",
    "meta-llama/llama-3.2-1b": "llama-3.2-1b",
    "meta-llama/llama-3.2-1b-instruct": "llama-3.2-1b",
    "huggingfacetb/smollm2-135m": "smollm2-135m",
    "huggingfacetb/smollm2-135m-instruct": "smollm2-135m",
}


def shape_for_model_id(model_id: str) -> str | None:
    return SHAPE_ALIASES.get(model_id.lower())


def load_shape(spec: str, *, base_dir: Path | None = None) -> ModelShape:
    """A built-in shape name (``llama-3.1-8b``) or a path to a ``config.json`` (or its folder)."""
    if spec in builtin_shapes():
        text = (BUILTIN_DIR / f"{spec}.json").read_text(encoding="utf-8")
        return _parse_shape(text, name=spec, where=f"built-in shape {spec!r}")
    path = Path(spec)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise ShapeError(
            f"{spec!r} is neither a built-in shape ({', '.join(builtin_shapes())}) nor a config.json file"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ShapeError(
            f"{path}: not JSON text (byte {exc.object[exc.start]:#04x} at offset {exc.start})"
        ) from None
    except OSError as exc:
        raise ShapeError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return _parse_shape(text, name=path.parent.name or spec, where=str(path))


def _parse_shape(text: str, *, name: str, where: str) -> ModelShape:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ShapeError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ShapeError(f"{where}: a config.json is a JSON object")
    try:
        return ModelShape.model_validate({**data, "name": name})
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
        raise ShapeError(f"{where}: missing or invalid {fields}") from None


class PlanInputs(BaseModel):
    """Everything the estimate depends on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shape: ModelShape
    max_model_len: int = Field(ge=1)
    gpu_memory_gib: float | None = Field(default=None, gt=0, description="one GPU's total (CUDA's figure)")
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    kv_cache_memory_gib: float | None = Field(default=None, gt=0, description="explicit KV memory per GPU")
    block_size: int = Field(default=DEFAULT_BLOCK_SIZE, ge=1)
    dtype: str = "auto"
    kv_cache_dtype: str = "auto"
    tensor_parallel_size: int = Field(default=1, ge=1)
    max_num_seqs: int = Field(default=256, ge=1)
    max_num_batched_tokens: int | None = Field(default=None, ge=1)
    overhead_gib: float | None = Field(default=None, ge=0, description="replace the modelled overhead")

    @model_validator(mode="after")
    def _memory_source(self) -> PlanInputs:
        if self.gpu_memory_gib is None and self.kv_cache_memory_gib is None:
            raise ValueError("give the GPU's total memory or an explicit KV-cache memory")
        return self


class Advice(BaseModel):
    """One knob to turn and what it would give."""

    model_config = ConfigDict(frozen=True)

    knob: str
    value: str
    max_concurrency: float
    reason: str

    def __str__(self) -> str:
        return f"{self.knob} = {self.value}: max concurrency {self.max_concurrency:.1f} ({self.reason})"


class CapacityEstimate(BaseModel):
    """The planner's answer, per replica."""

    model_config = ConfigDict(frozen=True)

    method: Literal["gpu-memory-model", "explicit-kv-memory"]
    kv_bytes_per_token: int = Field(description="whole model, all layers, K and V")
    kv_bytes_per_token_per_gpu: int
    block_size: int
    weights_gib_per_gpu: float
    activation_gib_per_gpu: float
    other_overhead_gib_per_gpu: float
    kv_memory_gib_per_gpu: float
    kv_blocks: int
    kv_tokens: int
    max_model_len: int
    max_concurrency: float = Field(description="KV tokens / max_model_len: requests at full length at once")

    def as_output(self) -> dict[str, Any]:
        """The plain dict exported as a stack output."""
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.model_dump().items()}


def dtype_bytes(dtype: str, shape: ModelShape) -> int:
    """Bytes per value of the model (``auto``: the checkpoint's dtype, FP32 checkpoints run in 16 bit)."""
    if dtype == "auto":
        return min(DTYPE_BYTES.get(shape.torch_dtype, 2), 2)
    return DTYPE_BYTES[dtype]


def kv_dtype_bytes(kv_cache_dtype: str, dtype: str, shape: ModelShape) -> int:
    if kv_cache_dtype == "auto":
        return dtype_bytes(dtype, shape)
    return DTYPE_BYTES[kv_cache_dtype]


def kv_bytes_per_token(shape: ModelShape, kv_bytes: int, tensor_parallel_size: int = 1) -> int:
    """2 (K and V) x layers x KV heads x head_dim x bytes; per GPU the KV heads are split over TP
    (replicated when there are fewer KV heads than GPUs)."""
    heads = math.ceil(shape.num_key_value_heads / tensor_parallel_size)
    return 2 * shape.num_hidden_layers * heads * shape.head_dim * kv_bytes


def weights_bytes_per_gpu(shape: ModelShape, weight_bytes: int, tensor_parallel_size: int = 1) -> float:
    rotary_cache = shape.max_position_embeddings * shape.head_dim * weight_bytes
    return shape.param_count() * weight_bytes / tensor_parallel_size + rotary_cache


def activation_bytes_per_gpu(
    shape: ModelShape, batched_tokens: int, act_bytes: int, tensor_parallel_size: int = 1
) -> float:
    per_token = 3 * shape.hidden_size + 3 * shape.intermediate_size / tensor_parallel_size
    return batched_tokens * per_token * act_bytes + ACTIVATION_FIXED_GIB * GIB


def estimate(inputs: PlanInputs) -> CapacityEstimate:
    """KV bytes per token, KV tokens and blocks, and max concurrency at ``max_model_len``."""
    shape, tp = inputs.shape, inputs.tensor_parallel_size
    wbytes = dtype_bytes(inputs.dtype, shape)
    kbytes = kv_dtype_bytes(inputs.kv_cache_dtype, inputs.dtype, shape)
    per_token_total = kv_bytes_per_token(shape, kbytes, 1)
    per_token_gpu = kv_bytes_per_token(shape, kbytes, tp)
    weights = weights_bytes_per_gpu(shape, wbytes, tp)
    batched = inputs.max_num_batched_tokens or DEFAULT_MAX_NUM_BATCHED_TOKENS
    if inputs.overhead_gib is not None:
        activation, other = 0.0, inputs.overhead_gib * GIB
    else:
        activation, other = activation_bytes_per_gpu(shape, batched, wbytes, tp), NON_TORCH_GIB * GIB
    if inputs.kv_cache_memory_gib is not None:
        method: Literal["gpu-memory-model", "explicit-kv-memory"] = "explicit-kv-memory"
        kv_memory = inputs.kv_cache_memory_gib * GIB
    else:
        method = "gpu-memory-model"
        assert inputs.gpu_memory_gib is not None  # guaranteed by PlanInputs
        budget = inputs.gpu_memory_gib * GIB * inputs.gpu_memory_utilization
        kv_memory = max(0.0, budget - weights - activation - other)
    blocks = int(kv_memory // (inputs.block_size * per_token_gpu))
    tokens = blocks * inputs.block_size
    return CapacityEstimate(
        method=method,
        kv_bytes_per_token=per_token_total,
        kv_bytes_per_token_per_gpu=per_token_gpu,
        block_size=inputs.block_size,
        weights_gib_per_gpu=weights / GIB,
        activation_gib_per_gpu=activation / GIB,
        other_overhead_gib_per_gpu=other / GIB,
        kv_memory_gib_per_gpu=kv_memory / GIB,
        kv_blocks=blocks,
        kv_tokens=tokens,
        max_model_len=inputs.max_model_len,
        max_concurrency=tokens / inputs.max_model_len,
    )


def advise(inputs: PlanInputs, floor: float) -> list[Advice]:
    """Knobs that would lift max concurrency to ``floor`` (each on its own), best first.

    Empty when the estimate already meets the floor or nothing single-handedly reaches it.
    """
    current = estimate(inputs)
    if current.max_concurrency >= floor:
        return []
    out: list[Advice] = []
    # shorter max_model_len: the one that always works when there are any blocks at all
    if current.kv_tokens >= inputs.block_size and floor > 0:
        target = int(current.kv_tokens / floor)
        target -= target % inputs.block_size or 0
        if target >= inputs.block_size:
            new = estimate(inputs.model_copy(update={"max_model_len": target}))
            out.append(
                Advice(
                    knob="engine.max_model_len",
                    value=str(target),
                    max_concurrency=new.max_concurrency,
                    reason=f"{current.kv_tokens:,} KV tokens hold {floor:g} requests of {target:,} tokens",
                )
            )
    if inputs.kv_cache_memory_gib is None:
        # more of the GPU for vLLM
        for util in (0.92, 0.95, 0.98):
            if util <= inputs.gpu_memory_utilization:
                continue
            new = estimate(inputs.model_copy(update={"gpu_memory_utilization": util}))
            if new.max_concurrency >= floor:
                out.append(
                    Advice(
                        knob="engine.gpu_memory_utilization",
                        value=f"{util:g}",
                        max_concurrency=new.max_concurrency,
                        reason="more of each GPU for the KV cache (less headroom for other processes)",
                    )
                )
                break
        # more GPUs per replica: weights split, KV heads split
        for tp in (2, 4, 8):
            if tp <= inputs.tensor_parallel_size:
                continue
            new = estimate(inputs.model_copy(update={"tensor_parallel_size": tp}))
            if new.max_concurrency >= floor:
                out.append(
                    Advice(
                        knob="engine.tensor_parallel_size (and gpu.count)",
                        value=str(tp),
                        max_concurrency=new.max_concurrency,
                        reason="weights and KV heads are split over more GPUs per replica",
                    )
                )
                break
        # smaller profiling batch (activation memory)
        batched = inputs.max_num_batched_tokens or DEFAULT_MAX_NUM_BATCHED_TOKENS
        if batched > 2048 and inputs.overhead_gib is None:
            new = estimate(inputs.model_copy(update={"max_num_batched_tokens": 2048}))
            if new.max_concurrency >= floor:
                out.append(
                    Advice(
                        knob="engine.max_num_batched_tokens",
                        value="2048",
                        max_concurrency=new.max_concurrency,
                        reason="a smaller prefill chunk needs less activation memory (slower long prompts)",
                    )
                )
    # FP8 KV cache halves the bytes per token
    if kv_dtype_bytes(inputs.kv_cache_dtype, inputs.dtype, inputs.shape) > 1:
        new = estimate(inputs.model_copy(update={"kv_cache_dtype": "fp8"}))
        if new.max_concurrency >= floor:
            out.append(
                Advice(
                    knob="engine.kv_cache_dtype",
                    value="fp8",
                    max_concurrency=new.max_concurrency,
                    reason="one byte per KV value instead of two (check quality on your workload)",
                )
            )
    return sorted(out, key=lambda a: -a.max_concurrency)


def describe(est: CapacityEstimate, floor: float | None = None) -> str:
    """A short human explanation of an estimate."""
    lines = [
        f"KV bytes per token: {est.kv_bytes_per_token:,} (per GPU {est.kv_bytes_per_token_per_gpu:,})",
    ]
    if est.method == "gpu-memory-model":
        lines.append(
            f"per GPU: weights {est.weights_gib_per_gpu:.2f} GiB, activations "
            f"{est.activation_gib_per_gpu:.2f} GiB, other {est.other_overhead_gib_per_gpu:.2f} GiB "
            f"-> KV {est.kv_memory_gib_per_gpu:.2f} GiB"
        )
    else:
        lines.append(f"KV memory per GPU (explicit): {est.kv_memory_gib_per_gpu:.2f} GiB")
    lines.append(
        f"KV cache: {est.kv_blocks:,} blocks x {est.block_size} = {est.kv_tokens:,} tokens; "
        f"max concurrency at max_model_len {est.max_model_len:,}: {est.max_concurrency:.2f}"
    )
    if floor is not None:
        verdict = "meets" if est.max_concurrency >= floor else "is BELOW"
        lines.append(f"{verdict} the floor of {floor:g} concurrent full-length requests")
    return "\n".join(lines)
