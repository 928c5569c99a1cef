"""Server-sent-event accounting for one streamed completion: pure, no network, no clock.

The client hands every chunk of bytes it reads to ``SseTally.feed`` with the time it arrived. In the
default *fast* mode the tally never decodes JSON while the stream runs: it counts complete events with
``bytes.count`` (an SSE event ends with a blank line; JSON strings escape newlines, so a raw ``\\n\\n``
only ever separates events) and stamps them with the chunk's arrival time. Only the first event and the
last ones are decoded, once the stream has ended: the first to prove the payload is JSON, the last for
the ``usage`` chunk (``stream_options.include_usage``) that gives the token counts, and ``[DONE]``.
That keeps per-token cost to a few C-level scans, which is what lets one core time every token of
hundreds of concurrent streams (docs/bench-client.md).

``parse_all=True`` decodes every event (to collect the generated text, or to check each payload).

A chunk holding an error payload (vLLM streams ``data: {"error": {...}}`` when a request fails after the
headers went out) is decoded in either mode, so a mid-stream failure is never counted as tokens.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

_SEP = b"\n\n"
_DONE = b"[DONE]"


@dataclass(slots=True)
class StreamSummary:
    """What one finished stream amounted to."""

    content_events: int = 0
    first_event_time: float | None = None
    last_event_time: float | None = None
    itl: list[float] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    text: str | None = None
    error: str | None = None
    error_kind: str | None = None  # "malformed" | "truncated" | "server_error" | "no_usage" | "empty"


def _payload(block: bytes) -> bytes | None:
    """The data of one event block, or ``None`` for a comment / an empty block."""
    block = block.strip()
    if not block or block.startswith(b":"):
        return None
    if block.startswith(b"data:"):
        return block[5:].strip()
    # a field other than data (event:, id:, retry:) followed by data lines
    for line in block.split(b"\n"):
        if line.startswith(b"data:"):
            return line[5:].strip()
    return b""


def _error_of(obj: object) -> str | None:
    """The message of an error payload in either of vLLM's shapes, else ``None``."""
    if not isinstance(obj, dict):
        return None
    err = obj.get("error")
    if isinstance(err, dict):
        return str(err.get("message") or err)
    if isinstance(err, str):
        return err
    if obj.get("object") == "error":
        return str(obj.get("message") or obj)
    return None


def _text_of(obj: dict[str, Any]) -> str:
    choices = obj.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return ""
    choice = choices[0]
    text = choice.get("text")
    if isinstance(text, str):
        return text
    delta = choice.get("delta")
    if isinstance(delta, dict) and isinstance(delta.get("content"), str):
        return str(delta["content"])
    return ""


class SseTally:
    """Incremental tally of one SSE response body. ``feed`` per chunk, ``finish`` once at the end."""

    __slots__ = (
        "_counts",
        "_error",
        "_first_block",
        "_last_blocks",
        "_parse_all",
        "_pending",
        "_texts",
        "_times",
    )

    def __init__(self, parse_all: bool = False) -> None:
        self._parse_all = parse_all
        self._pending = b""
        self._times: list[float] = []
        self._counts: list[int] = []
        self._first_block: bytes | None = None
        self._last_blocks: list[bytes] = []
        self._texts: list[str] = []
        self._error: tuple[str, str] | None = None

    def feed(self, chunk: bytes, now: float) -> None:
        data = self._pending + chunk if self._pending else chunk
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        end = data.rfind(_SEP)
        if end < 0:
            self._pending = data
            return
        end += 2
        self._pending = data[end:]
        complete = data[:end]
        # one event per data line: JSON escapes newlines, so "\ndata:" never occurs inside a payload;
        # comments (": ping") and other fields are not counted
        n = complete.count(b"\ndata:") + complete.startswith(b"data:")
        if n == 0:
            return
        self._times.append(now)
        self._counts.append(n)
        if self._first_block is None:
            self._first_block = complete[: complete.find(_SEP)]
        tail = complete[:-2].rsplit(_SEP, 2)
        self._last_blocks = (self._last_blocks + tail)[-3:] if len(tail) < 3 else tail
        if self._parse_all:
            self._parse_blocks(complete)
        elif b'"error' in complete:
            self._scan_errors(complete)

    def _parse_blocks(self, complete: bytes) -> None:
        for block in complete.split(_SEP):
            payload = _payload(block)
            if not payload or payload == _DONE:
                continue
            obj = self._decode(payload)
            if isinstance(obj, dict):
                self._texts.append(_text_of(obj))

    def _scan_errors(self, complete: bytes) -> None:
        for block in complete.split(_SEP):
            payload = _payload(block)
            if payload and b'"error' in payload:
                self._decode(payload)

    def _decode(self, payload: bytes) -> object | None:
        """The event's JSON, or None after recording it as malformed or as a server error event."""
        try:
            obj: object = json.loads(payload)
        except ValueError:
            self._set_error("malformed", f"event is not valid JSON: {payload[:120]!r}")
            return None
        message = _error_of(obj)
        if message is not None:
            self._set_error("server_error", f"server sent an error event: {message}")
            return None
        return obj

    def _set_error(self, kind: str, message: str) -> None:
        if self._error is None:
            self._error = (kind, message)

    def _drop_last_event(self) -> None:
        """Remove the newest event from the timing record (it was [DONE] or a usage-only chunk)."""
        if not self._counts:
            return
        self._counts[-1] -= 1
        if self._counts[-1] == 0:
            self._counts.pop()
            self._times.pop()

    def finish(self) -> StreamSummary:
        """Close the tally at end of body: validate framing, read usage, return the summary."""
        out = StreamSummary()
        if self._parse_all:
            out.text = "".join(self._texts)
        if self._pending.strip():
            self._set_error("truncated", "stream ended inside an event (truncated body)")
        blocks = [p for p in (_payload(b) for b in self._last_blocks) if p is not None]
        if not blocks or blocks[-1] != _DONE:
            self._set_error("truncated", "stream ended without 'data: [DONE]' (truncated)")
        else:
            blocks.pop()
            self._drop_last_event()
        if blocks and blocks[-1] != _DONE:
            last = blocks[-1]
            try:
                obj = json.loads(last)
            except ValueError:
                self._set_error("malformed", f"final event is not valid JSON: {last[:120]!r}")
                obj = None
            if isinstance(obj, dict):
                message = _error_of(obj)
                if message is not None:
                    self._set_error("server_error", f"server sent an error event: {message}")
                usage = obj.get("usage")
                if isinstance(usage, dict):
                    out.usage = usage
                    if not obj.get("choices"):
                        self._drop_last_event()
        if self._first_block is not None and not self._parse_all:
            first = _payload(self._first_block)
            if first and first != _DONE:
                try:
                    obj = json.loads(first)
                except ValueError:
                    self._set_error("malformed", f"first event is not valid JSON: {first[:120]!r}")
                else:
                    message = _error_of(obj)
                    if message is not None:
                        self._set_error("server_error", f"server sent an error event: {message}")
        if out.usage is None:
            self._set_error("no_usage", "stream carried no usage chunk (stream_options.include_usage)")
        out.content_events = sum(self._counts)
        if out.content_events == 0:
            self._set_error("empty", "stream carried no token event")
        if self._times:
            out.first_event_time = self._times[0]
            out.last_event_time = self._times[-1]
            itl = out.itl
            prev = self._times[0]
            itl.extend([0.0] * (self._counts[0] - 1))
            for t, k in zip(self._times[1:], self._counts[1:], strict=True):
                itl.append(t - prev)
                if k > 1:
                    itl.extend([0.0] * (k - 1))
                prev = t
        if self._error is not None:
            out.error_kind, out.error = self._error
        return out
