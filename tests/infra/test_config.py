"""The typed stack config: the examples load, and bad configs are refused naming the field and file."""

from __future__ import annotations

import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from kvstack.infra.config import (
    NAMESPACE,
    SECRET_KEYS,
    ConfigError,
    ExistingSecret,
    StackConfig,
    StackSecret,
    duration_seconds,
    load_stack,
    parse_stack_config,
    read_stack_file,
)
from kvstack.infra.config.parse import config_issues
from kvstack.monitoring.alerts.thresholds import AlertThresholds
from tests.infra.bad_stacks import BAD_STACKS, BadStack
from tests.infra.infra_stacks import PROJECT_DIR, example_config, stack_document

Edit = Callable[[dict[str, Any]], None]


def test_example_stacks_load() -> None:
    dev, prod = example_config("dev"), example_config("prod")
    assert dev.gpu.count == 1
    assert dev.rollout.replicas == 1
    assert dev.scaling.min_replicas == dev.scaling.max_replicas == 1
    assert prod.model.id == "meta-llama/Llama-3.1-8B-Instruct"
    assert (prod.scaling.mode, prod.scaling.min_replicas, prod.scaling.max_replicas) == ("hpa", 2, 8)
    assert prod.gpu.product == "NVIDIA-H100-80GB-HBM3"
    # the H100's memory comes from the known-product table (CUDA's figure)
    assert prod.gpu.total_memory_gib == pytest.approx(79.18, abs=0.01)
    assert isinstance(prod.monitoring.alerts, AlertThresholds)
    assert prod.monitoring.alerts.queue_depth_per_replica == 5


def test_defaults_fill_what_a_stack_leaves_out() -> None:
    config = parse_stack_config(
        {
            "model": {"id": "HuggingFaceTB/SmolLM2-135M-Instruct"},
            "engine": {"max_model_len": 2048},
            "gpu": {"memory_gib": 22},
        },
        source="Pulumi.min.yaml (stack min)",
    )
    assert config.gpu.resource_name == "nvidia.com/gpu"
    assert config.image.reference == "vllm/vllm-openai:v0.26.0"
    assert config.engine.gpu_memory_utilization == 0.9
    assert config.monitoring.dashboard_label == {"grafana_dashboard": "1"}
    assert config.scaling.mode == "hpa"
    assert config.capacity.min_concurrency == 4
    assert config.model.served_model_name == "HuggingFaceTB/SmolLM2-135M-Instruct"


def _set(section: str, **values: Any) -> Edit:
    def edit(config: dict[str, Any]) -> None:
        config.setdefault(f"kvstack:{section}", {}).update(values)

    return edit


def _drop(section: str, field: str) -> Edit:
    def edit(config: dict[str, Any]) -> None:
        del config[f"kvstack:{section}"][field]

    return edit


def _top(key: str, value: Any) -> Edit:
    def edit(config: dict[str, Any]) -> None:
        config[f"kvstack:{key}"] = value

    return edit


def _rename(old: str, new: str) -> Edit:
    def edit(config: dict[str, Any]) -> None:
        config[f"kvstack:{new}"] = config.pop(f"kvstack:{old}")

    return edit


def _alerts(**values: Any) -> Edit:
    def edit(config: dict[str, Any]) -> None:
        config["kvstack:monitoring"].setdefault("alerts", {}).update(values)

    return edit


def _gpu_unknown(config: dict[str, Any]) -> None:
    config["kvstack:gpu"] = {"count": 1, "product": "NVIDIA-A10"}


# (id, edit of the prod stack, field named in the error, words the message must contain)
BAD_CONFIGS: list[tuple[str, Edit, str, str]] = [
    (
        "utilization-too-high",
        _set("engine", gpu_memory_utilization=0.99),
        "kvstack:engine.gpu_memory_utilization",
        "0.98",
    ),
    (
        "utilization-zero",
        _set("engine", gpu_memory_utilization=0),
        "kvstack:engine.gpu_memory_utilization",
        "greater than 0",
    ),
    ("image-latest", _set("image", tag="latest"), "kvstack:image.tag", "pin"),
    ("image-unpinned", _set("image", tag=None), "kvstack:image.tag", "pinned"),
    (
        "tag-in-repository",
        _set("image", repository="vllm/vllm-openai:v0.26.0"),
        "kvstack:image.repository",
        "image.tag",
    ),
    (
        "misspelled-field",
        _set("engine", max_model_length=8192),
        "kvstack:engine.max_model_length",
        "did you mean 'max_model_len'",
    ),
    ("misspelled-key", _rename("scaling", "scalling"), "kvstack:scalling", "did you mean kvstack:scaling"),
    ("missing-max-model-len", _drop("engine", "max_model_len"), "kvstack:engine.max_model_len", "required"),
    (
        "min-above-max",
        _set("scaling", min_replicas=9),
        "kvstack:scaling.min_replicas",
        "above scaling.max_replicas",
    ),
    ("unknown-scaling-mode", _set("scaling", mode="vpa"), "kvstack:scaling.mode", "'hpa', 'keda' or 'none'"),
    (
        "keda-fallback-above-max",
        _set("scaling", mode="keda", keda_fallback={"replicas": 9}),
        "kvstack:scaling.keda_fallback.replicas",
        "9 is outside scaling.min_replicas..max_replicas (2..8)",
    ),
    (
        "keda-fallback-threshold-zero",
        _set("scaling", mode="keda", keda_fallback={"failure_threshold": 0}),
        "kvstack:scaling.keda_fallback.failure_threshold",
        "greater than or equal to 1",
    ),
    (
        "unknown-adapter-wiring",
        _set("monitoring", adapter_wiring="manual"),
        "kvstack:monitoring.adapter_wiring",
        "'undeclared', 'helm_values' or 'existing_configmap'",
    ),
    (
        "tp-not-gpu-count",
        _set("engine", tensor_parallel_size=2),
        "kvstack:engine.tensor_parallel_size",
        "gpu.count is 1",
    ),
    (
        "rwo-many-replicas",
        _set("storage", access_mode="ReadWriteOnce"),
        "kvstack:storage.access_mode",
        "ReadWriteMany",
    ),
    ("plaintext-hf-token", _top("hf_token", "hf_abc"), "kvstack:hf_token", "pulumi config set --secret"),
    ("managed-extra-arg", _set("engine", extra_args=["--port=9000"]), "kvstack:engine.extra_args", "--port"),
    ("bad-gpu-resource", _set("gpu", resource_name="gpu"), "kvstack:gpu.resource_name", "nvidia.com/gpu"),
    ("unknown-gpu-memory", _gpu_unknown, "kvstack:gpu.memory_gib", "NVIDIA-H100-80GB-HBM3"),
    (
        "alert-threshold-range",
        _alerts(kv_cache_saturation=1.5),
        "kvstack:monitoring.alerts.kv_cache_saturation",
        "1",
    ),
    (
        "alert-unknown-field",
        _alerts(kv_saturation=0.9),
        "kvstack:monitoring.alerts.kv_saturation",
        "unknown field",
    ),
    (
        "engine-down-before-load",
        _alerts(engine_down_for="2m"),
        "kvstack:monitoring.alerts.engine_down_for",
        "model_load_budget_seconds",
    ),
    (
        "alerts-max-replicas-mismatch",
        _alerts(max_replicas=3),
        "kvstack:monitoring.alerts.max_replicas",
        "at most 8",
    ),
    ("claim-without-name", _set("storage", mode="existing_claim"), "kvstack:storage.claim_name", "required"),
    (
        "grace-shorter-than-prestop",
        _set("rollout", termination_grace_period_seconds=20),
        "kvstack:rollout.termination_grace_period_seconds",
        "drain",
    ),
    (
        "no-rollout-progress",
        _set("rollout", max_unavailable=0),
        "kvstack:rollout.max_unavailable",
        "never replace",
    ),
    (
        "empty-network-peer",
        _top("network", {"allowed_sources": [{}]}),
        "kvstack:network.allowed_sources[0]",
        "allow everyone",
    ),
    ("bad-namespace", _top("namespace", "LLM_Prod"), "kvstack:namespace", "lowercase letters"),
    ("bad-quantity", _set("storage", size="100 gigs"), "kvstack:storage.size", "100Gi"),
    ("bad-block-size", _set("engine", block_size=48), "kvstack:engine.block_size", "16"),
    (
        "bad-probe-budget",
        _set("probes", model_load_budget_seconds=5),
        "kvstack:probes.model_load_budget_seconds",
        "30",
    ),
]


@pytest.mark.parametrize(
    ("edit", "field", "words"), [b[1:] for b in BAD_CONFIGS], ids=[b[0] for b in BAD_CONFIGS]
)
def test_bad_config_is_refused_naming_field_and_file(
    write_stack: Callable[..., Path], edit: Edit, field: str, words: str
) -> None:
    folder = write_stack("bad", edit=edit)
    with pytest.raises(ConfigError) as caught:
        load_stack("bad", folder)
    message = str(caught.value)
    assert message.startswith("Pulumi.bad.yaml (stack bad): invalid kvstack config")
    assert field in caught.value.fields, message
    line = next(line for line in message.splitlines() if line.strip().startswith(f"{field}:"))
    assert words in line, line


@pytest.mark.parametrize(
    ("edit", "field"), [(b[1], b[2]) for b in BAD_CONFIGS], ids=[b[0] for b in BAD_CONFIGS]
)
def test_model_validate_alone_refuses_each_bad_config(edit: Edit, field: str) -> None:
    config = stack_document("prod")["config"]
    edit(config)
    with pytest.raises(ValidationError) as caught:
        StackConfig.model_validate(config, context={"base_dir": PROJECT_DIR})
    assert field in [issue.field for issue in config_issues(caught.value)]


def test_the_bad_stacks_cover_each_kind_at_least_30_times() -> None:
    assert len(BAD_STACKS) >= 30
    docs = (PROJECT_DIR / "docs" / "infra.md").read_text(encoding="utf-8")
    assert f"({len(BAD_STACKS)} of them besides the {len(BAD_CONFIGS)} of" in docs
    assert len({case.id for case in BAD_STACKS}) == len(BAD_STACKS)
    assert not {case.id for case in BAD_STACKS} & {b[0] for b in BAD_CONFIGS}


@pytest.mark.parametrize("case", BAD_STACKS, ids=[case.id for case in BAD_STACKS])
def test_bad_stack_is_refused_naming_field_and_file(case: BadStack, tmp_path: Path) -> None:
    folder = case.write_to(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_stack("bad", folder)
    message = str(caught.value)
    assert message.startswith("Pulumi.bad.yaml (stack bad): invalid kvstack config")
    assert case.field in caught.value.fields, message
    line = next(line for line in message.splitlines() if line.strip().startswith(f"{case.field}:"))
    assert case.words in line, line
    if case.file_level:
        return  # duplicate keys and encodings live in the file, which model_validate never sees
    with pytest.raises(ValidationError) as invalid:
        StackConfig.model_validate(case.document()["config"], context={"base_dir": folder})
    issues = config_issues(invalid.value)
    assert case.field in [issue.field for issue in issues]
    assert any(case.words in issue.message for issue in issues if issue.field == case.field)


def test_the_stack_file_without_its_bad_edit_loads(tmp_path: Path) -> None:
    """The base of every bad stack is valid: each case is refused for its own edit."""
    folder = BadStack("none", "", "").write_to(tmp_path)
    assert load_stack("bad", folder)[1] == example_config("prod")


def test_model_validate_takes_a_stack_file_as_parsed() -> None:
    document = stack_document("prod")
    expected = example_config("prod")
    context = {"base_dir": PROJECT_DIR}
    assert StackConfig.model_validate(document, context=context) == expected
    assert StackConfig.model_validate(document["config"], context=context) == expected


def test_other_namespaces_stay_allowed(write_stack: Callable[..., Path]) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["kubernetes:context"] = "gpu-cluster"
        config["pulumi:tags"] = {"team": "inference"}
        config["aws:region"] = "eu-west-1"
        config["kube:namespace"] = "elsewhere"  # far enough from kvstack to be another provider's

    _, config = load_stack("ok", write_stack("ok", edit=edit))
    assert config == example_config("prod")


def test_a_multi_replica_stack_may_opt_out_of_the_api_key(write_stack: Callable[..., Path]) -> None:
    def edit(config: dict[str, Any]) -> None:
        del config["kvstack:api_key"]
        config["kvstack:auth"] = {"allow_unauthenticated": True}

    _, config = load_stack("open", write_stack("open", edit=edit))
    assert config.api_key is None
    assert config.max_pods == 8
    # one replica at most needs neither (the dev stack has no key)
    assert example_config("dev").api_key is None


def test_bad_model_shape_is_refused_when_the_stack_loads(write_stack: Callable[..., Path]) -> None:
    folder = write_stack("bad", edit=_set("model", shape="llama-9000"))
    with pytest.raises(ConfigError) as caught:
        load_stack("bad", folder)
    assert caught.value.fields == ["kvstack:model.shape"]
    assert "Pulumi.bad.yaml (stack bad)" in str(caught.value)
    assert "llama-3.1-8b" in str(caught.value)  # lists the built-in shapes


def test_unknown_model_without_shape_asks_for_one(write_stack: Callable[..., Path]) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["kvstack:model"] = {"id": "acme/secret-model-7b"}

    folder = write_stack("bad", edit=edit)
    with pytest.raises(
        ConfigError, match=r"kvstack:model.shape: no built-in shape for model.id 'acme/secret-model-7b'"
    ):
        load_stack("bad", folder)


def test_every_problem_is_reported_at_once(write_stack: Callable[..., Path]) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["kvstack:engine"]["gpu_memory_utilization"] = 1.5
        config["kvstack:image"]["tag"] = "latest"
        config["kvstack:replicas"] = 3

    with pytest.raises(ConfigError) as caught:
        load_stack("bad", write_stack("bad", edit=edit))
    assert set(caught.value.fields) == {
        "kvstack:engine.gpu_memory_utilization",
        "kvstack:image.tag",
        "kvstack:replicas",
    }
    assert "3 problems" in str(caught.value)


def test_secure_values_become_stack_secrets(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.s.yaml").write_text(
        "config:\n"
        "  kubernetes:context: gpu-cluster\n"
        "  kvstack:model: {id: meta-llama/Llama-3.1-8B-Instruct}\n"
        "  kvstack:engine: {max_model_len: 8192}\n"
        "  kvstack:gpu: {product: NVIDIA-H100-80GB-HBM3}\n"
        "  kvstack:hf_token:\n    secure: v1:abc\n"
        "  kvstack:api_key: {existing_secret: keys, key: vllm}\n",
        encoding="utf-8",
    )
    stack_file = read_stack_file(tmp_path / "Pulumi.s.yaml")
    assert stack_file.secret_keys == {"hf_token"}
    assert "context" not in stack_file.values  # other namespaces are the provider's business
    _, config = load_stack("s", tmp_path)
    assert isinstance(config.hf_token, StackSecret)
    assert config.api_key == ExistingSecret(existing_secret="keys", key="vllm")


def test_a_secret_where_none_is_expected_is_refused(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.s.yaml").write_text(
        "config:\n  kvstack:namespace:\n    secure: v1:abc\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=r"kvstack:namespace: is not a secret"):
        load_stack("s", tmp_path)


def test_unnamespaced_key_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.s.yaml").write_text("config:\n  model: {id: x}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"model: config keys are namespaced: write kvstack:model"):
        load_stack("s", tmp_path)
    with pytest.raises(ConfigError, match=r"(?s)Pulumi.nope.yaml \(stack nope\).*not found"):
        load_stack("nope", tmp_path)


def test_secret_values_never_appear_in_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(
            {
                "model": {"id": "m"},
                "engine": {"max_model_len": 1024},
                "api_key": {"existing_secret": "Bad_Name", "key": "k"},
            },
            source="s",
        )
    assert "kvstack:api_key.existing_secret" in caught.value.fields
    assert "Bad_Name" not in str(caught.value)


@pytest.mark.parametrize(("text", "seconds"), [("10m", 600), ("1h30m", 5400), ("90s", 90), ("500ms", 0.5)])
def test_duration_seconds(text: str, seconds: float) -> None:
    assert duration_seconds(text) == seconds


def test_project_file_runs_infra_with_the_kvstack_namespace() -> None:
    project = yaml.safe_load((PROJECT_DIR / "Pulumi.yaml").read_text(encoding="utf-8"))
    assert project["name"] == NAMESPACE == "kvstack"  # the project name is the config namespace
    assert project["main"] == "infra/"
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": ".venv"}}


def _fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str]]:
    """(section, field) of every config field, nested sections included (not the alerts' own fields)."""
    out = []
    for name, info in model.model_fields.items():
        out.append((prefix, name))
        for sub in (info.annotation, *typing.get_args(info.annotation)):
            is_section = isinstance(sub, type) and issubclass(sub, BaseModel) and sub is not AlertThresholds
            if is_section and name not in SECRET_KEYS:
                out += _fields(sub, f"{prefix}{name}.")
    return out


def test_docs_describe_every_config_field() -> None:
    text = (PROJECT_DIR / "docs" / "infra.md").read_text(encoding="utf-8")
    sections = [
        name
        for name, info in StackConfig.model_fields.items()
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)
    ]
    assert [s for s in sections if f"### `kvstack:{s}`" not in text] == []
    fields = [f"{section}{name}" for section, name in _fields(StackConfig) if section or name not in sections]
    assert [f for f in fields if f"`{f.rsplit('.', 1)[-1]}`" not in text] == []
