"""Bad stacks written from the kinds of operator mistake in issue 10 ("Bad stacks that pass"): each is the
prod example changed one way, and each must be refused naming the field and the stack file.

A case edits the parsed ``config:`` mapping (``edit``), or the stack file's text or bytes (``write``, for
what only exists in the file: duplicate keys, encodings), and may put files beside it (``files``, e.g. a
model shape). ``file_level`` cases cannot be seen by ``StackConfig.model_validate``, which gets values,
not a file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.infra.infra_stacks import stack_document

Edit = Callable[[dict[str, Any]], None]
Write = Callable[[str], bytes]


@dataclass(frozen=True)
class BadStack:
    id: str
    field: str
    words: str
    edit: Edit | None = None
    write: Write | None = None
    files: dict[str, bytes] = dataclasses.field(default_factory=dict)  # `field` is a field name here

    @property
    def file_level(self) -> bool:
        return self.write is not None

    def document(self) -> dict[str, Any]:
        document = stack_document("prod")
        if self.edit is not None:
            self.edit(document["config"])
        return document

    def write_to(self, folder: Path, name: str = "bad") -> Path:
        text = yaml.safe_dump(self.document(), sort_keys=False)
        data = self.write(text) if self.write is not None else text.encode("utf-8")
        (folder / f"Pulumi.{name}.yaml").write_bytes(data)
        for path, content in self.files.items():
            (folder / path).write_bytes(content)
        return folder


def _set(section: str, **values: Any) -> Edit:
    def edit(config: dict[str, Any]) -> None:
        config.setdefault(f"kvstack:{section}", {}).update(values)

    return edit


def _rename(old: str, new: str) -> Edit:
    def edit(config: dict[str, Any]) -> None:
        config[new] = config.pop(f"kvstack:{old}")

    return edit


def _drop(key: str) -> Edit:
    def edit(config: dict[str, Any]) -> None:
        del config[f"kvstack:{key}"]

    return edit


def _then(*edits: Edit) -> Edit:
    def edit(config: dict[str, Any]) -> None:
        for one in edits:
            one(config)

    return edit


def _extra_args(*args: str) -> Edit:
    return _set("engine", extra_args=list(args))


def _peer(**peer: Any) -> Edit:
    return _set("network", allowed_sources=[peer])


def _duplicate_top_key(text: str) -> bytes:
    # Pulumi refuses the file; PyYAML would silently keep the second engine section
    return (text + "  kvstack:engine:\n    max_model_len: 1024\n").encode("utf-8")


def _duplicate_nested_key(text: str) -> bytes:
    return text.replace(
        "    max_model_len: 16384\n", "    max_model_len: 16384\n    max_model_len: 4096\n"
    ).encode()


def _utf16(text: str) -> bytes:
    return text.encode("utf-16")


def _latin1(text: str) -> bytes:
    return ("# équipe inférence, modèle de prod\n" + text).encode("latin-1")


# a config.json whose heads tensor parallel 4 can split but whose 6 KV heads it cannot
_ODD_KV_SHAPE = (
    b'{"num_hidden_layers": 24, "num_attention_heads": 24, "num_key_value_heads": 6, "hidden_size": 3072,'
    b' "intermediate_size": 8192, "vocab_size": 32000, "max_position_embeddings": 32768}'
)
_NOT_JSON_TEXT = bytes(range(256)) * 4  # e.g. a safetensors file given as the shape

BAD_STACKS: list[BadStack] = [
    # a misspelled namespace: Pulumi would hand the value to no one
    BadStack(
        "namespace-kvstak-api-key",
        "kvstak:api_key",
        "write kvstack:api_key",
        _rename("api_key", "kvstak:api_key"),
    ),
    BadStack(
        "namespace-kv-stack-engine",
        "kv-stack:engine",
        "write kvstack:engine",
        _rename("engine", "kv-stack:engine"),
    ),
    BadStack(
        "namespace-capitalised",
        "KVStack:scaling",
        "write kvstack:scaling",
        _rename("scaling", "KVStack:scaling"),
    ),
    BadStack(
        "namespace-plural",
        "kvstacks:network",
        "write kvstack:network",
        _rename("network", "kvstacks:network"),
    ),
    BadStack(
        "namespace-underscore", "kv_stack:capacity", "misspelling", _rename("capacity", "kv_stack:capacity")
    ),
    # YAML that Pulumi and PyYAML read differently
    BadStack("duplicate-top-level-key", "file", "duplicate key 'kvstack:engine'", write=_duplicate_top_key),
    BadStack("duplicate-nested-key", "file", "duplicate key 'max_model_len'", write=_duplicate_nested_key),
    # network rules that open more than they say, or block the Prometheus the autoscaler needs
    BadStack(
        "peer-empty-namespace-selector",
        "kvstack:network.allowed_sources[0].namespace_labels",
        "every namespace",
        _peer(namespace_labels={}),
    ),
    BadStack(
        "peer-empty-namespace-selector-with-pods",
        "kvstack:network.allowed_sources[0].namespace_labels",
        "every namespace",
        _peer(namespace_labels={}, pod_labels={"app": "gateway"}),
    ),
    BadStack(
        "peer-cidr-everything",
        "kvstack:network.allowed_sources[0].cidr",
        "every address",
        _peer(cidr="0.0.0.0/0"),
    ),
    BadStack(
        "peer-except-outside-cidr",
        "kvstack:network.allowed_sources[0].except_cidrs[0]",
        "not inside cidr",
        _peer(cidr="10.0.0.0/8", except_cidrs=["192.168.0.0/16"]),
    ),
    BadStack(
        "prometheus-blocked-with-hpa",
        "kvstack:network.allow_prometheus",
        "blocks the Prometheus",
        _set("network", allow_prometheus=False),
    ),
    BadStack(
        "prometheus-pods-unselected",
        "kvstack:monitoring.prometheus_pod_labels",
        "every pod",
        _set("monitoring", prometheus_pod_labels={}),
    ),
    BadStack(
        "keda-prometheus-in-other-namespace",
        "kvstack:monitoring.prometheus_namespace",
        "KEDA queries the Prometheus in namespace 'observability'",
        _set("scaling", mode="keda", prometheus_address="http://prometheus-operated.observability.svc:9090"),
    ),
    # engine settings the model or the GPU cannot honour
    BadStack(
        "max-model-len-beyond-positions",
        "kvstack:engine.max_model_len",
        "beyond the model's 131,072 positions",
        _set("engine", max_model_len=262_144),
    ),
    BadStack(
        "max-model-len-beyond-small-model",
        "kvstack:engine.max_model_len",
        "8,192 positions",
        _then(_set("model", id="HuggingFaceTB/SmolLM2-135M-Instruct", shape="smollm2-135m")),
    ),
    BadStack(
        "tp-does-not-divide-heads",
        "kvstack:engine.tensor_parallel_size",
        "does not divide the model's 32 attention heads",
        _then(_set("engine", tensor_parallel_size=3), _set("gpu", count=3)),
    ),
    BadStack(
        "tp-does-not-divide-kv-heads",
        "kvstack:engine.tensor_parallel_size",
        "6 KV heads",
        _then(
            _set("model", shape="odd-kv.json"),
            _set("engine", tensor_parallel_size=4, max_model_len=8192),
            _set("gpu", count=4),
        ),
        files={"odd-kv.json": _ODD_KV_SHAPE},
    ),
    BadStack(
        "kv-cache-larger-than-gpu",
        "kvstack:engine.kv_cache_memory_gib",
        "more than the 71.26 GiB vLLM may use",
        _set("engine", kv_cache_memory_gib=120),
    ),
    BadStack(
        "max-num-seqs-below-floor",
        "kvstack:engine.max_num_seqs",
        "below capacity.min_concurrency (8)",
        _set("engine", max_num_seqs=4),
    ),
    BadStack(
        "goodput-floor-beyond-batch",
        "kvstack:capacity.min_goodput_concurrency",
        "engine.max_num_seqs 256 x 8 replicas",
        _set("capacity", min_goodput_concurrency=5000),
    ),
    # what the API server refuses at `pulumi up` but a schema check cannot see
    BadStack(
        "memory-limit-below-request",
        "kvstack:resources.memory_limit",
        "below memory_request",
        _set("resources", memory_limit="32Gi"),
    ),
    BadStack(
        "cpu-limit-below-request",
        "kvstack:resources.cpu_limit",
        "below cpu_request",
        _set("resources", cpu_limit="4"),
    ),
    BadStack(
        "label-value-with-space",
        "kvstack:rollout.pod_labels.team",
        "no spaces",
        _set("rollout", pod_labels={"team": "ml ops"}),
    ),
    BadStack(
        "monitor-label-with-space",
        "kvstack:monitoring.labels.release",
        "no spaces",
        _set("monitoring", labels={"release": "kube prometheus stack"}),
    ),
    BadStack(
        "gpu-product-with-space",
        "kvstack:gpu.product",
        "label value",
        _set("gpu", product="NVIDIA H100 80GB HBM3"),
    ),
    BadStack(
        "cidr-prefix-too-long", "kvstack:network.allowed_sources[0].cidr", "CIDR", _peer(cidr="10.0.0.0/33")
    ),
    BadStack(
        "cidr-host-bits-set", "kvstack:network.allowed_sources[0].cidr", "host bits", _peer(cidr="10.1.2.3/8")
    ),
    BadStack(
        "cidr-not-an-address", "kvstack:network.allowed_sources[0].cidr", "CIDR", _peer(cidr="office/24")
    ),
    BadStack(
        "toleration-exists-with-value",
        "kvstack:gpu.tolerations[0].value",
        "operator Exists",
        _set("gpu", tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "value": "present"}]),
    ),
    BadStack(
        "toleration-seconds-without-noexecute",
        "kvstack:gpu.tolerations[0].toleration_seconds",
        "NoExecute",
        _set(
            "gpu", tolerations=[{"key": "nvidia.com/gpu", "effect": "NoSchedule", "toleration_seconds": 60}]
        ),
    ),
    BadStack(
        "mount-over-tmp", "kvstack:storage.mount_path", "overlaps /tmp", _set("storage", mount_path="/tmp")
    ),
    BadStack(
        "mount-inside-shm",
        "kvstack:storage.mount_path",
        "overlaps /dev/shm",
        _set("storage", mount_path="/dev/shm/models"),
    ),
    BadStack(
        "mount-over-usr",
        "kvstack:storage.mount_path",
        "hide the image's own /usr",
        _set("storage", mount_path="/usr"),
    ),
    # managed vLLM flags slipping past in extra_args
    BadStack(
        "extra-arg-underscore",
        "kvstack:engine.extra_args",
        "--max-model-len",
        _extra_args("--max_model_len=4096"),
    ),
    BadStack(
        "extra-arg-flag-and-value",
        "kvstack:engine.extra_args",
        "--max-model-len",
        _extra_args("--max-model-len 4096"),
    ),
    BadStack(
        "extra-arg-equals",
        "kvstack:engine.extra_args",
        "--gpu-memory-utilization",
        _extra_args("--gpu-memory-utilization=0.5"),
    ),
    BadStack(
        "extra-arg-underscore-separate",
        "kvstack:engine.extra_args",
        "--tensor-parallel-size",
        _extra_args("--tensor_parallel_size", "2"),
    ),
    BadStack("extra-arg-short-tp", "kvstack:engine.extra_args", "-tp", _extra_args("-tp", "2")),
    BadStack("extra-arg-api-key", "kvstack:engine.extra_args", "--api-key", _extra_args("--api_key=sk-123")),
    BadStack(
        "extra-arg-unmanaged-in-one",
        "kvstack:engine.extra_args",
        "two list elements",
        _extra_args("--seed 1"),
    ),
    # engines that cannot serve the render routes a cache_aware router reads (or would refuse the flag)
    BadStack(
        "scale-out-undecidable-0-29",
        "kvstack:router.engine_scale_out",
        "cannot be decided from image.tag 'v0.29.1'",
        _set("image", tag="v0.29.1"),
    ),
    BadStack(
        "scale-out-undecidable-digest-only",
        "kvstack:router.engine_scale_out",
        "a digest-only image",
        _set("image", tag=None, digest="sha256:" + "ab" * 32),
    ),
    BadStack(
        "scale-out-undecidable-build-tag",
        "kvstack:router.engine_scale_out",
        "image.tag 'v0.30.1-cu128'",
        _set("image", tag="v0.30.1-cu128"),
    ),
    BadStack(
        "scale-out-on-old-vllm",
        "kvstack:router.engine_scale_out",
        "does not know --enable-scale-out",
        _set("router", engine_scale_out=True),
    ),
    BadStack(
        "scale-out-off-on-new-vllm",
        "kvstack:router.engine_scale_out",
        "silently falls back to load balancing",
        _then(_set("image", tag="v0.32.0"), _set("router", engine_scale_out=False)),
    ),
    BadStack(
        "extra-arg-scale-out",
        "kvstack:engine.extra_args",
        "kvstack:router.engine_scale_out",
        _extra_args("--enable_scale_out"),
    ),
    # what used to crash
    BadStack("stack-file-utf16", "file", "UTF-16", write=_utf16),
    BadStack("stack-file-latin1", "file", "not UTF-8 text (byte 0xe9", write=_latin1),
    BadStack(
        "shape-not-json-text",
        "kvstack:model.shape",
        "not JSON text",
        _set("model", shape="model.safetensors"),
        files={"model.safetensors": _NOT_JSON_TEXT},
    ),
    BadStack(
        "shape-invalid-json",
        "kvstack:model.shape",
        "not valid JSON",
        _set("model", shape="config.json"),
        files={"config.json": b"{num_hidden_layers: 32,}"},
    ),
    BadStack(
        "no-scaling-zero-replicas",
        "kvstack:rollout.replicas",
        "serve nothing",
        _then(_set("scaling", mode="none"), _set("rollout", replicas=0)),
    ),
    # production defaults: more than one replica needs an API key and real runbooks
    BadStack(
        "multi-replica-without-api-key",
        "kvstack:api_key",
        "auth.allow_unauthenticated: true",
        _drop("api_key"),
    ),
    BadStack(
        "fixed-replicas-without-api-key",
        "kvstack:api_key",
        "up to 3 replicas",
        _then(_drop("api_key"), _set("scaling", mode="none"), _set("rollout", replicas=3)),
    ),
    BadStack(
        "placeholder-runbooks",
        "kvstack:monitoring.alerts.runbook_base_url",
        "placeholder",
        lambda config: config["kvstack:monitoring"]["alerts"].pop("runbook_base_url"),
    ),
    BadStack(
        "runbooks-on-a-reserved-domain",
        "kvstack:monitoring.alerts.runbook_base_url",
        "placeholder",
        lambda config: config["kvstack:monitoring"]["alerts"].update(
            runbook_base_url="https://wiki.invalid/rb"
        ),
    ),
]
