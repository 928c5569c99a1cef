"""Load generation: send a list of streamed requests with at most N in flight (a semaphore caps them).

The first wave is released together so that "all at once" means at once. When the client declares the
endpoint down (a connect error, or ``abort_after_consecutive_failures`` failures in a row, timeouts
included: one slow request among many does not end the run), the requests still in flight are
cancelled and ``EndpointError`` is raised, so a dead or hung server ends the run in bounded time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kvstack.bench.client import EndpointClient, EndpointError, RequestOutcome


@dataclass(frozen=True, slots=True)
class StreamRequest:
    path: str
    payload: dict[str, Any]
    phase: str
    parse_all: bool | None = None


@dataclass(slots=True)
class BatchResult:
    outcomes: list[RequestOutcome]
    wall_s: float
    concurrency: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> list[RequestOutcome]:
        return [o for o in self.outcomes if o.ok]

    @property
    def failed(self) -> list[RequestOutcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def output_tokens(self) -> int:
        return sum(o.output_tokens or 0 for o in self.outcomes if o.ok)

    @property
    def output_throughput(self) -> float:
        """Output tokens per second of wall time, counted from the server's usage chunks."""
        return self.output_tokens / self.wall_s if self.wall_s > 0 else 0.0


def completion_payload(
    model: str,
    prompt: str,
    max_tokens: int,
    *,
    ignore_eos: bool = True,
    temperature: float = 0.0,
    seed: int | None = None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if ignore_eos:
        payload["ignore_eos"] = True
    if seed is not None:
        payload["seed"] = seed
    return payload


async def run_batch(
    client: EndpointClient,
    requests: Sequence[StreamRequest],
    concurrency: int,
    on_done: Callable[[RequestOutcome], None] | None = None,
) -> BatchResult:
    """Run ``requests`` with at most ``concurrency`` in flight; outcomes keep the order of ``requests``.

    Raises ``EndpointError`` when the endpoint is declared down, or when every request failed.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    sem = asyncio.Semaphore(concurrency)
    outcomes: list[RequestOutcome | None] = [None] * len(requests)
    down = asyncio.Event()

    async def one(i: int, req: StreamRequest) -> None:
        async with sem:
            if down.is_set():
                return
            out = await client.stream(req.path, req.payload, req.phase, parse_all=req.parse_all)
        outcomes[i] = out
        if on_done is not None:
            on_done(out)
        if client.endpoint_down:
            down.set()

    start = time.perf_counter()
    tasks = [asyncio.create_task(one(i, r)) for i, r in enumerate(requests)]
    watcher = asyncio.create_task(down.wait())
    try:
        pending: set[asyncio.Task[Any]] = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending | {watcher}, return_when=asyncio.FIRST_COMPLETED)
            pending.discard(watcher)
            if watcher in done:
                break
            for task in done:
                exc = task.exception()
                if exc is not None:
                    raise exc
    finally:
        for task in [*tasks, watcher]:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, watcher, return_exceptions=True)
    wall = time.perf_counter() - start
    finished = [o for o in outcomes if o is not None]
    if client.endpoint_down:
        raise EndpointError(f"endpoint down: {client.down_reason}", finished)
    if finished and not any(o.ok for o in finished):
        first = finished[0]
        raise EndpointError(
            f"every request of phase '{first.phase}' failed; first error: {first.error}", finished
        )
    return BatchResult(outcomes=finished, wall_s=wall, concurrency=concurrency)
