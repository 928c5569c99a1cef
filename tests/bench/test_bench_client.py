"""bench.client: the one httpx client (aiohttp transport) against scripted raw HTTP servers.

Framing read in any piece size, keep-alive reuse and a stale pooled connection, every failure recorded
with its kind (truncated, timeout, connect, malformed, HTTP status), the pool sized to the run, the
headers sent, and proxies from the environment.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from kvstack.bench.client import FATAL_KINDS, EndpointClient, EndpointError, RequestOutcome

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

HEAD_SSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n"
)


def sse_events(tokens: int) -> list[bytes]:
    events = [
        b"data: " + json.dumps({"choices": [{"index": 0, "text": f" w{i}"}]}).encode() + b"\n\n"
        for i in range(tokens)
    ]
    usage = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": tokens}}
    events.append(b"data: " + json.dumps(usage).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


def chunked(*payloads: bytes, end: bool = True) -> bytes:
    body = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in payloads)
    return body + (b"0\r\n\r\n" if end else b"")


SSE_RESPONSE = HEAD_SSE + chunked(*sse_events(20))


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


class Served:
    """What the scripted server saw: one entry per connection, the requests received on each."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[bytes] = []


def run_against(
    script: Script,
    client_fn: Callable[[EndpointClient], Awaitable[Any]],
    *,
    base_url: str | None = None,
    **client_kw: Any,
) -> tuple[Any, Served]:
    """Serve ``script`` on a free port, run ``client_fn`` with an ``EndpointClient`` on it."""

    async def main() -> tuple[Any, Served]:
        served = Served()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            served.connections += 1
            try:
                await script(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=512)
        port = server.sockets[0].getsockname()[1]
        kw: dict[str, Any] = {"connect_s": 2.0, "read_s": 2.0, "request_s": 10.0, "probe_s": 2.0}
        kw.update(client_kw)
        try:
            async with EndpointClient(base_url or f"http://127.0.0.1:{port}", **kw) as client:
                result = await client_fn(client)
        finally:
            server.close()
        return result, served

    return asyncio.run(main())


def answering(raw: bytes, sizes: list[int] | None = None, requests: int = 100) -> Script:
    """Answer up to ``requests`` requests on one connection with ``raw``, written in pieces of ``sizes``."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(requests):
            await read_request(reader)
            pos = 0
            for size in [*(sizes or []), len(raw)]:
                if pos >= len(raw):
                    break
                writer.write(raw[pos : pos + size])
                await writer.drain()
                if sizes:
                    await asyncio.sleep(0.001)
                pos += size

    return script


async def one_stream(client: EndpointClient) -> RequestOutcome:
    return await client.stream("/v1/completions", {"prompt": "x", "stream": True}, "test")


async def streams(client: EndpointClient, n: int) -> list[RequestOutcome]:
    return [await one_stream(client) for _ in range(n)]


@pytest.mark.parametrize("piece", [1, 3, 7, 64, 4096])
def test_chunked_sse_read_in_any_piece_size(piece: int) -> None:
    out, served = run_against(answering(SSE_RESPONSE, [piece] * len(SSE_RESPONSE)), one_stream)
    assert out.ok, out.error
    assert (out.status, out.events, out.output_tokens, out.prompt_tokens) == (200, 20, 20, 3)
    assert len(out.itl) == 19  # every token timed
    assert out.ttft is not None
    assert out.e2e is not None
    assert 0 < out.ttft <= out.e2e
    assert served.connections == 1


def test_parse_every_event_collects_the_text() -> None:
    out, _ = run_against(answering(SSE_RESPONSE), one_stream, parse_every_event=True)
    assert out.ok
    assert out.text == "".join(f" w{i}" for i in range(20))


def test_keep_alive_reuses_the_connection() -> None:
    outs, served = run_against(answering(SSE_RESPONSE), lambda c: streams(c, 3))
    assert all(o.ok for o in outs)
    assert served.connections == 1


def test_stale_pooled_connection_is_retried_once() -> None:
    """The server closes a kept-alive connection as the next request arrives: not a failure."""

    async def answer_once_then_drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(SSE_RESPONSE)
        await writer.drain()
        await read_request(reader)  # the next request on this connection: closed without an answer

    outs, served = run_against(answer_once_then_drop, lambda c: streams(c, 2))
    assert [o.ok for o in outs] == [True, True], [o.error for o in outs]
    assert served.connections == 2


def test_error_status_keeps_the_server_message() -> None:
    body = b'{"error":{"message":"bad prompt","type":"BadRequestError","code":400}}'
    raw = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )
    out, _ = run_against(answering(raw), one_stream)
    assert (out.ok, out.status, out.error_kind, out.error) == (False, 400, "http_4xx", "HTTP 400: bad prompt")


def test_not_an_event_stream_is_malformed() -> None:
    raw = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
    out, _ = run_against(answering(raw), one_stream)
    assert out.error_kind == "malformed"
    assert "expected text/event-stream" in (out.error or "")


def test_body_cut_mid_chunk_is_truncated() -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(SSE_RESPONSE[:-200])
        await writer.drain()
        writer.transport.abort()

    out, _ = run_against(cut, one_stream)
    assert (out.ok, out.status, out.error_kind) == (False, 200, "truncated")
    assert "cut short" in (out.error or "")


def test_clean_end_without_done_is_truncated() -> None:
    raw = HEAD_SSE + chunked(*sse_events(5)[:-2])
    out, _ = run_against(answering(raw), one_stream)
    assert out.error_kind == "truncated"
    assert "[DONE]" in (out.error or "")


@pytest.mark.parametrize(
    "raw",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        HEAD_SSE + b"zz\r\nabc\r\n",
        HEAD_SSE + b"3\r\nabcXY0\r\n\r\n",
    ],
    ids=["status-line", "chunk-size", "chunk-crlf"],
)
def test_malformed_http_is_malformed(raw: bytes) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(raw)
        await writer.drain()
        await asyncio.sleep(5)

    out, _ = run_against(script, one_stream)
    assert out.error_kind == "malformed", out.error


def silent(after: bytes = b"") -> Script:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(after)
        await writer.drain()
        await asyncio.sleep(30)

    return script


@pytest.mark.parametrize(
    "after", [b"", HEAD_SSE + chunked(sse_events(3)[0], end=False)], ids=["head", "body"]
)
def test_silence_times_out_on_read_s(after: bytes) -> None:
    async def timed(client: EndpointClient) -> tuple[RequestOutcome, float]:
        start = time.perf_counter()
        out = await one_stream(client)
        return out, time.perf_counter() - start

    (out, took), _ = run_against(silent(after), timed, read_s=0.5)
    assert (out.error_kind, out.error) == ("timeout", "no bytes from the server for 0.5 s")
    assert 0.4 < took < 3
    assert out.error_kind in FATAL_KINDS  # a server that stops answering ends the run


def test_request_deadline() -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(HEAD_SSE)
        for event in sse_events(1000):
            writer.write(chunked(event, end=False))
            await writer.drain()
            await asyncio.sleep(0.05)

    out, _ = run_against(trickle, one_stream, request_s=0.5)
    assert (out.error_kind, out.error) == ("timeout", "request did not finish within 0.5 s")


def test_connection_refused(closed_port: int) -> None:
    async def both(client: EndpointClient) -> tuple[RequestOutcome, str]:
        out = await one_stream(client)
        with pytest.raises(EndpointError) as info:
            await client.get_json("/v1/models")
        return out, str(info.value)

    (out, probe_error), _ = run_against(answering(b""), both, base_url=f"http://127.0.0.1:{closed_port}")
    assert out.error_kind == "connect"
    assert (out.error or "").startswith("cannot connect to")
    assert probe_error.startswith("cannot connect to")


def test_probe_that_never_answers() -> None:
    async def probe(client: EndpointClient) -> str:
        with pytest.raises(EndpointError) as info:
            await client.get_json("/v1/models")
        return str(info.value)

    message, _ = run_against(silent(), probe, probe_s=0.5)
    assert message.endswith("/v1/models: no answer within 0.5 s")


def test_pool_is_sized_to_the_run() -> None:
    """120 streams in flight at once: aiohttp's default pool of 100 would hold 20 back and deadlock here."""
    n = 120
    arrived = 0
    all_in = asyncio.Event()

    async def wait_for_all(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal arrived
        await read_request(reader)
        arrived += 1
        if arrived == n:
            all_in.set()
        await all_in.wait()
        writer.write(SSE_RESPONSE)
        await writer.drain()

    async def many(client: EndpointClient) -> list[RequestOutcome]:
        return list(await asyncio.gather(*[one_stream(client) for _ in range(n)]))

    outs, served = run_against(wait_for_all, many, connection_limit=n + 8, read_s=5.0)
    assert all(o.ok for o in outs), {o.error for o in outs}
    assert served.connections == n


def recording(seen: list[bytes]) -> Script:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                seen.append(await read_request(reader))
                writer.write(SSE_RESPONSE)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    return script


def test_headers_sent() -> None:
    seen: list[bytes] = []
    out, _ = run_against(recording(seen), one_stream, api_key="sk-test")
    assert out.ok
    head = seen[0].split(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"post /v1/completions http/1.1")
    assert b"\r\nauthorization: bearer sk-test" in head
    assert b"\r\naccept-encoding: identity" in head
    assert b"\r\ncontent-type: application/json" in head
    assert json.loads(seen[0].split(b"\r\n\r\n", 1)[1]) == {"prompt": "x", "stream": True}


@pytest.fixture
def clean_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


def proxied_run(
    env: pytest.MonkeyPatch, closed_port: int, no_proxy: str | None, trust_env: bool
) -> tuple[RequestOutcome, list[bytes], str | None]:
    """The endpoint is a closed port; ``http_proxy`` points at the scripted server."""
    seen: list[bytes] = []

    async def run(client: EndpointClient) -> tuple[RequestOutcome, str | None]:
        return await one_stream(client), client.proxy

    async def main() -> tuple[RequestOutcome, str | None]:
        server = await asyncio.start_server(recording(seen), "127.0.0.1", 0)
        env.setenv("http_proxy", f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        if no_proxy is not None:
            env.setenv("no_proxy", no_proxy)
        try:
            async with EndpointClient(
                f"http://127.0.0.1:{closed_port}", connect_s=2, read_s=2, trust_env=trust_env
            ) as client:
                return await run(client)
        finally:
            server.close()

    out, proxy = asyncio.run(main())
    return out, seen, proxy


def test_proxy_from_the_environment(clean_proxy_env: pytest.MonkeyPatch, closed_port: int) -> None:
    out, seen, proxy = proxied_run(clean_proxy_env, closed_port, None, trust_env=True)
    assert out.ok, out.error
    assert proxy is not None
    assert seen[0].startswith(f"POST http://127.0.0.1:{closed_port}/v1/completions HTTP/1.1".encode())


@pytest.mark.parametrize(("no_proxy", "trust_env"), [("127.0.0.1", True), (None, False)])
def test_no_proxy_and_trust_env_off(
    clean_proxy_env: pytest.MonkeyPatch, closed_port: int, no_proxy: str | None, trust_env: bool
) -> None:
    out, seen, proxy = proxied_run(clean_proxy_env, closed_port, no_proxy, trust_env=trust_env)
    assert proxy is None
    assert out.error_kind == "connect"  # straight to the closed port
    assert seen == []


def test_one_timeout_does_not_declare_the_endpoint_down() -> None:
    """A timeout counts towards abort_after_consecutive_failures; a connect error ends the run at once."""
    client = EndpointClient("http://127.0.0.1:9", abort_after_consecutive_failures=3)

    def failed(kind: str) -> RequestOutcome:
        return RequestOutcome(phase="sweep_c64", error_kind=kind, error=f"{kind} failure")

    client._record(failed("timeout"))
    assert not client.endpoint_down
    client._record(RequestOutcome(phase="sweep_c64", ok=True))
    client._record(failed("timeout"))
    client._record(failed("timeout"))
    assert not client.endpoint_down
    client._record(failed("timeout"))
    assert client.endpoint_down
    assert client.down_reason == "timeout failure (phase sweep_c64)"

    refused = EndpointClient("http://127.0.0.1:9", abort_after_consecutive_failures=3)
    refused._record(failed("connect"))
    assert refused.endpoint_down
