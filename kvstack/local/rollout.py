"""`kvstack local rollout`: a rolling update of the local fleet that drops no request.

For each replica in turn, the way a Kubernetes rolling update with a router in front should go:

1. take it out of the router (``POST /remove_worker?url=…``, then ``/list_workers`` must no longer
   list it), so that no new request is sent to it;
2. SIGTERM it: vLLM, started with ``--shutdown-timeout`` > 0, finishes its in-flight streams before it
   exits (with vLLM's default 0 it aborts them: docs/fleet.md);
3. start it again with the same arguments on the same port and wait for ``/health``;
4. put it back (``POST /add_worker?url=…``, which vllm-router answers once the worker is healthy) and
   check ``/list_workers`` lists it.

The router's own health checks are not relied on: they notice a gone replica only after
``--health-failure-threshold`` times ``--health-check-interval-secs``, while requests keep arriving.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx

from kvstack.contract.exposition import ExpositionError, parse_samples, sum_by_name
from kvstack.contract.metrics import REQUESTS_RUNNING
from kvstack.local import stack
from kvstack.local import state as st

# a stream still running when the drain ends is cut; beyond vLLM's own timeout, allow for its exit
EXIT_MARGIN_S = 30.0


@dataclass(frozen=True)
class ReplicaRollout:
    name: str
    url: str
    old_pid: int
    new_pid: int
    in_flight: int  # REQUESTS_RUNNING when SIGTERM was sent: the streams it had to drain
    drained_s: float  # SIGTERM to exit
    restarted_s: float  # exit to healthy again


def _router_call(router_url: str, action: str, worker_url: str) -> None:
    try:
        # add_worker returns once the worker passes the router's health check: allow for that
        response = httpx.post(f"{router_url}/{action}", params={"url": worker_url}, timeout=120.0)
    except httpx.HTTPError as exc:
        raise stack.StackError(f"vllm-router {action} {worker_url} failed: {exc}") from exc
    if response.status_code != 200:
        raise stack.StackError(
            f"vllm-router {action} {worker_url} answered {response.status_code}: {response.text[:200]}"
        )


def requests_running(metrics_text: str) -> int:
    """Requests an engine is running, summed over its engines' series (pure)."""
    return int(sum_by_name(parse_samples(metrics_text), [REQUESTS_RUNNING]).get(REQUESTS_RUNNING, 0.0))


def _in_flight(engine_url: str) -> int:
    try:
        return requests_running(httpx.get(f"{engine_url}/metrics", timeout=10.0).text)
    except (httpx.HTTPError, ExpositionError):
        return -1  # unknown


def _wait_listed(router_url: str, worker_url: str, listed: bool, deadline_s: float = 30.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        workers = stack.router_workers(router_url)
        if workers is not None and (worker_url in workers) == listed:
            return
        time.sleep(0.2)
    state = "list" if listed else "drop"
    raise stack.StackError(f"vllm-router did not {state} {worker_url} within {deadline_s:.0f} s")


def rollout(
    state_dir: Path, say: stack.Say, wait: stack.Wait | None = None, pause_s: float = 1.0
) -> list[ReplicaRollout]:
    """Drain and restart every replica of the fleet recorded in `state_dir`, one at a time."""
    wait = wait or stack.plain_wait(say)
    with stack.exclusive(state_dir):
        state = st.load(state_dir)
        if state is None:
            raise stack.StackError(f"no local stack recorded in {state_dir}", exit_code=3)
        if state.router is None or len(state.engines) < 2:
            raise stack.StackError(
                "a rollout that drops nothing needs a router and at least 2 replicas: start the fleet "
                "with `kvstack local up --replicas 2 --router cache_aware`",
                exit_code=2,
            )
        unhealthy = [h.name for h in stack.health(state) if not (h.running and h.healthy)]
        if unhealthy:
            raise stack.StackError(f"the fleet is not healthy ({', '.join(unhealthy)}); not rolling it")
        router_url = state.router.url
        done: list[ReplicaRollout] = []
        for i, old in enumerate(list(state.engines)):
            say(f"{old.name}: removing {old.url} from the router")
            _router_call(router_url, "remove_worker", old.url)
            _wait_listed(router_url, old.url, listed=False)
            time.sleep(pause_s)  # let a request routed just before the removal reach the engine
            in_flight = _in_flight(old.url)
            say(
                f"{old.name}: SIGTERM with {in_flight} request(s) in flight, draining for up to "
                f"{state.shutdown_timeout_s} s (pid {old.pid})"
            )
            t0 = time.monotonic()
            stack.stop_process(old, grace_s=state.shutdown_timeout_s + EXIT_MARGIN_S, leader_only=True)
            drained = time.monotonic() - t0
            say(f"{old.name}: exited after {drained:.1f} s; starting it again on port {old.port}")
            stack.check_port_free(old.port, old.name)
            rotated = old.log.with_suffix(".previous.log")
            if old.log.exists():
                old.log.replace(rotated)
            new = stack.spawn_replica(
                old.name,
                old.argv,
                old.log,
                old.port,
                url=old.url,
                kv_cache_space_gib=state.kv_cache_space_gib,
                cpus=old.cpus,
            )
            engines = list(state.engines)
            engines[i] = new
            state = state.model_copy(update={"engines": engines})
            st.save(state)
            t1 = time.monotonic()
            wait(f"{new.name} {new.url}/health", 300.0, partial(stack.vllm_healthy, new), stack.died(new))
            say(f"{new.name}: healthy (pid {new.pid}); adding it back to the router")
            _router_call(router_url, "add_worker", new.url)
            _wait_listed(router_url, new.url, listed=True)
            done.append(
                ReplicaRollout(old.name, old.url, old.pid, new.pid, in_flight, drained, time.monotonic() - t1)
            )
        return done
