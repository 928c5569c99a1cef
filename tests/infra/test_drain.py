"""The drain: --shutdown-timeout derived from the rollout, settings without time to drain refused, the
pod's env keeps every cache on a writable volume. (The real engine's side: tests/pod.)"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from kvstack.infra.config import ConfigError, RolloutSpec, StackConfig, parse_stack_config
from kvstack.infra.drain import (
    DRAIN_MARGIN_SECONDS,
    MIN_SHUTDOWN_TIMEOUT_SECONDS,
    drain_problem,
    shutdown_timeout_seconds,
)
from kvstack.infra.lint import check_drain, failed, lint, pre_stop_sleep_seconds
from kvstack.infra.manifests.workload import deployment, drain_seconds, vllm_args
from tests.infra.infra_stacks import EXAMPLE_STACKS, example_config, example_plan


def test_shutdown_timeout_is_grace_minus_prestop_minus_margin() -> None:
    assert DRAIN_MARGIN_SECONDS == 10
    assert shutdown_timeout_seconds(130, 30) == 90
    assert shutdown_timeout_seconds(45, 2) == 33
    assert shutdown_timeout_seconds(300, 0) == 290


def test_drain_problem_at_the_boundary() -> None:
    least = 30 + DRAIN_MARGIN_SECONDS + MIN_SHUTDOWN_TIMEOUT_SECONDS
    assert drain_problem(least, 30) is None
    problem = drain_problem(least - 1, 30)
    assert problem is not None
    assert f"at least {least}" in problem
    assert f"{MIN_SHUTDOWN_TIMEOUT_SECONDS - 1} s to drain" in problem
    # a grace period shorter than the preStop sleep: no negative seconds in the message
    short = drain_problem(20, 30)
    assert short is not None
    assert "leaves vLLM 0 s to drain" in short


def _with_rollout(config: StackConfig, **rollout: int) -> dict[str, Any]:
    values = config.model_dump(mode="json", exclude_none=True)
    values["rollout"] = {**values["rollout"], **rollout}
    return values


@pytest.mark.parametrize(
    ("grace", "pre_stop"),
    [(54, 30), (30, 30), (20, 30), (24, 0)],
)
def test_rollout_without_time_to_drain_is_refused(grace: int, pre_stop: int) -> None:
    with pytest.raises(ValueError, match="to drain"):
        RolloutSpec(termination_grace_period_seconds=grace, pre_stop_sleep_seconds=pre_stop)
    values = {"termination_grace_period_seconds": grace, "pre_stop_sleep_seconds": pre_stop}
    raw = {"model": {"id": "m"}, "engine": {"max_model_len": 1024}, "gpu": {"memory_gib": 80}}
    with pytest.raises(ConfigError) as caught:
        parse_stack_config({**raw, "rollout": values}, source="Pulumi.bad.yaml (stack bad)")
    assert caught.value.fields == ["kvstack:rollout.termination_grace_period_seconds"]
    assert "Pulumi.bad.yaml" in str(caught.value)


def test_rollout_with_time_to_drain_is_accepted() -> None:
    assert RolloutSpec(termination_grace_period_seconds=55, pre_stop_sleep_seconds=30)
    assert RolloutSpec(termination_grace_period_seconds=25, pre_stop_sleep_seconds=0)


def _flag(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_deployment_passes_the_derived_shutdown_timeout(stack: str) -> None:
    config = example_config(stack)
    rollout = config.rollout
    args = vllm_args(config)
    assert args.count("--shutdown-timeout") == 1
    assert _flag(args, "--shutdown-timeout") == str(
        rollout.termination_grace_period_seconds - rollout.pre_stop_sleep_seconds - DRAIN_MARGIN_SECONDS
    )
    longer = config.model_copy(
        update={"rollout": rollout.model_copy(update={"termination_grace_period_seconds": 300})}
    )
    assert drain_seconds(longer) == 300 - rollout.pre_stop_sleep_seconds - DRAIN_MARGIN_SECONDS
    assert _flag(vllm_args(longer), "--shutdown-timeout") == str(drain_seconds(longer))


def test_shutdown_timeout_is_managed() -> None:
    raw = {
        "model": {"id": "m"},
        "engine": {"max_model_len": 1024, "extra_args": ["--shutdown-timeout=5"]},
        "gpu": {"memory_gib": 80},
    }
    with pytest.raises(ConfigError, match=r"--shutdown-timeout .*is set from the typed config"):
        parse_stack_config(raw, source="Pulumi.bad.yaml (stack bad)")


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_every_cache_and_home_is_on_a_writable_volume(stack: str) -> None:
    config = example_config(stack)
    body = deployment(config)
    container = body["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = [Path(m["mountPath"]) for m in container["volumeMounts"]]
    # a uid without a passwd entry: torch's getpass.getuser() reads these before getpwuid()
    assert env["USER"]
    assert env["LOGNAME"]
    for name in (
        "HOME",
        "HF_HOME",
        "XDG_CACHE_HOME",
        "XDG_CONFIG_HOME",
        "VLLM_CACHE_ROOT",
        "TORCHINDUCTOR_CACHE_DIR",
        "TRITON_CACHE_DIR",
    ):
        path = Path(str(env[name]))
        assert any(path == m or m in path.parents for m in mounts), (name, path, mounts)
    assert len(env) == len(container["env"]), "an env name is set twice"


# ------------------------------------------------------------------------------------------------ lint


def _bodies(stack: str) -> list[dict[str, Any]]:
    return copy.deepcopy([m.body for m in example_plan(stack).manifests])


def _deployment(bodies: list[dict[str, Any]]) -> dict[str, Any]:
    return next(b for b in bodies if b["kind"] == "Deployment")


def _container(body: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = body["spec"]["template"]["spec"]["containers"][0]
    return container


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_lint_drain_passes_the_example_stacks(stack: str) -> None:
    findings = [f for f in lint(_bodies(stack)) if f.check == "drain"]
    assert [f.status for f in findings] == ["ok"]
    assert "--shutdown-timeout 90 s" in findings[0].message


def test_lint_fails_without_shutdown_timeout() -> None:
    bodies = _bodies("prod")
    args = _container(_deployment(bodies))["args"]
    i = args.index("--shutdown-timeout")
    del args[i : i + 2]
    drain = [f for f in failed(lint(bodies)) if f.check == "drain"]
    assert len(drain) == 1
    assert "aborts every request in flight" in drain[0].message
    assert "--shutdown-timeout 90" in drain[0].message


def test_lint_fails_when_the_kubelet_kills_mid_drain() -> None:
    body = _deployment(_bodies("prod"))
    args = _container(body)["args"]
    args[args.index("--shutdown-timeout") + 1] = "120"
    findings = failed(check_drain(body, _container(body)))
    assert len(findings) == 1
    assert "kills vLLM mid-drain" in findings[0].message


def test_lint_fails_when_the_grace_period_leaves_no_time_to_drain() -> None:
    body = _deployment(_bodies("prod"))
    body["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 45
    messages = [f.message for f in failed(check_drain(body, _container(body)))]
    assert any("leaves vLLM 5 s to drain" in m for m in messages), messages
    assert any("kills vLLM mid-drain" in m for m in messages), messages


def test_prestop_sleep_is_read_from_exec_or_native_sleep() -> None:
    assert (
        pre_stop_sleep_seconds(
            {"lifecycle": {"preStop": {"exec": {"command": ["/bin/sh", "-c", "sleep 30"]}}}}
        )
        == 30
    )
    assert pre_stop_sleep_seconds({"lifecycle": {"preStop": {"sleep": {"seconds": 12}}}}) == 12
    assert pre_stop_sleep_seconds({}) == 0
