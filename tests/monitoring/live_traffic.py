"""Real traffic for the live proofs, shared by the single-engine stack (tests/monitoring/test_live_promql.py)
and the fleet behind vllm-router (tests/local/test_fleet.py): completions repeating a shared prefix,
streamed chats, one request for an unknown model; and polling Prometheus until it has scraped them."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_api_client import PrometheusConnect

POLL_DEADLINE_S = 90.0
POLL_EVERY_S = 0.5
# Longer than two 128-token KV blocks, so that repeats of it hit the prefix cache (hits are whole blocks).
SHARED_PREFIX = " ".join(
    f"Rule {i}: a paged KV cache stores the keys and values of every token in fixed-size blocks, and a "
    f"request that shares a prefix with an earlier one reuses its blocks instead of recomputing them."
    for i in range(12)
)


def scalar(prom: PrometheusConnect, query: str) -> float:
    result = prom.custom_query(query=query)
    return float(result[0]["value"][1]) if result else 0.0


def poll(what: str, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + POLL_DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {POLL_DEADLINE_S:.0f} s waiting for {what}")
        time.sleep(POLL_EVERY_S)


def send_traffic(base_url: str, served_model_name: str) -> int:
    """A warm-up completion, then concurrent completions (repeated prefix) and streaming chats, and one
    request for an unknown model (a 4xx). Returns how many requests the engine served."""
    timeout = httpx.Timeout(120.0, connect=10.0)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    with httpx.Client(base_url=base_url, timeout=timeout, limits=limits) as client:

        def completion(i: int) -> None:
            body = {
                "model": served_model_name,
                "prompt": f"{SHARED_PREFIX}\nQuestion {i}: what does a prefix cache save?",
                "max_tokens": 12,
                "temperature": 0,
                "ignore_eos": True,
            }
            response = client.post("/v1/completions", json=body)
            response.raise_for_status()
            assert response.json()["usage"]["completion_tokens"] == 12

        def streamed_chat(i: int) -> None:
            body = {
                "model": served_model_name,
                "messages": [
                    {"role": "system", "content": SHARED_PREFIX},
                    {"role": "user", "content": f"Say something short about caches ({i})."},
                ],
                "max_tokens": 12,
                "temperature": 0,
                "ignore_eos": True,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            events = 0
            with client.stream("POST", "/v1/chat/completions", json=body) as response:
                response.raise_for_status()
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        events += 1
                        if line == "data: [DONE]":
                            break
            assert events >= 3

        completion(0)  # fills the cache with the shared prefix
        with ThreadPoolExecutor(max_workers=8) as pool:
            jobs = [pool.submit(completion, i) for i in range(1, 7)]
            jobs += [pool.submit(streamed_chat, i) for i in range(3)]
            for job in jobs:
                job.result()
        missing_model = client.post("/v1/completions", json={"model": "no-such-model", "prompt": "x"})
        assert 400 <= missing_model.status_code < 500
    return 1 + 6 + 3


def runbook_promql(runbooks: Path) -> list[tuple[str, str]]:
    """(runbook: line, query) for every line of every ```promql block of the pages in ``runbooks``."""
    queries: list[tuple[str, str]] = []
    for path in sorted(runbooks.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        for block in re.findall(r"```promql\n(.*?)```", text, re.DOTALL):
            for line in block.splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    queries.append((f"{path.name}: {line.strip()[:60]}", line.strip()))
    return queries
