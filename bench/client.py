"""The HTTP client of ``kvstack verify``: timeouts and pool size set on purpose, errors recorded.

The per-chunk cost of the client decides whether a benchmark measures the server or itself (an httpx
client on its default transport under-reported an H100 by 47% at concurrency 128). Streamed completions
therefore go through ``bench.http1`` (an asyncio protocol that de-chunks each socket read in one pass)
into ``bench.sse.SseTally``, which timestamps events on the raw bytes; docs/bench-client.md has the
figures. Small JSON requests (discovery, /tokenize, /metrics) and, when a proxy applies or
``transport="aiohttp"`` is asked for, the streams too, go through one aiohttp session. Nothing beyond
aiohttp is needed, so the bench runs on a bare GPU image.

Timeouts: ``connect_s`` for the TCP connect, ``read_s`` for the longest silence while a response is awaited
or streamed (catches a server that accepts and never answers), ``request_s`` for one request end to end.
The pools are sized to the largest concurrency of the run (aiohttp's default of 100 would queue requests
silently at concurrency 128), with no per-host cap.

Streaming requests never raise (except cancellation): every failure is recorded in the returned
``RequestOutcome``. The probes (``get_json`` and friends) raise ``EndpointError`` with a message fit for a
CD log, because without them the run cannot be made.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bench.http1 import Http1Pool, HttpStreamError, StreamResponse
from bench.sse import SseTally

# failure kinds that mean the endpoint is gone rather than that one request went wrong
FATAL_KINDS = frozenset({"connect", "timeout"})


class EndpointError(Exception):
    """The endpoint cannot be used: unreachable, failing, or not answering in time.

    ``outcomes`` carries the requests of the interrupted phase that did finish, for the report.
    """

    def __init__(self, message: str, outcomes: list[RequestOutcome] | None = None) -> None:
        super().__init__(message)
        self.outcomes: list[RequestOutcome] = outcomes or []


@dataclass(slots=True)
class RequestOutcome:
    """One streamed request, successful or not. Times are ``time.perf_counter()`` seconds."""

    phase: str
    ok: bool = False
    start: float = 0.0
    end: float = 0.0
    status: int | None = None
    ttft: float | None = None
    e2e: float | None = None  # send -> last token event (as vllm bench serve's "latency")
    itl: list[float] = field(default_factory=list)
    events: int = 0
    output_tokens: int | None = None  # from the server's usage chunk
    prompt_tokens: int | None = None
    text: str | None = None
    error: str | None = None
    error_kind: str | None = None

    @property
    def tpot(self) -> float | None:
        """Mean time per output token after the first."""
        if self.ttft is None or self.e2e is None or not self.output_tokens or self.output_tokens < 2:
            return None
        return (self.e2e - self.ttft) / (self.output_tokens - 1)


def _short_body(body: bytes) -> str:
    """The error message of a vLLM/OpenAI error body, or the start of the body."""
    try:
        obj = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        return text[:300] or "(empty body)"
    if isinstance(obj, dict):
        err = obj.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
        if obj.get("message"):
            return str(obj["message"])[:300]
        if isinstance(err, str):
            return err[:300]
    return json.dumps(obj)[:300]


class EndpointClient:
    """One session against one vLLM server. Use as ``async with EndpointClient(...) as client``."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        connect_s: float = 10.0,
        read_s: float = 60.0,
        request_s: float = 300.0,
        probe_s: float = 15.0,
        connection_limit: int = 64,
        trust_env: bool = True,
        parse_every_event: bool = False,
        abort_after_consecutive_failures: int = 3,
        transport: str = "auto",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._connect_s = connect_s
        self._read_s = read_s
        self._request_s = request_s
        self._probe_s = probe_s
        self._limit = connection_limit
        self._trust_env = trust_env
        self.parse_every_event = parse_every_event
        self._abort_after = abort_after_consecutive_failures
        self._session: aiohttp.ClientSession | None = None
        self._fast: Http1Pool | None = None
        self._transport = transport
        self.consecutive_failures = 0
        self.down_reason: str | None = None

    async def __aenter__(self) -> EndpointClient:
        connector = aiohttp.TCPConnector(
            limit=self._limit, limit_per_host=0, keepalive_timeout=60, ttl_dns_cache=300
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=self._headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_s, sock_read=self._read_s),
            trust_env=self._trust_env,
        )
        if self._transport == "auto" and not self._proxied():
            self._fast = Http1Pool(
                self.base_url,
                limit=self._limit,
                connect_s=self._connect_s,
                read_s=self._read_s,
                headers=self._headers,
            )
        return self

    def _proxied(self) -> bool:
        """Whether the environment routes this origin through a proxy (only aiohttp handles proxies)."""
        if not self._trust_env:
            return False
        parts = urlsplit(self.base_url)
        proxies = urllib.request.getproxies_environment()
        if parts.scheme not in proxies:
            return False
        return not urllib.request.proxy_bypass(parts.hostname or "")

    @property
    def stream_transport(self) -> str:
        return "http1" if self._fast is not None else "aiohttp"

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fast is not None:
            self._fast.close()
            self._fast = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("EndpointClient used outside 'async with'")
        return self._session

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"

    # ---- probes: small JSON/text requests that raise EndpointError ------------------------------------

    async def _probe(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, bytes]:
        url = self.url(path)
        try:
            async with asyncio.timeout(self._probe_s):
                async with self.session.request(method, url, json=body) as resp:
                    return resp.status, await resp.read()
        except aiohttp.ClientConnectorError as exc:
            raise EndpointError(f"cannot connect to {url}: {exc.os_error or exc}") from exc
        except TimeoutError as exc:
            raise EndpointError(f"{method} {url}: no answer within {self._probe_s:g} s") from exc
        except aiohttp.ClientError as exc:
            raise EndpointError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc

    async def get_text(self, path: str) -> str:
        status, body = await self._probe("GET", path, None)
        if status != 200:
            raise EndpointError(f"GET {self.url(path)}: HTTP {status}: {_short_body(body)}")
        return body.decode("utf-8", "replace")

    async def request_json(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        """(status, decoded JSON or None). Raises ``EndpointError`` only when the server cannot be reached."""
        status, raw = await self._probe(method, path, body)
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, None

    async def get_json(self, path: str) -> Any:
        status, raw = await self._probe("GET", path, None)
        if status != 200:
            raise EndpointError(f"GET {self.url(path)}: HTTP {status}: {_short_body(raw)}")
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise EndpointError(f"GET {self.url(path)}: answer is not JSON: {raw[:120]!r}") from exc

    # ---- streamed completions ----------------------------------------------------------------------

    async def stream(
        self, path: str, payload: dict[str, Any], phase: str, *, parse_all: bool | None = None
    ) -> RequestOutcome:
        """POST a streaming request and time every event. Never raises except ``CancelledError``."""
        if self._fast is not None:
            return await self._stream_http1(path, payload, phase, parse_all)
        return await self._stream_aiohttp(path, payload, phase, parse_all)

    async def _stream_http1(
        self, path: str, payload: dict[str, Any], phase: str, parse_all: bool | None
    ) -> RequestOutcome:
        assert self._fast is not None
        out = RequestOutcome(phase=phase)
        tally = SseTally(self.parse_every_event if parse_all is None else parse_all)
        body = json.dumps(payload).encode()
        clock = time.perf_counter
        response: StreamResponse | None = None
        out.start = clock()
        try:
            async with asyncio.timeout(self._request_s):
                response = await self._fast.post_stream(path, body, tally.feed)
        except HttpStreamError as exc:
            out.error_kind = exc.kind
            out.error = str(exc)
        except TimeoutError:
            out.error_kind = "timeout"
            out.error = f"request did not finish within {self._request_s:g} s"
        out.end = clock()
        if response is not None:
            out.status = response.status
            if response.status != 200:
                out.error_kind = "http_5xx" if response.status >= 500 else "http_4xx"
                out.error = f"HTTP {response.status}: {_short_body(response.error_body)}"
            elif response.content_type != "text/event-stream":
                out.error_kind = "malformed"
                out.error = f"expected text/event-stream, got {response.content_type!r}"
            else:
                self._apply_summary(out, tally)
        self._record(out)
        return out

    async def _stream_aiohttp(
        self, path: str, payload: dict[str, Any], phase: str, parse_all: bool | None
    ) -> RequestOutcome:
        out = RequestOutcome(phase=phase)
        tally = SseTally(self.parse_every_event if parse_all is None else parse_all)
        clock = time.perf_counter
        url = self.url(path)
        out.start = clock()
        finished = False
        try:
            async with asyncio.timeout(self._request_s):
                async with self.session.post(url, json=payload) as resp:
                    out.status = resp.status
                    if resp.status != 200:
                        body = await resp.content.read(8192)
                        out.error_kind = "http_5xx" if resp.status >= 500 else "http_4xx"
                        out.error = f"HTTP {resp.status}: {_short_body(body)}"
                    elif resp.content_type != "text/event-stream":
                        out.error_kind = "malformed"
                        out.error = f"expected text/event-stream, got {resp.content_type!r}"
                    else:
                        feed = tally.feed
                        async for chunk in resp.content.iter_any():
                            feed(chunk, clock())
                        finished = True
        except aiohttp.ClientConnectorError as exc:
            out.error_kind = "connect"
            out.error = f"cannot connect to {url}: {exc.os_error or exc}"
        except aiohttp.ServerTimeoutError as exc:
            out.error_kind = "timeout"
            out.error = f"no bytes from the server for {self._read_s:g} s ({exc})"
        except TimeoutError:
            out.error_kind = "timeout"
            out.error = f"request did not finish within {self._request_s:g} s"
        except aiohttp.ClientPayloadError as exc:
            out.error_kind = "truncated"
            out.error = f"response body cut short: {exc}"
        except aiohttp.ServerDisconnectedError as exc:
            out.error_kind = "truncated" if out.status == 200 else "connect"
            out.error = f"server closed the connection: {exc}"
        except (aiohttp.ClientError, OSError) as exc:
            out.error_kind = "transport"
            out.error = f"{type(exc).__name__}: {exc}"
        out.end = clock()
        if finished:
            self._apply_summary(out, tally)
        self._record(out)
        return out

    @staticmethod
    def _apply_summary(out: RequestOutcome, tally: SseTally) -> None:
        summary = tally.finish()
        out.events = summary.content_events
        out.text = summary.text
        if summary.first_event_time is not None:
            out.ttft = summary.first_event_time - out.start
        if summary.last_event_time is not None:
            out.e2e = summary.last_event_time - out.start
        out.itl = summary.itl
        if summary.usage is not None:
            ct = summary.usage.get("completion_tokens")
            pt = summary.usage.get("prompt_tokens")
            out.output_tokens = ct if isinstance(ct, int) else None
            out.prompt_tokens = pt if isinstance(pt, int) else None
        if summary.error is not None:
            out.error_kind = summary.error_kind
            out.error = summary.error
        else:
            out.ok = True

    def _record(self, out: RequestOutcome) -> None:
        if out.ok:
            self.consecutive_failures = 0
            return
        self.consecutive_failures += 1
        if self.down_reason is None and (
            out.error_kind in FATAL_KINDS or self.consecutive_failures >= self._abort_after
        ):
            self.down_reason = f"{out.error} (phase {out.phase})"

    @property
    def endpoint_down(self) -> bool:
        return self.down_reason is not None
