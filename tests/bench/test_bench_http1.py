"""bench.http1: the streaming client against scripted raw HTTP servers (framing, reuse, faults)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bench.http1 import Http1Pool, HttpStreamError, StreamResponse

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


def run_against(
    script: Script, client: Callable[[Http1Pool], Awaitable[Any]], **pool_kw: float
) -> tuple[Any, int]:
    """Serve ``script`` on a free port, run ``client`` with a pool on it, return the client's result."""

    async def main() -> tuple[Any, int]:
        connections: list[int] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.append(1)
            try:
                await script(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = Http1Pool(
            f"http://127.0.0.1:{port}",
            limit=8,
            connect_s=float(pool_kw.get("connect_s", 2.0)),
            read_s=float(pool_kw.get("read_s", 2.0)),
        )
        try:
            result = await client(pool)
        finally:
            pool.close()
            server.close()
            await server.wait_closed()
        return (result, len(connections))

    return asyncio.run(main())


def chunked(*payloads: bytes) -> bytes:
    return b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in payloads) + b"0\r\n\r\n"


HEAD_CHUNKED = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n"
)


async def collect(pool: Http1Pool, n: int = 1) -> list[tuple[StreamResponse, bytes]]:
    out = []
    for _ in range(n):
        parts: list[bytes] = []
        resp = await pool.post_stream("/v1/completions", b'{"x":1}', lambda b, _t, sink=parts: sink.append(b))
        out.append((resp, b"".join(parts)))
    return out


def sender(raw: bytes, sizes: list[int], requests: int = 1) -> Script:
    """Answer ``requests`` requests on one connection with ``raw``, written in pieces of ``sizes``."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(requests):
            await read_request(reader)
            pos = 0
            for size in [*sizes, len(raw)]:
                if pos >= len(raw):
                    break
                writer.write(raw[pos : pos + size])
                await writer.drain()
                await asyncio.sleep(0.001)
                pos += size

    return script


PAYLOADS = [b'data: {"a":%d}\n\n' % i for i in range(50)]


@pytest.mark.parametrize("piece", [1, 2, 3, 5, 7, 13, 64, 4096])
def test_chunked_body_survives_any_read_size(piece: int) -> None:
    raw = HEAD_CHUNKED + chunked(*PAYLOADS)
    result, conns = run_against(sender(raw, [piece] * len(raw)), collect)
    ((resp, body),) = result
    assert resp.status == 200
    assert resp.content_type == "text/event-stream"
    assert body == b"".join(PAYLOADS)
    assert conns == 1


def test_chunk_extensions_trailers_and_a_large_chunk() -> None:
    big = b"x" * 200_000
    raw = (
        HEAD_CHUNKED
        + b"5;ext=1\r\nhello\r\n"
        + f"{len(big):x}\r\n".encode()
        + big
        + b"\r\n0\r\nx-trailer: yes\r\n\r\n"
    )
    result, _ = run_against(sender(raw, [1000] * 300), collect)
    ((_resp, body),) = result
    assert body == b"hello" + big


def test_keep_alive_reuses_the_connection() -> None:
    raw = HEAD_CHUNKED + chunked(b"data: 1\n\n")
    result, conns = run_against(sender(raw, [len(raw)], requests=3), lambda p: collect(p, 3))
    assert [b for _, b in result] == [b"data: 1\n\n"] * 3
    assert conns == 1


def test_content_length_and_error_status() -> None:
    body = b'{"error":{"message":"bad prompt"}}'
    raw = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )
    result, _ = run_against(sender(raw, [10] * 10), collect)
    ((resp, sunk),) = result
    assert resp.status == 400
    assert resp.error_body == body
    assert sunk == b""  # error bodies never reach the SSE sink


def test_close_delimited_body() -> None:
    raw = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: 1\n\ndata: 2\n\n"
    result, _ = run_against(sender(raw, [5] * 20), collect)
    ((_resp, body),) = result
    assert body == b"data: 1\n\ndata: 2\n\n"


def test_interim_100_continue_is_skipped() -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\n" + HEAD_CHUNKED + chunked(b"data: 1\n\n")
    result, _ = run_against(sender(raw, [3] * 100), collect)
    assert result[0][0].status == 200


async def expect_error(pool: Http1Pool) -> tuple[str, str, float]:
    start = time.perf_counter()
    with pytest.raises(HttpStreamError) as info:
        await collect(pool)
    return info.value.kind, str(info.value), time.perf_counter() - start


def test_body_cut_mid_chunk_is_truncated() -> None:
    raw = HEAD_CHUNKED + chunked(*PAYLOADS)
    (kind, message, _), _ = run_against(sender(raw[:-100], [50] * 100), expect_error)
    assert kind == "truncated"
    assert "closed the connection in the response body" in message


def test_server_that_never_answers_times_out_on_read_s() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(30)

    (kind, _message, took), _ = run_against(silent, expect_error, read_s=0.5)
    assert kind == "timeout"
    assert 0.4 < took < 3


def test_stream_that_stalls_times_out() -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(HEAD_CHUNKED + b"9\r\ndata: 1\n\n\r\n")
        await writer.drain()
        await asyncio.sleep(30)

    (kind, _, took), _ = run_against(stall, expect_error, read_s=0.5)
    assert kind == "timeout"
    assert took < 3


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", "status line"),
        (HEAD_CHUNKED + b"zz\r\nabc\r\n", "bad chunk size"),
        (HEAD_CHUNKED + b"3\r\nabcXY0\r\n\r\n", "missing CRLF"),
    ],
)
def test_malformed_responses(raw: bytes, why: str) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(raw)
        await writer.drain()
        await asyncio.sleep(5)

    (kind, message, _), _ = run_against(script, expect_error)
    assert kind == "malformed"
    assert why in message


def test_connection_refused(closed_port: int) -> None:
    async def main() -> HttpStreamError:
        pool = Http1Pool(f"http://127.0.0.1:{closed_port}", limit=2, connect_s=2, read_s=2)
        try:
            await pool.post_stream("/x", b"{}", lambda b, t: None)
        except HttpStreamError as exc:
            return exc
        finally:
            pool.close()
        raise AssertionError("no error")

    exc = asyncio.run(main())
    assert exc.kind == "connect"


def test_stale_keep_alive_connection_is_retried_once() -> None:
    raw = HEAD_CHUNKED + chunked(b"data: 1\n\n")

    async def answer_once_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(raw)
        await writer.drain()
        await asyncio.sleep(0.05)  # then close: the pooled connection goes stale

    result, conns = run_against(answer_once_then_close, lambda p: collect(p, 2))
    assert [b for _, b in result] == [b"data: 1\n\n"] * 2
    assert conns == 2
