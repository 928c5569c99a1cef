"""A bounded streaming load for the rollout: a few concurrent clients, each sending one streamed
completion after another until told to stop, and an account of every stream.

A stream counts as complete only with ``data: [DONE]``, no error event and a usage chunk reporting
exactly the requested number of tokens (``ignore_eos`` fixes the length). The SSE accounting is the
bench's (:class:`kvstack.bench.sse.SseTally`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx

from kvstack.bench.sse import SseTally


@dataclass(frozen=True)
class StreamOutcome:
    started: float
    ended: float
    completion_tokens: int | None
    error: str | None  # None: complete

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class LoadReport:
    outcomes: list[StreamOutcome] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return len(self.outcomes)

    @property
    def failed(self) -> list[StreamOutcome]:
        return [o for o in self.outcomes if not o.ok]

    def describe(self) -> str:
        lines = [
            f"streams: {self.sent} sent, {self.sent - len(self.failed)} complete, {len(self.failed)} failed"
        ]
        errors: dict[str, int] = {}
        for o in self.failed:
            errors[o.error or "?"] = errors.get(o.error or "?", 0) + 1
        lines += [f"  {n}x {error}" for error, n in sorted(errors.items(), key=lambda kv: -kv[1])]
        return "\n".join(lines)


def judge(tally: SseTally, status: int, body_head: bytes, max_tokens: int) -> tuple[int | None, str | None]:
    """(completion tokens, error) of one finished response: pure."""
    if status != 200:
        return None, f"HTTP {status}: {body_head[:120].decode(errors='replace')}"
    summary = tally.finish()
    tokens = summary.usage.get("completion_tokens") if summary.usage else None
    if summary.error is not None:
        return tokens, summary.error
    if tokens != max_tokens:
        return tokens, f"usage says {tokens} completion tokens, expected {max_tokens}"
    return tokens, None


class StreamingLoad:
    """`streams` threads, each streaming completions of `max_tokens` tokens back to back through
    `endpoint` until :meth:`stop`; use as a context manager around the work to be loaded."""

    def __init__(self, endpoint: str, model: str, streams: int = 4, max_tokens: int = 48) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.model = model
        self.streams = streams
        self.max_tokens = max_tokens
        self.report = LoadReport()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> StreamingLoad:
        for i in range(self.streams):
            t = threading.Thread(target=self._client, args=(i,), name=f"load-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout_s: float = 300.0) -> LoadReport:
        """Send no new request; wait for the ones in flight to end."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout_s)
        return self.report

    def _client(self, worker: int) -> None:
        # explicit timeouts: a drained-away stream must fail the run, not hang it
        timeout = httpx.Timeout(connect=10.0, read=60.0, write=10.0, pool=10.0)
        with httpx.Client(timeout=timeout) as client:
            n = 0
            while not self._stop.is_set():
                n += 1
                outcome = self._one(client, f"[client {worker}, request {n}] Count slowly from one:")
                with self._lock:
                    self.report.outcomes.append(outcome)

    def _one(self, client: httpx.Client, prompt: str) -> StreamOutcome:
        body = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": self.max_tokens,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        started = time.monotonic()
        tally = SseTally()
        try:
            with client.stream("POST", f"{self.endpoint}/v1/completions", json=body) as response:
                head = b""
                for chunk in response.iter_bytes():
                    if response.status_code != 200:
                        head += chunk
                        continue
                    tally.feed(chunk, time.monotonic())
                tokens, error = judge(tally, response.status_code, head, self.max_tokens)
        except httpx.HTTPError as exc:
            tokens, error = None, f"{type(exc).__name__}: {exc}"
        return StreamOutcome(started, time.monotonic(), tokens, error)
