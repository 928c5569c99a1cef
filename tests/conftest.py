"""Fixtures that start the real local stack through the same code as `kvstack local up`.

They never skip: if vLLM or Prometheus cannot start, every test that needs them errors, in CI too.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kvstack.local import stack
from kvstack.local.settings import LocalStackSettings, PrometheusSettings, RouterSettings, VllmSettings
from kvstack.local.state import StackState

# What the live fixtures started, for the closing summary: the CI log shows real servers were used.
_STARTED: list[str] = []


def _say(message: str) -> None:
    print(f"[local stack] {message}")


def start_stack(
    state_dir: Path,
    vllm: VllmSettings,
    prometheus: PrometheusSettings,
    replicas: int = 1,
    router: RouterSettings | None = None,
) -> StackState:
    settings = LocalStackSettings(
        state_dir=state_dir,
        vllm=vllm,
        prometheus=prometheus,
        replicas=replicas,
        router=router or RouterSettings(),
    )
    started_at = time.monotonic()
    state, started = stack.up(settings, say=_say)
    assert started, f"expected a fresh stack in {state_dir}"
    version = httpx.get(f"{state.vllm_url}/version", timeout=10).json().get("version", "?")
    engines = ", ".join(f"{e.url} (pid {e.pid})" for e in state.engines)
    line = f"vLLM {version} at {engines}, prefix caching {'on' if state.enable_prefix_caching else 'off'}"
    if state.router is not None:
        line += f" behind vllm-router ({state.router_policy}) at {state.router.url} (pid {state.router.pid})"
    if state.prometheus is not None:
        line += f" + Prometheus at {state.prometheus.url} (pid {state.prometheus.pid})"
    _STARTED.append(f"{line}, up in {time.monotonic() - started_at:.0f} s")
    return state


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    live = [
        r
        for r in terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", [])
        if "live" in r.keywords and r.when == "call"
    ]
    terminalreporter.section("live stack")
    for line in _STARTED or ["no live server was started in this session"]:
        terminalreporter.write_line(line)
    passed = sum(1 for r in live if r.passed)
    terminalreporter.write_line(f"{len(live)} tests marked live ran against them: {passed} passed")


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackState]:
    """vLLM (SmolLM2-135M-Instruct, prefix caching on) + Prometheus scraping it every 2 s."""
    state_dir = tmp_path_factory.mktemp("local-stack")
    state = start_stack(state_dir, VllmSettings(), PrometheusSettings())
    yield state
    stack.down(state_dir, _say)


@pytest.fixture(scope="session")
def vllm_no_prefix_caching(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackState]:
    """A second real vLLM, started with --no-enable-prefix-caching (no Prometheus)."""
    state_dir = tmp_path_factory.mktemp("vllm-no-prefix-caching")
    state = start_stack(
        state_dir,
        VllmSettings(enable_prefix_caching=False, kv_cache_space_gib=1),
        PrometheusSettings(enabled=False),
    )
    yield state
    stack.down(state_dir, _say)


@pytest.fixture(scope="module")  # module scope: its memory is given back before the fleet's tests
def vllm_few_seqs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackState]:
    """A real vLLM started with a deliberately worse setting, --max-num-seqs 2 (batching collapses): the
    baseline gate must fail against it (no Prometheus)."""
    state_dir = tmp_path_factory.mktemp("vllm-few-seqs")
    state = start_stack(
        state_dir,
        VllmSettings(max_num_seqs=2, kv_cache_space_gib=1),
        PrometheusSettings(enabled=False),
    )
    yield state
    stack.down(state_dir, _say)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackState]:
    """2 vLLM replicas (1 GiB KV each) behind a real vllm-router (cache_aware), Prometheus scraping the
    replicas and the router. Module scope: its ~10 GB are given back when the module's tests end."""
    state_dir = tmp_path_factory.mktemp("fleet")
    state = start_stack(
        state_dir,
        VllmSettings(kv_cache_space_gib=1),
        PrometheusSettings(),
        replicas=2,
        router=RouterSettings(policy="cache_aware"),
    )
    yield state
    stack.down(state_dir, _say)
