"""A small stand-in for a vLLM server, for the bench's fault tests and its fast end-to-end tests.

Run as a script (``python fake_vllm.py MODE [--die-after N]``); it prints ``PORT <n>`` once listening on
127.0.0.1. Modes:

- ``ok``: a toy engine with continuous batching (one decode step gives a token to every running request;
  a step costs a little more per request) and prefix caching (blocks of 16 words, hashed from the first
  word, counted in ``vllm:prefix_cache_*``). Words are tokens.
- ``no-cache``: the same engine with prefix caching off (``--no-enable-prefix-caching``).
- ``replicas``: two such engines behind one port, as a Kubernetes Service with two replicas: completions
  and ``/metrics`` reads go to them in turn, each read showing its own ``process_start_time_seconds``.
- ``http500`` / ``http400``: completions and chat answer with a vLLM-shaped error.
- ``hang``: accepts TCP connections and never answers anything.
- ``hang-completions``: discovery works, completions accept the request and never answer.
- ``malformed``: completion events are not JSON.
- ``malformed-load``: the engine check's requests are fine, later streams start with invalid JSON.
- ``truncated``: streams end cleanly but without ``data: [DONE]`` and without usage.
- ``cut``: streams stop after a few tokens and the connection is dropped mid-body.
- ``--die-after N``: the process exits (as if killed) in the middle of its N-th completion stream.
- ``--hang-request N``: the N-th completion request is accepted and never answered (the others are).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import time
from typing import Any

from aiohttp import web

MODEL = "fake-model"
MAX_MODEL_LEN = 2048
BLOCK = 16
NUM_BLOCKS = 4096
WORDS = ("Paris", "is", "the", "capital", "and", "largest", "city", "of", "France", "with", "museums")


class Engine:
    """Continuous batching and a prefix cache, in toy form (times in seconds)."""

    def __init__(self, caching: bool) -> None:
        self.caching = caching
        self.cache: set[bytes] = set()
        self.queries = 0
        self.hits = 0
        self.generated = 0
        self.prefill_lock = asyncio.Lock()
        self.running: list[asyncio.Queue[int]] = []
        self.wake = asyncio.Event()
        self.per_token_prefill = 0.0005
        self.step_base = 0.003
        self.step_per_request = 0.0003

    def cached_tokens(self, words: list[str]) -> int:
        """Lookup and insert the prompt's full blocks; return the tokens found in the cache."""
        self.queries += len(words)
        if not self.caching:
            return 0
        h = hashlib.sha256()
        hit = 0
        still_hitting = True
        usable = (len(words) - 1) // BLOCK  # the last token is always computed
        for b in range(len(words) // BLOCK):
            h.update(" ".join(words[b * BLOCK : (b + 1) * BLOCK]).encode())
            digest = h.digest()
            if still_hitting and b < usable and digest in self.cache:
                hit += BLOCK
            else:
                still_hitting = False
            self.cache.add(digest)
        self.hits += hit
        return hit

    async def prefill(self, words: list[str]) -> None:
        uncached = len(words) - self.cached_tokens(words)
        async with self.prefill_lock:
            await asyncio.sleep(uncached * self.per_token_prefill)

    async def run(self) -> None:
        while True:
            if not self.running:
                self.wake.clear()
                await self.wake.wait()
            await asyncio.sleep(self.step_base + self.step_per_request * len(self.running))
            for q in list(self.running):
                q.put_nowait(1)

    def join(self) -> asyncio.Queue[int]:
        q: asyncio.Queue[int] = asyncio.Queue()
        self.running.append(q)
        self.wake.set()
        return q

    def leave(self, q: asyncio.Queue[int]) -> None:
        if q in self.running:
            self.running.remove(q)


def metrics_text(engine: Engine, started: float) -> str:
    labels = (
        f'block_size="{BLOCK}",cache_dtype="auto",enable_prefix_caching="{engine.caching}",engine="0",'
        f'kv_cache_max_concurrency="{NUM_BLOCKS * BLOCK / MAX_MODEL_LEN}",kv_cache_memory_bytes="None",'
        f'kv_cache_size_tokens="{NUM_BLOCKS * BLOCK}",num_gpu_blocks="{NUM_BLOCKS}",num_cpu_blocks="None"'
    )
    m = f'engine="0",model_name="{MODEL}"'
    return (
        "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
        "# TYPE process_start_time_seconds gauge\n"
        f"process_start_time_seconds {started!r}\n"
        "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n"
        "# TYPE vllm:cache_config_info gauge\n"
        f"vllm:cache_config_info{{{labels}}} 1.0\n"
        "# HELP vllm:prefix_cache_queries Prefix cache queries, in terms of number of queried tokens.\n"
        "# TYPE vllm:prefix_cache_queries counter\n"
        f"vllm:prefix_cache_queries_total{{{m}}} {float(engine.queries)}\n"
        "# HELP vllm:prefix_cache_hits Prefix cache hits, in terms of number of cached tokens.\n"
        "# TYPE vllm:prefix_cache_hits counter\n"
        f"vllm:prefix_cache_hits_total{{{m}}} {float(engine.hits)}\n"
        "# HELP vllm:generation_tokens Number of generation tokens processed.\n"
        "# TYPE vllm:generation_tokens counter\n"
        f"vllm:generation_tokens_total{{{m}}} {float(engine.generated)}\n"
    )


def error_json(status: int, message: str) -> web.Response:
    kind = "BadRequestError" if status < 500 else "InternalServerError"
    body = {"error": {"message": message, "type": kind, "param": None, "code": status}}
    return web.json_response(body, status=status)


class FakeVllm:
    def __init__(self, mode: str, die_after: int | None, hang_request: int | None = None) -> None:
        self.mode = mode
        self.die_after = die_after
        self.hang_request = hang_request
        replicas = 2 if mode == "replicas" else 1
        self.engines = [Engine(caching=mode != "no-cache") for _ in range(replicas)]
        self.started = [time.time() - 100.0 * r for r in range(replicas)]
        self.generate_calls = 0
        self.metrics_calls = 0

    async def models(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "object": "list",
                "data": [{"id": MODEL, "object": "model", "root": "/fake", "max_model_len": MAX_MODEL_LEN}],
            }
        )

    async def version(self, _: web.Request) -> web.Response:
        return web.json_response({"version": "0.0.0-fake"})

    async def metrics(self, _: web.Request) -> web.Response:
        replica = self.metrics_calls % len(self.engines)
        self.metrics_calls += 1
        return web.Response(
            text=metrics_text(self.engines[replica], self.started[replica]), content_type="text/plain"
        )

    async def tokenize(self, request: web.Request) -> web.Response:
        body = await request.json()
        words = str(body.get("prompt", "")).split()
        return web.json_response(
            {"count": len(words), "max_model_len": MAX_MODEL_LEN, "tokens": list(range(len(words)))}
        )

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def _generate(self, request: web.Request, chat: bool) -> web.StreamResponse:
        body: dict[str, Any] = await request.json()
        self.generate_calls += 1
        number = self.generate_calls
        engine = self.engines[number % len(self.engines)]
        if self.mode == "http500":
            return error_json(500, "EngineCore encountered an issue")
        if self.mode == "http400":
            return error_json(400, "This model's maximum context length is 2048 tokens")
        if self.mode == "hang-completions" or number == self.hang_request:
            await asyncio.sleep(3600)
        prompt = (
            " ".join(str(m.get("content", "")) for m in body.get("messages", []))
            if chat
            else str(body.get("prompt", ""))
        )
        words = prompt.split()
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)
        if len(words) + max_tokens > MAX_MODEL_LEN:
            return error_json(400, f"This model's maximum context length is {MAX_MODEL_LEN} tokens")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await resp.prepare(request)
        await engine.prefill(words)
        queue = engine.join()
        malformed = self.mode == "malformed" or (
            self.mode == "malformed-load" and bool(body.get("ignore_eos"))
        )
        try:
            for i in range(max_tokens):
                await queue.get()
                engine.generated += 1
                if self.die_after is not None and number >= self.die_after and i >= 2:
                    os._exit(1)
                if self.mode == "cut" and i == 3:
                    assert request.transport is not None
                    request.transport.abort()
                    return resp
                word = " " + WORDS[i % len(WORDS)]
                if chat:
                    choice: dict[str, Any] = {"index": 0, "delta": {"content": word}, "finish_reason": None}
                else:
                    choice = {"index": 0, "text": word, "finish_reason": None}
                event = {
                    "id": f"cmpl-{number}",
                    "object": "text_completion",
                    "model": MODEL,
                    "choices": [choice],
                }
                data = "{not json" if malformed else json.dumps(event, separators=(",", ":"))
                await resp.write(f"data: {data}\n\n".encode())
        finally:
            engine.leave(queue)
        if self.mode != "truncated":
            usage = {
                "prompt_tokens": len(words),
                "completion_tokens": max_tokens,
                "total_tokens": len(words) + max_tokens,
            }
            last = {
                "id": f"cmpl-{number}",
                "object": "text_completion",
                "model": MODEL,
                "choices": [],
                "usage": usage,
            }
            await resp.write(f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode())
        await resp.write_eof()
        return resp


async def serve_hang() -> None:
    """Accept connections, read whatever comes, never answer."""
    held: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        while await reader.read(65536):
            pass

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


async def serve(mode: str, die_after: int | None, hang_request: int | None) -> None:
    if mode == "hang":
        await serve_hang()
        return
    fake = FakeVllm(mode, die_after, hang_request)
    app = web.Application()
    app.router.add_get("/v1/models", fake.models)
    app.router.add_get("/version", fake.version)
    app.router.add_get("/metrics", fake.metrics)
    app.router.add_post("/tokenize", fake.tokenize)
    app.router.add_post("/v1/completions", fake.completions)
    app.router.add_post("/v1/chat/completions", fake.chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    assert isinstance(server, asyncio.base_events.Server)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    started = time.monotonic()
    engine_tasks = [asyncio.create_task(engine.run()) for engine in fake.engines]
    try:
        while time.monotonic() - started < 3600:  # a forgotten fake ends by itself
            await asyncio.sleep(1)
    finally:
        for task in engine_tasks:
            task.cancel()
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode")
    parser.add_argument("--die-after", type=int)
    parser.add_argument("--hang-request", type=int)
    args = parser.parse_args()
    asyncio.run(serve(args.mode, args.die_after, args.hang_request))


if __name__ == "__main__":
    main()
