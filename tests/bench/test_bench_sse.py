"""bench.sse: event counting on raw bytes, however the stream is cut into reads, and stream faults."""

from __future__ import annotations

import json
import random

import pytest

from kvstack.bench.sse import SseTally


def vllm_stream(tokens: int, *, usage: bool = True, done: bool = True, chat: bool = False) -> bytes:
    """A body shaped like vLLM 0.32's /v1/completions (or chat) stream."""
    out = []
    for i in range(tokens):
        if chat:
            choice = {"index": 0, "delta": {"content": f" w{i}"}, "finish_reason": None}
        else:
            choice = {
                "index": 0,
                "text": f" w{i}",
                "logprobs": None,
                "finish_reason": None,
                "stop_reason": None,
            }
        event = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m", "choices": [choice]}
        out.append(b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n")
    if usage:
        u = {"prompt_tokens": 5, "total_tokens": 5 + tokens, "completion_tokens": tokens}
        last = {"id": "cmpl-1", "object": "text_completion", "choices": [], "usage": u}
        out.append(b"data: " + json.dumps(last).encode() + b"\n\n")
    if done:
        out.append(b"data: [DONE]\n\n")
    return b"".join(out)


def feed_in_pieces(body: bytes, cuts: list[int], parse_all: bool = False) -> SseTally:
    tally = SseTally(parse_all)
    prev = 0
    for t, cut in enumerate([*sorted(cuts), len(body)]):
        tally.feed(body[prev:cut], float(t))
        prev = cut
    return tally


def test_one_read_per_event_like_a_real_decode() -> None:
    body = vllm_stream(8)
    events = [e + b"\n\n" for e in body.split(b"\n\n") if e]
    tally = SseTally()
    for t, ev in enumerate(events):
        tally.feed(ev, float(t))
    s = tally.finish()
    assert s.error is None
    assert s.content_events == 8
    assert s.usage == {"prompt_tokens": 5, "total_tokens": 13, "completion_tokens": 8}
    assert s.first_event_time == 0.0
    assert s.last_event_time == 7.0  # the usage chunk and [DONE] are not tokens
    assert s.itl == [1.0] * 7


@pytest.mark.parametrize("seed", range(25))
def test_any_split_counts_the_same(seed: int) -> None:
    body = vllm_stream(40)
    rng = random.Random(seed)
    cuts = rng.sample(range(1, len(body)), rng.randint(1, 60))
    s = feed_in_pieces(body, cuts).finish()
    assert s.error is None, s.error
    assert s.content_events == 40
    assert len(s.itl) == 39  # every token timed
    assert s.usage is not None
    assert s.usage["completion_tokens"] == 40


def test_every_byte_its_own_read() -> None:
    body = vllm_stream(5)
    s = feed_in_pieces(body, list(range(1, len(body))), parse_all=True).finish()
    assert s.error is None
    assert s.content_events == 5
    assert s.text == " w0 w1 w2 w3 w4"


def test_parse_all_collects_chat_deltas() -> None:
    s = feed_in_pieces(vllm_stream(3, chat=True), [], parse_all=True).finish()
    assert s.text == " w0 w1 w2"


def test_events_in_one_read_share_its_time() -> None:
    s = feed_in_pieces(vllm_stream(4), []).finish()
    assert s.content_events == 4
    assert s.itl == [0.0, 0.0, 0.0]


def test_crlf_line_endings_and_comments() -> None:
    body = b": ping\r\n\r\n" + vllm_stream(3).replace(b"\n", b"\r\n")
    s = feed_in_pieces(body, [7, 8, 9, 100]).finish()
    assert s.error is None
    assert s.content_events == 3


def test_missing_done_is_truncated() -> None:
    s = feed_in_pieces(vllm_stream(4, done=False), [30]).finish()
    assert s.error_kind == "truncated"
    assert "[DONE]" in (s.error or "")


def test_body_ending_inside_an_event_is_truncated() -> None:
    body = vllm_stream(4)
    s = feed_in_pieces(body[:-20], []).finish()
    assert s.error_kind == "truncated"


def test_missing_usage() -> None:
    s = feed_in_pieces(vllm_stream(4, usage=False), []).finish()
    assert s.error_kind == "no_usage"


def test_invalid_json_in_final_chunk() -> None:
    body = vllm_stream(3, usage=False, done=False) + b'data: {"usage": {"completion_tok\n\ndata: [DONE]\n\n'
    s = feed_in_pieces(body, []).finish()
    assert s.error_kind == "malformed"
    assert "final event" in (s.error or "")


def test_invalid_json_in_first_event() -> None:
    body = b"data: {not json\n\n" + vllm_stream(3)
    s = feed_in_pieces(body, []).finish()
    assert s.error_kind == "malformed"
    assert "first event" in (s.error or "")


def test_invalid_json_in_the_middle_needs_parse_all() -> None:
    good = vllm_stream(4)
    events = good.split(b"\n\n")
    events[2] = b"data: {oops"
    body = b"\n\n".join(events)
    assert feed_in_pieces(body, [], parse_all=False).finish().error is None  # fast mode: framing only
    strict = feed_in_pieces(body, [], parse_all=True).finish()
    assert strict.error_kind == "malformed"


def test_error_event_mid_stream() -> None:
    err = b'data: {"error": {"message": "EngineDeadError", "type": "InternalServerError", "code": 500}}\n\n'
    body = vllm_stream(2, usage=False, done=False) + err + b"data: [DONE]\n\n"
    s = feed_in_pieces(body, [40]).finish()
    assert s.error_kind == "server_error"
    assert "EngineDeadError" in (s.error or "")


def test_empty_body() -> None:
    s = SseTally().finish()
    assert s.error_kind == "truncated"
    assert s.content_events == 0
