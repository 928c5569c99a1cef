"""Fixtures that start the real local stack through the same code as `kvstack local up`.

They never skip: if vLLM or Prometheus cannot start, every test that needs them errors, in CI too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kvstack.local import stack
from kvstack.local.settings import LocalStackSettings, PrometheusSettings, VllmSettings
from kvstack.local.state import StackState


def _say(message: str) -> None:
    print(f"[local stack] {message}")


def start_stack(state_dir: Path, vllm: VllmSettings, prometheus: PrometheusSettings) -> StackState:
    settings = LocalStackSettings(state_dir=state_dir, vllm=vllm, prometheus=prometheus)
    state, started = stack.up(settings, say=_say)
    assert started, f"expected a fresh stack in {state_dir}"
    return state


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
