"""bench.config and the verify flags: defaults, strictness, error messages naming the field."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest

from kvstack.bench.cli import _VALUE_FLAGS, add_arguments, config_from_args
from kvstack.bench.config import DEFAULT_USE_CASES, VerifyConfig, build_config, load_config
from kvstack.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "bench" / "verify.example.yaml"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults_are_the_issue_bar() -> None:
    cfg = VerifyConfig(endpoint="http://h:8000")
    t = cfg.thresholds
    assert (t.min_block_size, t.min_max_concurrency) == (8, 4.0)
    assert (t.min_batching_speedup, t.min_batching_throughput) == (1.3, 50.0)
    assert t.min_prefix_speedup == 1.05
    assert cfg.batching.prompts >= 16
    assert cfg.prefix.prefix_tokens >= 50
    assert len(cfg.prefix.use_cases) >= 3
    assert cfg.sweep.resolved_levels() == [1, 2, 4, 8, 16]


def test_example_file_is_valid_and_equals_the_defaults() -> None:
    cfg = load_config(EXAMPLE, {"endpoint": "http://h:8000"})
    assert cfg == VerifyConfig(endpoint="http://h:8000")
    assert tuple(cfg.prefix.use_cases) == DEFAULT_USE_CASES


def test_unknown_key_is_rejected_with_its_path_and_file(tmp_path: Path) -> None:
    path = tmp_path / "verify.yaml"
    path.write_text("thresholds:\n  min_batching_speedup: 1.3\n  min_prefix_speedp: 1.1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {"endpoint": "http://h:8000"})
    message = str(info.value)
    assert str(path) in message
    assert "thresholds.min_prefix_speedp" in message


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"batching": {"prompts": 8}}, "batching.prompts"),
        ({"prefix": {"prefix_tokens": 20}}, "prefix.prefix_tokens"),
        ({"prefix": {"pairs": 1}}, "prefix.pairs"),
        ({"timeouts": {"read_s": 0}}, "timeouts.read_s"),
        ({"sweep": {"levels": [0, 2]}}, "sweep.levels"),
        ({"endpoint": "vllm:8000"}, "endpoint"),
        ({"version": 2}, "version"),
    ],
)
def test_bounds(data: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        build_config({"endpoint": "http://h:8000", **data}, source="t.yaml")


def test_endpoint_normalised() -> None:
    assert VerifyConfig(endpoint=" http://h:8000/v1/ ").endpoint == "http://h:8000"
    assert VerifyConfig(endpoint="http://h:8000").resolved_metrics_url == "http://h:8000/metrics"


def test_sweep_levels() -> None:
    cfg = build_config({"endpoint": "http://h", "sweep": {"max_concurrency": 128}})
    assert cfg.sweep.resolved_levels() == [1, 2, 4, 8, 16, 32, 64, 128]
    assert (
        build_config({"endpoint": "http://h", "sweep": {"max_concurrency": 24}}).sweep.resolved_levels()[-1]
        == 24
    )
    assert build_config({"endpoint": "http://h", "sweep": {"levels": [8, 1, 8]}}).sweep.resolved_levels() == [
        1,
        8,
    ]
    assert cfg.connection_limit() == 136


def test_flags_override_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    path = tmp_path / "v.yaml"
    path.write_text("endpoint: http://file:8000\nbatching:\n  prompts: 32\nsweep:\n  rounds: 3\n")
    cfg = config_from_args(
        parse(
            "--config", str(path), "--prompts", "128", "--output-tokens", "256", "--sweep-max", "128",
            "--sweep-levels", "1,8,128", "--min-prefix-speedup", "1.2", "--expected-kv-tokens", "463872",
            "--no-use-cases", "--no-chat",
        )
    )  # fmt: skip
    assert cfg.endpoint == "http://file:8000"
    assert cfg.batching.prompts == 128
    assert cfg.batching.output_tokens == cfg.sweep.output_tokens == 256
    assert cfg.sweep.rounds == 3  # from the file
    assert cfg.sweep.resolved_levels() == [1, 8, 128]
    assert cfg.thresholds.min_prefix_speedup == 1.2
    assert cfg.expected_capacity is not None
    assert cfg.expected_capacity.kv_tokens == 463_872
    assert cfg.prefix.use_cases == []
    assert cfg.engine.chat is False


def test_api_key_from_env_and_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_API_KEY", "sk-secret")
    cfg = config_from_args(parse("--endpoint", "http://h:8000"))
    assert cfg.api_key is not None
    assert cfg.api_key.get_secret_value() == "sk-secret"
    assert "sk-secret" not in str(cfg.model_dump(mode="json"))


def test_no_endpoint() -> None:
    with pytest.raises(ConfigError, match="no endpoint"):
        config_from_args(parse())


def test_help_shows_each_flags_default_as_the_model_declares_it() -> None:
    """--help's defaults are read from the config model, so a changed default cannot leave --help behind
    (--min-phase-seconds said 1.5 for a while after the default became 4)."""

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = VerifyConfig(endpoint="http://127.0.0.1:8000").model_dump()
    shown = 0
    for action in parser._actions:
        found = re.search(r"\(default ([-0-9.]+)\)", action.help or "")
        if found is None or action.dest == "help":
            continue
        flag = action.option_strings[0]
        paths = next(paths for f, paths, _t, _h in _VALUE_FLAGS if f == flag)
        for path in paths:
            node: Any = config
            for part in path.split("."):
                node = node[part]
            assert float(found.group(1)) == float(node), (flag, path, found.group(0), node)
        shown += 1
    assert shown >= 25  # the pass marks, timeouts, phases, sweep, routing, baseline and open-loop flags
    help_of = {a.option_strings[0]: a.help or "" for a in parser._actions if a.option_strings}
    assert help_of["--min-phase-seconds"].endswith("(default 4)")
    # one flag, several fields whose defaults differ (batching 32, sweep 16 output tokens): none is shown
    assert "default" not in help_of["--output-tokens"]
