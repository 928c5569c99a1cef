"""The hand-off CD relies on: what the infra exports is what `kvstack verify --stack-outputs` reads."""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from kvstack.bench.cli import add_arguments, config_from_args
from kvstack.errors import ConfigError
from kvstack.infra.cli import add_parser as add_infra_commands

ROOT = Path(__file__).resolve().parents[2]


def _render_outputs(stack: str, tmp_path: Path) -> Path:
    parser = argparse.ArgumentParser(prog="kvstack")
    add_infra_commands(parser.add_subparsers(dest="command"))
    outputs = tmp_path / f"{stack}-outputs.json"
    args = parser.parse_args(
        [
            "render",
            "--stack",
            stack,
            "--project-dir",
            str(ROOT),
            "--out",
            str(tmp_path / "m"),
            "--outputs",
            str(outputs),
        ]
    )
    assert args.func(args) == 0
    return outputs


def _verify_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_verify_takes_model_capacity_and_floor_from_the_rendered_outputs(stack: str, tmp_path: Path) -> None:
    path = _render_outputs(stack, tmp_path)
    outputs = json.loads(path.read_text())
    cfg = config_from_args(_verify_args("--stack-outputs", str(path)))
    assert cfg.endpoint == outputs["endpoint"]
    assert cfg.model == outputs["served_model_name"]
    expected = cfg.expected_capacity
    assert expected is not None
    cap = outputs["capacity"]
    assert expected.kv_tokens == cap["kv_tokens"]
    assert expected.num_blocks == cap["kv_blocks"]
    assert expected.block_size == cap["block_size"]
    assert expected.max_model_len == cap["max_model_len"]
    assert cfg.thresholds.min_max_concurrency == cap["min_concurrency"]


def test_verify_targets_the_router_of_a_multi_replica_stack(tmp_path: Path) -> None:
    """prod runs the router tier: verify's endpoint is the router's Service, not the engines' own one
    (which stays in the outputs as engine_endpoint); dev has no router and both are the engine's."""
    outputs = json.loads(_render_outputs("prod", tmp_path).read_text())
    assert outputs["endpoint"] == "http://vllm-router.llm.svc.cluster.local:8000"
    assert outputs["engine_endpoint"] == "http://vllm.llm.svc.cluster.local:8000"
    assert outputs["router"]["service"] == "vllm-router"
    cfg = config_from_args(_verify_args("--stack-outputs", str(tmp_path / "prod-outputs.json")))
    assert cfg.endpoint == outputs["endpoint"] != outputs["engine_endpoint"]
    dev = json.loads(_render_outputs("dev", tmp_path).read_text())
    assert dev["endpoint"] == dev["engine_endpoint"]
    assert "router" not in dev
    assert (
        config_from_args(_verify_args("--stack-outputs", str(tmp_path / "dev-outputs.json"))).endpoint
        == (dev["engine_endpoint"])
    )


def test_flags_override_the_stack_outputs(tmp_path: Path) -> None:
    path = _render_outputs("prod", tmp_path)
    cfg = config_from_args(
        _verify_args("--stack-outputs", str(path), "--endpoint", "https://llm.example.com", "--model", "m")
    )
    assert cfg.endpoint == "https://llm.example.com"
    assert cfg.model == "m"


def test_a_file_that_is_not_stack_outputs_is_refused_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "o.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=r"o\.json: not valid JSON"):
        config_from_args(_verify_args("--stack-outputs", str(bad)))
    bad.write_text('{"foo": 1}')
    with pytest.raises(ConfigError, match=r"o\.json: no endpoint, served_model_name or capacity"):
        config_from_args(_verify_args("--stack-outputs", str(bad)))


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_rules_each_stack_deploys_pass_promtool(stack: str, tmp_path: Path) -> None:
    """The PrometheusRule a stack renders (its own thresholds and job regex), not only the committed
    default rule file, is what Prometheus will load: promtool must accept it."""
    _render_outputs(stack, tmp_path)
    (rule_file,) = (tmp_path / "m").glob("*-prometheusrule-*.yaml")
    rule = yaml.safe_load(rule_file.read_text())
    assert rule["kind"] == "PrometheusRule"
    plain = tmp_path / f"{stack}-rules.yaml"
    plain.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    checked = subprocess.run(
        ["promtool", "check", "rules", str(plain)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert len(alerts) >= 8
    assert all(a["labels"]["severity"] and a["annotations"]["runbook_url"] for a in alerts)
