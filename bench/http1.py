"""A minimal HTTP/1.1 client for one job: POST a JSON body, stream the response body into a callback.

Why not aiohttp for this: at hundreds of concurrent SSE streams the client's cost per received chunk decides
whether a benchmark measures the server or itself. aiohttp 3.14's ``StreamReader`` spends several Python
calls per HTTP chunk (one chunk per SSE event in vLLM's responses), which held ``kvstack verify`` to ~1.4x
the ``vllm bench serve`` client on one core (docs/bench-client.md). Here the asyncio protocol de-chunks
every socket read in one pass and hands the bytes, with the read's arrival time, straight to the sink
(``bench.sse.SseTally.feed``): no ``await`` per chunk, no per-event Python call.

Scope, on purpose: http and https, keep-alive connection reuse, chunked / content-length /
close-delimited bodies, 1xx skipped, identity encoding only (we ask for it). No proxies, redirects,
compression or pipelining: ``bench.client.EndpointClient`` uses aiohttp whenever a proxy applies.

Timeouts: ``connect_s`` for the TCP (and TLS) connect; ``read_s`` for the longest silence once the request
is written (the head and every body byte reset it); the caller bounds the whole request.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

BodySink = Callable[[bytes, float], None]

_MAX_HEAD = 64 * 1024
_MAX_ERROR_BODY = 8 * 1024

_HEAD, _CHUNKED, _LENGTH, _CLOSE, _DONE = range(5)


class HttpStreamError(Exception):
    """A request that failed below HTTP status level. ``kind``: connect, timeout, truncated, malformed."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class StreamResponse:
    status: int
    content_type: str  # media type only, lower case
    error_body: bytes  # the first bytes of the body when status != 200


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self, read_s: float) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = True
        self.used = False
        self._read_s = read_s
        self._state = _DONE
        self._buf = b""
        self._remaining = 0
        self._need_crlf = False
        self._trailers = False
        self._sink: BodySink | None = None
        self._future: asyncio.Future[StreamResponse] | None = None
        self._status = 0
        self._content_type = ""
        self._error_body = bytearray()
        self._received_any = False
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # ---- request lifecycle ------------------------------------------------------------------------

    def begin(self, request: bytes, sink: BodySink, future: asyncio.Future[StreamResponse]) -> None:
        assert self.transport is not None
        self.used = True
        self._state = _HEAD
        self._buf = b""
        self._remaining = 0
        self._need_crlf = False
        self._trailers = False
        self._sink = sink
        self._future = future
        self._status = 0
        self._content_type = ""
        self._error_body = bytearray()
        self._received_any = False
        self._last = time.perf_counter()
        self.transport.write(request)
        self._arm(self._read_s)

    @property
    def received_any(self) -> bool:
        return self._received_any

    def _arm(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(delay, self._check_silence)

    def _check_silence(self) -> None:
        self._timer = None
        if self._state == _DONE:
            return
        idle = time.perf_counter() - self._last
        if idle >= self._read_s * 0.999:
            self._fail("timeout", f"no bytes from the server for {self._read_s:g} s")
            self.abort()
        else:
            self._arm(self._read_s - idle)

    def _finish(self) -> None:
        self._state = _DONE
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        fut = self._future
        self._future = None
        self._sink = None
        if fut is not None and not fut.done():
            fut.set_result(StreamResponse(self._status, self._content_type, bytes(self._error_body)))

    def _fail(self, kind: str, message: str) -> None:
        self.reusable = False
        self._state = _DONE
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        fut = self._future
        self._future = None
        self._sink = None
        if fut is not None and not fut.done():
            fut.set_exception(HttpStreamError(kind, message))

    def abort(self) -> None:
        self.reusable = False
        if self.transport is not None and not self.closed:
            self.transport.abort()

    # ---- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        if self._state == _CLOSE:
            self._finish()
        elif self._state != _DONE:
            where = "in the response body" if self._state != _HEAD else "before the response head"
            self._fail("truncated", f"server closed the connection {where}" + (f": {exc}" if exc else ""))

    def eof_received(self) -> bool | None:
        return None  # let the transport close; connection_lost decides

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self._last = now
        self._received_any = True
        state = self._state
        if state == _HEAD:
            data = self._head(data)
            state = self._state
            if not data or state == _DONE:
                return
        if state == _CHUNKED:
            body = self._dechunk(data)
        elif state == _LENGTH:
            if len(data) >= self._remaining:
                if len(data) > self._remaining:
                    self.reusable = False
                body = data[: self._remaining]
                self._remaining = 0
            else:
                body = data
                self._remaining -= len(data)
        elif state == _CLOSE:
            body = data
        else:  # bytes after the end of the response: not ours
            self.reusable = False
            return
        if body:
            if self._status == 200:
                sink = self._sink
                if sink is not None:
                    sink(body, now)
            elif len(self._error_body) < _MAX_ERROR_BODY:
                self._error_body += body[: _MAX_ERROR_BODY - len(self._error_body)]
        if self._state == _LENGTH and self._remaining == 0:
            self._finish()

    # ---- parsing ----------------------------------------------------------------------------------

    def _head(self, data: bytes) -> bytes:
        """Consume the response head; return the body bytes that followed it."""
        buf = self._buf + data if self._buf else data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > _MAX_HEAD:
                    self._fail("malformed", "response head larger than 64 KiB")
                    self.abort()
                    return b""
                self._buf = buf
                return b""
            head, buf = buf[:end], buf[end + 4 :]
            lines = head.split(b"\r\n")
            parts = lines[0].split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
                self._fail("malformed", f"not an HTTP/1.x status line: {lines[0][:80]!r}")
                self.abort()
                return b""
            status = int(parts[1])
            if 100 <= status < 200:
                continue  # 100 Continue and friends: the real head follows
            headers: dict[bytes, bytes] = {}
            for line in lines[1:]:
                name, sep, value = line.partition(b":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            self._buf = b""
            self._status = status
            self._content_type = (
                headers.get(b"content-type", b"").split(b";")[0].strip().lower().decode("latin-1")
            )
            if headers.get(b"connection", b"").lower() == b"close" or parts[0] == b"HTTP/1.0":
                self.reusable = False
            if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
                self._state = _CHUNKED
            elif b"content-length" in headers:
                try:
                    self._remaining = int(headers[b"content-length"])
                except ValueError:
                    self._fail("malformed", "invalid Content-Length")
                    self.abort()
                    return b""
                self._state = _LENGTH
                if self._remaining == 0:
                    self._finish()
                    return b""
            else:
                self._state = _CLOSE
                self.reusable = False
            return buf

    def _dechunk(self, data: bytes) -> bytes:
        """Strip chunked framing from one read; finishes the response at the last chunk.

        One loop iteration per complete chunk (find the size line, slice the data, check the CRLF); an
        incomplete small chunk waits in ``_buf`` for the next read, a large one is passed on in parts.
        """
        if self._buf:
            data = self._buf + data
            self._buf = b""
        pieces: list[bytes] = []
        pos = 0
        n = len(data)
        if self._remaining:  # inside a large chunk passed on in parts
            take = min(self._remaining, n)
            pieces.append(data[:take])
            self._remaining -= take
            pos = take
            if self._remaining:
                return pieces[0]
            self._need_crlf = True
        if self._need_crlf:
            if n - pos < 2:
                self._buf = data[pos:]
                return b"".join(pieces)
            if data[pos : pos + 2] != b"\r\n":
                return self._malformed("missing CRLF after chunk data")
            pos += 2
            self._need_crlf = False
        find = data.find
        append = pieces.append
        while True:
            eol = find(b"\r\n", pos)
            if eol < 0:
                if n - pos > 4096:
                    return self._malformed("chunk-size line too long")
                self._buf = data[pos:]
                break
            if self._trailers:
                if eol == pos:  # the empty line that ends the message
                    if eol + 2 < n:
                        self.reusable = False
                    self._emit_then_finish(b"".join(pieces))
                    return b""
                pos = eol + 2  # a trailer field: ignored
                continue
            try:
                size = int(data[pos:eol], 16)
            except ValueError:
                field = data[pos:eol].split(b";", 1)[0].strip()  # chunk extensions
                try:
                    size = int(field, 16)
                except ValueError:
                    return self._malformed(f"bad chunk size {field[:20]!r}")
            start = eol + 2
            if size == 0:
                self._trailers = True
                pos = start
                continue
            stop = start + size
            if stop + 2 <= n:
                if data[stop : stop + 2] != b"\r\n":
                    return self._malformed("missing CRLF after chunk data")
                append(data[start:stop])
                pos = stop + 2
                continue
            if size <= 65536:  # a small chunk split across reads: wait for the rest
                self._buf = data[pos:]
                break
            append(data[start:n])  # a large chunk: pass on what arrived
            if stop <= n:
                self._need_crlf = True
                self._buf = data[stop:]
            else:
                self._remaining = stop - n
            break
        return b"".join(pieces)

    def _malformed(self, why: str) -> bytes:
        self._fail("malformed", f"chunked body: {why}")
        self.abort()
        return b""

    def _emit_then_finish(self, body: bytes) -> None:
        if body:
            if self._status == 200:
                if self._sink is not None:
                    self._sink(body, self._last)
            elif len(self._error_body) < _MAX_ERROR_BODY:
                self._error_body += body[: _MAX_ERROR_BODY - len(self._error_body)]
        self._finish()


class Http1Pool:
    """Keep-alive connections to one origin, at most ``limit`` at a time."""

    def __init__(
        self,
        base_url: str,
        *,
        limit: int,
        connect_s: float,
        read_s: float,
        headers: dict[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"unsupported URL for the streaming client: {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = (ssl_context or ssl.create_default_context()) if parts.scheme == "https" else None
        self._prefix = parts.path.rstrip("/")
        host_header = self.host if parts.port is None else f"{self.host}:{parts.port}"
        if ":" in self.host and not self.host.startswith("["):
            host_header = f"[{self.host}]" + (f":{parts.port}" if parts.port else "")
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._head_tail = (
            f"Host: {host_header}\r\nUser-Agent: kvstack-verify\r\nAccept: text/event-stream\r\n"
            f"Accept-Encoding: identity\r\nContent-Type: application/json\r\n{extra}"
        )
        self._connect_s = connect_s
        self._read_s = read_s
        self._sem = asyncio.Semaphore(limit)
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_s):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self._read_s),
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl else None,
                )
        except TimeoutError as exc:
            raise HttpStreamError("timeout", f"connect to {self.host}:{self.port} timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            raise HttpStreamError("connect", f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        self._all.add(conn)
        return conn

    def _request_bytes(self, path: str, body: bytes) -> bytes:
        head = f"POST {self._prefix}{path} HTTP/1.1\r\n{self._head_tail}Content-Length: {len(body)}\r\n\r\n"
        return head.encode("latin-1") + body

    async def post_stream(self, path: str, body: bytes, sink: BodySink) -> StreamResponse:
        """POST ``body``; every body read goes to ``sink(bytes, arrival_time)`` while status is 200.

        Raises ``HttpStreamError``. A stale keep-alive connection (closed by the server before any byte
        of the answer) is retried once on a fresh connection.
        """
        request = self._request_bytes(path, body)
        async with self._sem:
            for attempt in range(2):
                conn = None
                while self._idle:
                    candidate = self._idle.pop()
                    if not candidate.closed and candidate.reusable:
                        conn = candidate
                        break
                    self._all.discard(candidate)
                reused = conn is not None
                if conn is None:
                    conn = await self._connect()
                future: asyncio.Future[StreamResponse] = asyncio.get_running_loop().create_future()
                conn.begin(request, sink, future)
                try:
                    response = await future
                except HttpStreamError as exc:
                    self._all.discard(conn)
                    conn.abort()
                    if reused and attempt == 0 and not conn.received_any and exc.kind == "truncated":
                        continue  # the server had closed the idle connection: not a failure of the request
                    raise
                except BaseException:
                    self._all.discard(conn)
                    conn.abort()
                    raise
                if conn.reusable and not conn.closed:
                    self._idle.append(conn)
                else:
                    self._all.discard(conn)
                    conn.abort()
                return response
        raise AssertionError("unreachable")

    def close(self) -> None:
        for conn in list(self._all):
            conn.abort()
        self._all.clear()
        self._idle.clear()
