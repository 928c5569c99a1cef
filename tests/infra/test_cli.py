"""`kvstack plan`, `render` and `lint` as a user runs them: exit codes, files, messages."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from kvstack.cli import main as kvstack_main
from kvstack.infra import cli as infra_cli
from kvstack.infra.capacity import GIB
from kvstack.infra.config import KNOWN_GPU_MEMORY_BYTES
from kvstack.infra.render import load_manifest_dir
from tests.infra.bad_stacks import BAD_STACKS, BadStack
from tests.infra.infra_stacks import LLAMA8B_CALIBRATION, PROJECT_DIR, example_plan
from tests.infra.test_config import BAD_CONFIGS


def run(*argv: str) -> int:
    """Parse like kvstack/cli.py does (one add_parser call on its subparsers) and run the command."""
    parser = argparse.ArgumentParser(prog="kvstack")
    sub = parser.add_subparsers(dest="command")
    infra_cli.add_parser(sub)
    args = parser.parse_args(list(argv))
    code = args.func(args)
    assert isinstance(code, int)
    return code


def test_three_subcommands_are_registered_and_documented(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="kvstack")
    sub = parser.add_subparsers(dest="command")
    infra_cli.add_parser(sub)
    assert set(sub.choices) == {"plan", "render", "lint"}
    for name in ("plan", "render", "lint"):
        with pytest.raises(SystemExit) as exited:
            parser.parse_args([name, "--help"])
        assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "kvstack plan --stack prod" in text
    assert "llama-3.1-8b" in text  # the built-in shapes are listed
    assert "--max-model-len --gpu-memory-utilization" in text


def test_placeholders_of_the_caller_are_kept() -> None:
    parser = argparse.ArgumentParser(prog="kvstack")
    sub = parser.add_subparsers(dest="command")
    placeholder = sub.add_parser("plan")
    infra_cli.add_parser(sub)
    assert sub.choices["plan"] is placeholder
    assert set(sub.choices) == {"plan", "render", "lint"}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_lint_example_stacks_through_kvstack(stack: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert kvstack_main(["lint", "--stack", stack, "--project-dir", str(PROJECT_DIR)]) == 0
    out = capsys.readouterr().out
    assert f"Pulumi.{stack}.yaml (stack {stack})" in out
    assert "all checks passed" in out
    assert "OK    schema" in out


def test_lint_exits_2_naming_field_and_file(
    write_stack: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["kvstack:image"]["tag"] = "latest"

    folder = write_stack("bad", edit=edit)
    assert run("lint", "--stack", "bad", "--project-dir", str(folder)) == 2
    err = capsys.readouterr().err
    assert "Pulumi.bad.yaml (stack bad)" in err
    assert "kvstack:image.tag" in err


def test_lint_warns_until_the_adapter_wiring_is_declared(
    write_stack: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("lint", "--stack", "prod", "--project-dir", str(PROJECT_DIR), "--no-schema") == 0
    out = capsys.readouterr().out
    assert "WARN  adapter        the HPA scales on vllm_num_requests_waiting" in out
    assert "all checks passed (1 warning)" in out

    def edit(config: dict[str, Any]) -> None:
        config["kvstack:monitoring"]["adapter_wiring"] = "helm_values"

    folder = write_stack("wired", edit=edit)
    assert run("lint", "--stack", "wired", "--project-dir", str(folder), "--no-schema") == 0
    out = capsys.readouterr().out
    assert "OK    adapter        prometheus-adapter gets the rules" in out
    assert "WARN" not in out
    assert out.rstrip().endswith("all checks passed")


def test_lint_says_builtin_schema_errors_stop_at_the_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rendered"
    assert run("render", "--stack", "prod", "--project-dir", str(PROJECT_DIR), "--out", str(out)) == 0
    # the engine's Deployment (prod also renders the router's, *-deployment-vllm-router.yaml)
    (path,) = [
        p
        for p in out.glob("*-deployment-vllm.yaml")
        if "\nkind: Deployment\n" in p.read_text(encoding="utf-8")
    ]
    body = yaml.safe_load(path.read_text(encoding="utf-8"))
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["gpus"], container["cpus"] = 1, 2  # two errors: kubernetes-validate names only the first
    path.write_text(yaml.safe_dump(body), encoding="utf-8")
    capsys.readouterr()
    assert run("lint", "--manifests", str(out), "--kube-version", "1.34") == 1
    text = capsys.readouterr().out
    assert text.count("FAIL  schema") == 1
    assert "NOTE  schema         kubernetes-validate stops at the first error of each object" in text


def test_lint_reports_capacity_below_floor(
    write_stack: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["kvstack:capacity"] = {"min_concurrency": 100}

    folder = write_stack("tight", edit=edit)
    assert run("lint", "--stack", "tight", "--project-dir", str(folder), "--no-schema") == 1
    assert "FAIL  capacity       max concurrency 27.6" in capsys.readouterr().out


def test_render_then_lint_the_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "prod"
    outputs = tmp_path / "outputs.json"
    code = run(
        "render",
        "--stack",
        "prod",
        "--project-dir",
        str(PROJECT_DIR),
        "--out",
        str(out),
        "--outputs",
        str(outputs),
    )
    assert code == 0
    plan = example_plan("prod")
    files = sorted(out.iterdir())
    assert [p.name for p in files][:2] == [
        "00-persistentvolumeclaim-vllm-model-cache.yaml",
        "01-deployment-vllm.yaml",
    ]
    assert load_manifest_dir(out) == [json.loads(json.dumps(m.body)) for m in plan.manifests]
    assert json.loads(outputs.read_text(encoding="utf-8")) == json.loads(json.dumps(plan.outputs))
    printed = capsys.readouterr().out
    assert "Secret llm/hf-token key 'token'" in printed
    assert run("lint", "--manifests", str(out)) == 0

    # a reviewer deletes the readiness probe from the rendered Deployment: lint names it
    deployment_file = out / "01-deployment-vllm.yaml"
    deployment = yaml.safe_load(deployment_file.read_text(encoding="utf-8"))
    del deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    deployment_file.write_text(yaml.safe_dump(deployment), encoding="utf-8")
    assert run("lint", "--manifests", str(out)) == 1
    assert "FAIL  probes         Deployment/vllm: no readinessProbe" in capsys.readouterr().out


def test_render_replaces_stale_files_and_notes_stack_secrets(
    write_stack: Callable[..., Path], tmp_path: Path
) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["kvstack:hf_token"] = {"secure": "v1:encrypted"}

    folder = write_stack("sec", edit=edit)
    out = tmp_path / "out"
    out.mkdir()
    (out / "99-horizontalpodautoscaler-old.yaml").write_text(
        "kind: HorizontalPodAutoscaler\n", encoding="utf-8"
    )
    (out / "README.md").write_text("kept\n", encoding="utf-8")
    assert run("render", "--stack", "sec", "--project-dir", str(folder), "--out", str(out)) == 0
    assert not (out / "99-horizontalpodautoscaler-old.yaml").exists()
    assert (out / "README.md").exists()
    kinds = [b["kind"] for b in load_manifest_dir(out)]
    assert "Secret" not in kinds  # the value is a Pulumi secret: never written to disk


def test_render_refuses_a_stack_below_the_floor(
    write_stack: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["kvstack:engine"]["max_model_len"] = 131_072

    folder = write_stack("big", edit=edit)
    assert run("render", "--stack", "big", "--project-dir", str(folder), "--out", str(tmp_path / "o")) == 1
    err = capsys.readouterr().err
    assert "kvstack:capacity.min_concurrency" in err
    assert "engine.max_model_len = " in err
    assert not (tmp_path / "o").exists()


def test_plan_a_stack(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("plan", "--stack", "prod", "--project-dir", str(PROJECT_DIR), "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["estimate"] == example_plan("prod").estimate.as_output()
    assert report["meets_floor"] is True
    assert report["advice"] == []


def test_plan_what_if_below_the_floor(capsys: pytest.CaptureFixture[str]) -> None:
    code = run("plan", "--stack", "prod", "--project-dir", str(PROJECT_DIR), "--max-model-len", "131072")
    out = capsys.readouterr().out
    assert code == 1
    assert "is BELOW the floor of 8" in out
    assert "engine.max_model_len = " in out


def test_plan_from_flags_reproduces_the_h100_reference(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "plan",
        "--model",
        LLAMA8B_CALIBRATION,
        "--gpu",
        "NVIDIA-H100-80GB-HBM3",
        "--max-model-len",
        "8192",
    ]
    argv += ["--max-num-seqs", "1024", "--max-num-batched-tokens", "8192", "--json"]
    assert run(*argv) == 0
    estimate = json.loads(capsys.readouterr().out)["estimate"]
    assert estimate["kv_tokens"] == pytest.approx(463_872, rel=0.03)
    assert estimate["kv_bytes_per_token"] == 131_072
    memory = run(
        "plan",
        "--model",
        LLAMA8B_CALIBRATION,
        "--gpu-memory-gib",
        str(KNOWN_GPU_MEMORY_BYTES["NVIDIA-H100-80GB-HBM3"] / GIB),
        "--max-model-len",
        "8192",
        "--max-num-seqs",
        "1024",
        "--json",
    )
    assert memory == 0
    assert json.loads(capsys.readouterr().out)["estimate"] == estimate


def test_plan_from_a_config_json_with_explicit_kv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    smol = json.loads((PROJECT_DIR / "infra" / "models" / "smollm2-135m.json").read_text(encoding="utf-8"))
    (tmp_path / "config.json").write_text(json.dumps(smol), encoding="utf-8")
    argv = ["plan", "--model", str(tmp_path / "config.json"), "--kv-cache-gib", "2", "--block-size", "128"]
    assert run(*argv, "--max-model-len", "1024") == 0
    out = capsys.readouterr().out
    assert "728 blocks x 128 = 93,184 tokens" in out
    assert "max concurrency at max_model_len 1,024: 91.00" in out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["plan", "--max-model-len", "8192"], "give --model, --gpu-memory-gib/--gpu or --kv-cache-gib"),
        (
            ["plan", "--model", "nope", "--max-model-len", "8", "--kv-cache-gib", "1"],
            "neither a built-in shape",
        ),
        (
            ["plan", "--model", "llama-3.1-8b", "--max-model-len", "8", "--gpu", "TPU"],
            "--gpu 'TPU' is not known",
        ),
        (["plan", "--stack", "missing"], "Pulumi.missing.yaml (stack missing)"),
        (["lint", "--manifests", "/nonexistent"], "is not a folder"),
    ],
)
def test_bad_usage_exits_2(argv: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(*argv) == 2
    assert words in capsys.readouterr().err


def test_pure_modules_do_not_import_pulumi() -> None:
    code = (
        "import sys\n"
        "import kvstack.infra.cli, kvstack.infra.config, kvstack.infra.capacity, kvstack.infra.lint\n"
        "import kvstack.infra.render, kvstack.infra.stack\n"
        "import kvstack.infra.manifests.workload, kvstack.infra.manifests.monitoring\n"
        "import kvstack.infra.manifests.autoscaling\n"
        "import kvstack.infra.schema\n"
        "bad = sorted(m for m in sys.modules if m == 'pulumi' or m.startswith(('pulumi.', 'pulumi_')))\n"
        "print(bad)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PROJECT_DIR
    )
    assert result.stdout.strip() == "[]"


def test_lint_fails_a_stack_without_autoscaling(
    write_stack: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["kvstack:scaling"] = {"mode": "none"}
        config["kvstack:rollout"]["replicas"] = 2

    folder = write_stack("fixed", edit=edit)
    assert run("lint", "--stack", "fixed", "--project-dir", str(folder), "--no-schema") == 1
    out = capsys.readouterr().out
    assert "FAIL  autoscaling    no HorizontalPodAutoscaler or ScaledObject scales Deployment/vllm" in out
    assert "1 failed" in out


@pytest.mark.parametrize("command", ["plan", "render"])
def test_plan_and_render_through_kvstack(command: str, tmp_path: Path) -> None:
    argv = [command, "--stack", "dev", "--project-dir", str(PROJECT_DIR)]
    if command == "render":
        argv += ["--out", str(tmp_path / "out")]
    assert kvstack_main(argv) == 0


# every bad config of the suite: the 31 of test_config.py and the kinds of issue 10 (bad_stacks.py)
EVERY_BAD_STACK = [BadStack(b[0], b[2], b[3], edit=b[1]) for b in BAD_CONFIGS] + BAD_STACKS


@pytest.mark.parametrize("command", ["plan", "render", "lint"])
@pytest.mark.parametrize("case", EVERY_BAD_STACK, ids=[case.id for case in EVERY_BAD_STACK])
def test_every_bad_stack_is_refused_by_each_command(
    case: BadStack, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = case.write_to(tmp_path)
    out, outputs = tmp_path / "rendered", tmp_path / "outputs.json"
    argv = [command, "--stack", "bad", "--project-dir", str(folder)]
    if command == "render":
        argv += ["--out", str(out), "--outputs", str(outputs)]
    assert kvstack_main(argv) == 2
    captured = capsys.readouterr()
    assert "Pulumi.bad.yaml (stack bad)" in captured.err
    assert f"{case.field}: " in captured.err
    assert case.words in captured.err
    assert "Traceback" not in captured.err + captured.out
    assert not out.exists()
    assert not outputs.exists()


def test_lint_fails_a_stack_reachable_from_every_namespace(
    write_stack: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["kvstack:network"] = {"enabled": False}

    folder = write_stack("open", edit=edit)
    assert run("lint", "--stack", "open", "--project-dir", str(folder), "--no-schema") == 1
    out = capsys.readouterr().out
    assert "FAIL  network        Deployment/vllm is reachable from every namespace" in out
