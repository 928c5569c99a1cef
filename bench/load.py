"""Load generation: a list of streamed requests with at most N in flight (a semaphore caps them), or a
closed-loop phase sized by time and requests (``ClosedLoop``, ``run_closed_loop``).

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
    headers: dict[str, str] | None = None  # per-request headers (a session id for a router)


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
    send_offsets: Sequence[float] | None = None,
) -> BatchResult:
    """Run ``requests`` with at most ``concurrency`` in flight; outcomes keep the order of ``requests``.

    With ``send_offsets`` (open loop, ``bench.arrivals``), request ``i`` is not sent before
    ``send_offsets[i]`` seconds after the start, whatever is in flight (give ``concurrency`` = the number
    of requests for a pure open loop). Raises ``EndpointError`` when the endpoint is declared down, or
    when every request failed.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    if send_offsets is not None and len(send_offsets) != len(requests):
        raise ValueError("send_offsets must give one offset per request")
    sem = asyncio.Semaphore(concurrency)
    outcomes: list[RequestOutcome | None] = [None] * len(requests)
    down = asyncio.Event()

    async def one(i: int, req: StreamRequest) -> None:
        if send_offsets is not None:
            await asyncio.sleep(max(0.0, start + send_offsets[i] - time.perf_counter()))
        async with sem:
            if down.is_set():
                return
            out = await client.stream(
                req.path, req.payload, req.phase, parse_all=req.parse_all, headers=req.headers
            )
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


@dataclass(frozen=True, slots=True)
class ClosedLoop:
    """A load shape: ``concurrency`` requests always in flight (a new one starts when one ends) until the
    phase has lasted ``min_duration_s`` and started at least ``min_requests``; then the ones in flight
    finish. (An open-loop shape sends at a rate instead, whatever the answers.)"""

    concurrency: int
    min_requests: int
    min_duration_s: float = 0.0

    def should_stop(self, started: int, elapsed_s: float) -> bool:
        """Pure: no new request once both floors are met."""
        return started >= self.min_requests and elapsed_s >= self.min_duration_s


async def run_closed_loop(
    client: EndpointClient,
    shape: ClosedLoop,
    make_request: Callable[[int], StreamRequest],
    on_done: Callable[[RequestOutcome], None] | None = None,
) -> BatchResult:
    """Run ``shape``: ``make_request(i)`` builds the i-th request. The first wave is released together.

    Raises ``EndpointError`` when the endpoint is declared down, or when every request failed.
    """
    if shape.concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    outcomes: list[RequestOutcome] = []
    started_count = 0
    start = time.perf_counter()

    async def worker() -> None:
        nonlocal started_count
        while not client.endpoint_down and not shape.should_stop(started_count, time.perf_counter() - start):
            index = started_count
            started_count += 1
            req = make_request(index)
            out = await client.stream(
                req.path, req.payload, req.phase, parse_all=req.parse_all, headers=req.headers
            )
            outcomes.append(out)
            if on_done is not None:
                on_done(out)

    tasks = [asyncio.create_task(worker()) for _ in range(shape.concurrency)]
    try:
        pending: set[asyncio.Task[None]] = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                if exc is not None:
                    raise exc
            if client.endpoint_down:
                break
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    wall = time.perf_counter() - start
    if client.endpoint_down:
        raise EndpointError(f"endpoint down: {client.down_reason}", outcomes)
    if outcomes and not any(o.ok for o in outcomes):
        first = outcomes[0]
        raise EndpointError(
            f"every request of phase '{first.phase}' failed; first error: {first.error}", outcomes
        )
    return BatchResult(outcomes=outcomes, wall_s=wall, concurrency=shape.concurrency)
