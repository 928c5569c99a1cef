"""The local stack: pure parts directly, lifecycle against real vLLM and Prometheus processes."""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from kvstack.local import stack
from kvstack.local import state as st
from kvstack.local.prometheus_config import prometheus_config
from kvstack.local.settings import LocalStackSettings, PrometheusSettings, VllmSettings


def test_prometheus_config_scrapes_vllm_with_pod_labels() -> None:
    cfg = prometheus_config(["127.0.0.1:8000"], PrometheusSettings(scrape_interval_s=3), ["/x/rules.yaml"])
    assert cfg["global"]["scrape_interval"] == "3s"
    assert cfg["rule_files"] == ["/x/rules.yaml"]
    (job,) = cfg["scrape_configs"]
    (target,) = job["static_configs"]
    assert target["targets"] == ["127.0.0.1:8000"]
    assert set(target["labels"]) == {"namespace", "pod"}


def test_vllm_argv_carries_the_settings(tmp_path: Path) -> None:
    settings = LocalStackSettings(
        state_dir=tmp_path, vllm=VllmSettings(max_model_len=1024, enable_prefix_caching=False)
    )
    argv = stack.vllm_argv(settings, tmp_path / "model", 8123)
    joined = " ".join(argv)
    assert "--host 127.0.0.1" in joined
    assert "--port 8123" in joined
    assert "--max-model-len 1024" in joined
    assert "--no-enable-prefix-caching" in argv
    assert "--enable-prefix-caching" not in argv


def _record(pid: int, ticks: int, tmp_path: Path) -> st.ProcessRecord:
    return st.ProcessRecord(
        name="x", pid=pid, start_ticks=ticks, port=1, url="http://127.0.0.1:1", log=tmp_path / "l", argv=[]
    )


@pytest.mark.parametrize(
    ("replicas", "cpus", "expected"),
    [
        (1, [0, 1], [None]),  # one replica keeps vLLM's own binding: every CPU
        (2, [0, 1], ["0", "1"]),
        (2, [1, 0, 1], ["0", "1"]),
        (2, [0, 1, 2, 3, 4], ["0,1,2", "3,4"]),
        (3, [4, 5, 6, 7, 8, 9, 10], ["4,5,6", "7,8", "9,10"]),
        (3, [0, 1], ["0", "1", "0"]),  # more replicas than CPUs: one each, shared in turn
    ],
)
def test_replicas_get_disjoint_cpus_while_there_are_enough(
    replicas: int, cpus: list[int], expected: list[str | None]
) -> None:
    assert stack.replica_cpus(replicas, cpus) == expected


def test_a_fleet_replica_is_started_bound_to_its_own_cpus() -> None:
    assert stack.vllm_env(1, "2,3")[stack.OMP_BIND_ENV] == "2,3"
    assert stack.vllm_env(1, None).get(stack.OMP_BIND_ENV) == os.environ.get(stack.OMP_BIND_ENV)


def test_a_state_file_records_the_cpus_a_rollout_restarts_a_replica_on(tmp_path: Path) -> None:
    record = _record(1, 1, tmp_path).model_copy(update={"cpus": "1"})
    assert st.ProcessRecord.model_validate_json(record.model_dump_json()).cpus == "1"


def test_a_recycled_pid_is_not_taken_for_ours(tmp_path: Path) -> None:
    ticks = st.process_start_ticks(os.getpid())
    assert ticks is not None
    assert st.is_alive(_record(os.getpid(), ticks, tmp_path))
    assert not st.is_alive(_record(os.getpid(), ticks + 1, tmp_path))
    # a stop on a record whose pid now belongs to another process signals nothing
    assert not stack.stop_process(_record(os.getpid(), ticks + 1, tmp_path), grace_s=0.1)


def test_a_taken_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = LocalStackSettings(state_dir=tmp_path, vllm=VllmSettings(port=port))
        with pytest.raises(stack.PortInUseError) as err:
            stack.up(settings, say=lambda _: None)
    assert err.value.exit_code == 2
    assert str(port) in str(err.value)
    assert st.load(tmp_path) is None


@pytest.mark.live
def test_a_second_up_reuses_a_matching_stack_and_refuses_another(local_stack: st.StackState) -> None:
    same = LocalStackSettings(state_dir=local_stack.state_dir)
    state, started = stack.up(same, say=lambda _: None)
    assert not started
    assert state.vllm.pid == local_stack.vllm.pid
    other = LocalStackSettings(state_dir=local_stack.state_dir, vllm=VllmSettings(max_model_len=1024))
    with pytest.raises(stack.StackError) as err:
        stack.up(other, say=lambda _: None)
    assert err.value.exit_code == 2
    assert "kvstack local down" in str(err.value)


@pytest.mark.live
def test_a_vllm_that_fails_to_start_is_reported_with_its_log_and_cleaned_up(tmp_path: Path) -> None:
    # SmolLM2 allows 8192 positions: vLLM refuses a longer max_model_len at start-up
    settings = LocalStackSettings(
        state_dir=tmp_path,
        vllm=VllmSettings(max_model_len=1_000_000, startup_timeout_s=240),
        prometheus=PrometheusSettings(enabled=False),
    )
    with pytest.raises(stack.StackError) as err:
        stack.up(settings, say=lambda _: None)
    message = str(err.value)
    assert err.value.exit_code == 1
    assert "exited" in message
    assert "max_model_len" in message.lower() or "max-model-len" in message.lower()
    assert st.load(tmp_path) is None


def _kvstack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kvstack.cli", "local", *args],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )


@pytest.mark.live
def test_cli_up_status_down_leaves_none_of_our_processes(tmp_path: Path) -> None:
    state_dir = str(tmp_path / "state")
    up = _kvstack("up", "--no-prometheus", "--kv-cache-gib", "1", "--state-dir", state_dir)
    assert up.returncode == 0, up.stdout + up.stderr
    state = st.load(Path(state_dir))
    assert state is not None
    try:
        assert httpx.get(f"{state.vllm_url}/health", timeout=5).status_code == 200
        status = _kvstack("status", "--state-dir", state_dir)
        assert status.returncode == 0, status.stdout
        assert "KV capacity" in status.stdout
        again = _kvstack("up", "--no-prometheus", "--kv-cache-gib", "1", "--state-dir", state_dir)
        assert again.returncode == 0
        assert "already running" in again.stdout
    finally:
        down = _kvstack("down", "--state-dir", state_dir)
    assert down.returncode == 0
    assert "stopped" in down.stdout
    assert st.process_start_ticks(state.vllm.pid) is None
    with pytest.raises(ProcessLookupError):
        os.killpg(state.vllm.pid, 0)  # the whole group, engine core included, is gone
    gone = _kvstack("status", "--state-dir", state_dir)
    assert gone.returncode == 3


def test_a_second_up_while_the_first_is_starting_is_refused(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    with (tmp_path / ".lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # what a first `up` holds until its stack is healthy
        with pytest.raises(stack.StackError) as err:
            stack.up(LocalStackSettings(state_dir=tmp_path), say=lambda _: None)
    assert err.value.exit_code == 2
    assert "another `kvstack local up`" in str(err.value)
    assert st.load(tmp_path) is None
