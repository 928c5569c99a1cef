"""Fixtures of the bench tests: fake vLLM servers in subprocesses, a closed port."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from tests.bench.bench_helpers import FAKE, FakeServer


@pytest.fixture
def fake_vllm() -> Iterator[Callable[..., FakeServer]]:
    """Start fake vLLM servers (``fake_vllm("ok")``); every one is stopped at the end of the test."""
    started: list[subprocess.Popen[str]] = []

    def start(mode: str, *extra: str) -> FakeServer:
        proc = subprocess.Popen(
            [sys.executable, str(FAKE), mode, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise RuntimeError(f"fake vLLM did not start: {line!r} {err[-2000:]}")
        return FakeServer(proc, int(line.split()[1]))

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on (bound once, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port
