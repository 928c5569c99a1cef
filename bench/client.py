"""The HTTP client of ``kvstack verify``: one httpx client on the aiohttp transport, limits set on purpose.

The per-chunk cost of the client decides whether a benchmark measures the server or itself (an httpx
client on its default transport under-reported an H100 by 47% at concurrency 128). Every request of a run
(discovery, /tokenize, /metrics and the streamed completions) therefore goes through one
``httpx.AsyncClient`` on ``httpx_aiohttp.AiohttpTransport``, whose HTTP parsing is aiohttp's C parser.
Streams are read as raw bytes and handed to ``bench.sse.SseTally``, which timestamps events on those bytes
and decodes JSON only where it must; docs/bench-client.md has the figures.

How the settings reach the wire (httpx_aiohttp 0.2.0 builds its aiohttp session from them):

- ``httpx.Limits.max_connections`` becomes the aiohttp ``TCPConnector(limit=...)``, sized to the largest
  concurrency of the run (aiohttp's default of 100 would queue requests silently at concurrency 128);
  there is no per-host cap. ``keepalive_expiry`` becomes the connector's ``keepalive_timeout``: 4 s,
  below the 5 s after which vLLM's uvicorn closes idle connections, so a pooled connection is not reused
  just as the server closes it. ``max_keepalive_connections`` has no aiohttp equivalent (every idle
  connection is kept until it expires); it is set to the pool size so the two libraries agree.
- ``httpx.Timeout``: ``connect`` -> aiohttp ``sock_connect`` (the TCP connect); ``read`` ->
  ``sock_read``, the longest silence while a response is awaited or streamed (catches a server that
  accepts and never answers); ``pool`` -> aiohttp ``connect`` (waiting for a pooled connection plus
  DNS and connect; the pool never fills, so in practice DNS + connect). ``write`` is not applied by the
  transport (aiohttp has no write timeout); ``request_s`` bounds each request end to end.
- Proxies: httpx ignores ``HTTP(S)_PROXY`` when a transport is given, and the transport's aiohttp session
  does not read the environment either. So with ``trust_env`` the proxy for the endpoint's origin is
  resolved once from the environment (``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY``, ``NO_PROXY``) and given
  to the transport; it then applies to every request of the run (``metrics_url`` included). ``trust_env``
  also lets ``SSL_CERT_FILE``/``SSL_CERT_DIR`` choose the CA bundle for https endpoints.

Streaming requests never raise (except cancellation): every failure is recorded in the returned
``RequestOutcome``, its kind decided on the aiohttp exception behind the httpx one. A stream whose
connection the server closes or resets before any answer (a pooled connection closed as idle at that
moment) is tried once more on a fresh connection: aiohttp does not retry a POST itself.

The probes (``get_json`` and friends) raise ``EndpointError`` with a message fit for a
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
import httpx
from httpx_aiohttp import AiohttpTransport

from kvstack.bench.sse import SseTally

# failure kinds that can mean the endpoint is gone rather than that one request went wrong
FATAL_KINDS = frozenset({"connect", "timeout"})
# of those, the kinds that end the run at once: nothing accepts a connection any more. A timeout can be one
# slow request among many at high concurrency, so timeouts, like every other failure, end the run only after
# ``abort_after_consecutive_failures`` failures in a row (a hung server times out every request it has).
IMMEDIATELY_FATAL_KINDS = frozenset({"connect"})

KEEPALIVE_EXPIRY_S = 4.0  # below uvicorn's (vLLM's) 5 s keep-alive: the client closes idle connections first
_MAX_ERROR_BODY = 8192


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


def _media_type(response: httpx.Response) -> str:
    media: str = response.headers.get("content-type", "")
    return media.split(";", 1)[0].strip().lower()


def _origin_cause(exc: BaseException) -> BaseException:
    """The aiohttp exception behind an httpx one, else ``exc``.

    httpx_aiohttp 0.2.0 re-raises aiohttp errors as httpx errors ``from`` the original, and its mapping is
    coarse (a refused connection and a server that closed the connection both become
    ``httpx.ConnectTimeout``), so the original decides the kind. aiohttp errors it does not map (a
    response that is not HTTP) come through as they are.
    """
    cause = exc.__cause__
    return cause if isinstance(cause, aiohttp.ClientError) else exc


def _classify(
    exc: Exception, url: str, status: int | None, connect_s: float, read_s: float
) -> tuple[str, str]:
    """(error kind, message) of a transport failure. ``status``: the response's, if its head arrived."""
    cause = _origin_cause(exc)  # decide on the aiohttp original when there is one, never on its mapping
    if isinstance(cause, aiohttp.ClientConnectorError):
        return "connect", f"cannot connect to {url}: {cause.os_error or cause}"
    if isinstance(cause, httpx.ConnectError):
        return "connect", f"cannot connect to {url}: {cause}"
    if isinstance(cause, aiohttp.ConnectionTimeoutError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return "timeout", f"connect to {url} timed out after {connect_s:g} s"
    if isinstance(cause, aiohttp.ServerTimeoutError | httpx.TimeoutException):
        return "timeout", f"no bytes from the server for {read_s:g} s"
    if isinstance(cause, aiohttp.ClientPayloadError | httpx.ReadError):
        return "truncated", f"response body cut short: {cause}"
    if isinstance(cause, aiohttp.ServerDisconnectedError | httpx.RemoteProtocolError):
        if status == 200:
            return "truncated", f"server closed the connection in the response body: {cause}"
        return "connect", f"server closed the connection before answering: {cause}"
    if isinstance(cause, aiohttp.ClientResponseError | httpx.ProtocolError):
        return "malformed", f"not a valid HTTP response: {cause}"
    if isinstance(cause, aiohttp.ClientOSError):  # reset, broken pipe (connect errors are handled above)
        if status == 200:
            return "truncated", f"connection lost in the response body: {cause}"
        return "connect", f"connection lost before the answer: {cause}"
    return "transport", f"{type(cause).__name__}: {cause}"


def _lost_before_answer(exc: Exception) -> bool:
    """The server closed or reset a connection that had been opened: what a stale pooled one does."""
    cause = _origin_cause(exc)
    if isinstance(cause, aiohttp.ClientConnectorError):
        return False
    return isinstance(cause, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError)


def _env_proxy(url: str) -> str | None:
    """The proxy the environment sets for ``url`` (``*_PROXY`` / ``NO_PROXY``), or ``None``."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"  # "host:3128", as curl takes it


class EndpointClient:
    """One client against one vLLM server. Use as ``async with EndpointClient(...) as client``."""

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
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {
            "User-Agent": "kvstack-verify",
            "Accept-Encoding": "identity",  # the transport does not decompress; SSE is read as raw bytes
        }
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._connect_s = connect_s
        self._read_s = read_s
        self._request_s = request_s
        self._probe_s = probe_s
        self._limit = connection_limit
        self._trust_env = trust_env
        self.parse_every_event = parse_every_event
        self._abort_after = abort_after_consecutive_failures
        self._client: httpx.AsyncClient | None = None
        self.proxy: str | None = None
        self.consecutive_failures = 0
        self.down_reason: str | None = None
        self.timeout = httpx.Timeout(connect=connect_s, read=read_s, write=read_s, pool=connect_s)
        self.limits = httpx.Limits(
            max_connections=connection_limit,
            max_keepalive_connections=connection_limit,
            keepalive_expiry=KEEPALIVE_EXPIRY_S,
        )
        self._probe_timeout = httpx.Timeout(connect=connect_s, read=probe_s, write=probe_s, pool=connect_s)

    async def __aenter__(self) -> EndpointClient:
        self.proxy = _env_proxy(self.base_url) if self._trust_env else None
        transport = AiohttpTransport(
            limits=self.limits,
            trust_env=self._trust_env,
            proxy=httpx.Proxy(self.proxy) if self.proxy else None,
        )
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=self.timeout,
            headers=self._headers,
            follow_redirects=True,
            trust_env=self._trust_env,
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("EndpointClient used outside 'async with'")
        return self._client

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"

    # ---- probes: small JSON/text requests that raise EndpointError ------------------------------------

    async def _probe(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, bytes]:
        url = self.url(path)
        try:
            async with asyncio.timeout(self._probe_s):
                response = await self.client.request(method, url, json=body, timeout=self._probe_timeout)
                return response.status_code, response.content
        except (httpx.HTTPError, aiohttp.ClientError) as exc:
            kind, message = _classify(exc, url, None, self._connect_s, self._probe_s)
            if kind == "timeout" and "no bytes" in message:
                message = f"no answer within {self._probe_s:g} s"
            if not message.startswith("cannot connect"):
                message = f"{method} {url}: {message}"
            raise EndpointError(message) from exc
        except TimeoutError as exc:  # asyncio.timeout(probe_s)
            raise EndpointError(f"{method} {url}: no answer within {self._probe_s:g} s") from exc
        except OSError as exc:
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
        self,
        path: str,
        payload: dict[str, Any],
        phase: str,
        *,
        parse_all: bool | None = None,
        headers: dict[str, str] | None = None,
    ) -> RequestOutcome:
        """POST a streaming request and time every event. Never raises except ``CancelledError``.

        Each chunk of the body is handed, as the transport delivers it, to ``SseTally.feed`` with the
        ``time.perf_counter()`` of its arrival; the events it completes share that time.
        """
        parse = self.parse_every_event if parse_all is None else parse_all
        out = RequestOutcome(phase=phase)
        url = self.url(path)
        tally = SseTally(parse)
        result = await self._stream_once(url, payload, out, tally, headers)
        if result == "stale":
            # the server closed the connection before any answer: most likely a pooled connection it had
            # just closed as idle. Once more, on a fresh connection; a server that is gone fails again.
            out = RequestOutcome(phase=phase)
            tally = SseTally(parse)
            result = await self._stream_once(url, payload, out, tally, headers)
        out.end = time.perf_counter()
        if result == "done":
            self._apply_summary(out, tally)
        self._record(out)
        return out

    async def _stream_once(
        self,
        url: str,
        payload: dict[str, Any],
        out: RequestOutcome,
        tally: SseTally,
        headers: dict[str, str] | None = None,
    ) -> str:
        """One attempt; fills ``out`` (status, error) and ``tally``.

        Returns "done" (body read to its end), "failed", or "stale" (closed before any answer).
        """
        clock = time.perf_counter
        client = self.client
        out.start = clock()
        try:
            async with asyncio.timeout(self._request_s):
                async with client.stream("POST", url, json=payload, headers=headers) as response:
                    status = out.status = response.status_code
                    if status != 200:
                        body = b""
                        async for chunk in response.aiter_raw():
                            body += chunk
                            if len(body) >= _MAX_ERROR_BODY:
                                break
                        out.error_kind = "http_5xx" if status >= 500 else "http_4xx"
                        out.error = f"HTTP {status}: {_short_body(body[:_MAX_ERROR_BODY])}"
                        return "failed"
                    if (media := _media_type(response)) != "text/event-stream":
                        out.error_kind = "malformed"
                        out.error = f"expected text/event-stream, got {media!r}"
                        return "failed"
                    feed = tally.feed
                    async for chunk in response.aiter_raw():
                        feed(chunk, clock())
                    return "done"
        except (httpx.HTTPError, aiohttp.ClientError) as exc:
            out.error_kind, out.error = _classify(exc, url, out.status, self._connect_s, self._read_s)
            if out.status is None and _lost_before_answer(exc):
                return "stale"
        except TimeoutError:  # asyncio.timeout(request_s)
            out.error_kind = "timeout"
            out.error = f"request did not finish within {self._request_s:g} s"
        except OSError as exc:
            out.error_kind = "transport"
            out.error = f"{type(exc).__name__}: {exc}"
        return "failed"

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
            out.error_kind in IMMEDIATELY_FATAL_KINDS or self.consecutive_failures >= self._abort_after
        ):
            self.down_reason = f"{out.error} (phase {out.phase})"

    @property
    def endpoint_down(self) -> bool:
        return self.down_reason is not None
