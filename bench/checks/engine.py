"""Engine answers: a completion that is real text, and a chat completion when the model has a template."""

from __future__ import annotations

import re
import time
from typing import Any

from kvstack.bench.checks.context import RunContext
from kvstack.bench.client import RequestOutcome
from kvstack.bench.report import CheckResult, Verdict

NAME = "engine"
TITLE = "Engine answers"

_PERIODIC = re.compile(r"^(.{1,8}?)\1{3,}$", re.DOTALL)


def triviality(text: str) -> str | None:
    """Why ``text`` is not a real answer, or ``None`` when it is non-trivial.

    Trivial: empty, only whitespace, one word repeated, or one short unit repeated ("!!!!", "abab...").
    """
    if text == "":
        return "empty text"
    stripped = text.strip()
    if not stripped:
        return "only whitespace"
    words = stripped.split()
    if len(words) >= 2 and len(set(words)) == 1:
        return f"one token repeated: {words[0]!r} x{len(words)}"
    compact = "".join(words)
    if len(compact) >= 4 and _PERIODIC.match(compact):
        return f"one unit repeated: {compact[:24]!r}"
    return None


def _chat_template_missing(outcome: RequestOutcome) -> bool:
    return outcome.status == 400 and "template" in (outcome.error or "").lower()


async def run(ctx: RunContext) -> CheckResult:
    cfg = ctx.config.engine
    start = time.perf_counter()
    phase = ctx.display.phase("engine answers", 2 if cfg.chat else 1)
    completion = await ctx.client.stream(
        "/v1/completions",
        {
            "model": ctx.model,
            "prompt": cfg.prompt,
            "max_tokens": cfg.max_tokens,
            "temperature": cfg.temperature,
            "seed": cfg.seed,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        "engine",
        parse_all=True,
    )
    ctx.outcomes.append(completion)
    phase.advance()
    figures: dict[str, Any] = {
        "completion": {
            "prompt": cfg.prompt,
            "text": completion.text,
            "output_tokens": completion.output_tokens,
            "ttft_ms": completion.ttft * 1000 if completion.ttft is not None else None,
            "error": completion.error,
        }
    }
    if not completion.ok:
        phase.close("no answer")
        return CheckResult(
            name=NAME,
            title=TITLE,
            verdict=Verdict.ERROR,
            reason=f"the completion request failed: {completion.error}",
            figures=figures,
            duration_s=time.perf_counter() - start,
        )
    problems: list[str] = []
    why = triviality(completion.text or "")
    if why is not None:
        problems.append(f"completion is not real text ({why})")
    chat_note = "chat not checked (disabled)"
    if cfg.chat:
        chat = await ctx.client.stream(
            "/v1/chat/completions",
            {
                "model": ctx.model,
                "messages": [{"role": "user", "content": cfg.chat_prompt}],
                "max_tokens": cfg.max_tokens,
                "temperature": cfg.temperature,
                "seed": cfg.seed,
                "stream": True,
                "stream_options": {"include_usage": True},
            },
            "engine",
            parse_all=True,
        )
        phase.advance()
        chat_fig: dict[str, Any] = {
            "prompt": cfg.chat_prompt,
            "text": chat.text,
            "output_tokens": chat.output_tokens,
        }
        if chat.ok:
            ctx.outcomes.append(chat)
            chat_why = triviality(chat.text or "")
            if chat_why is not None:
                problems.append(f"chat answer is not real text ({chat_why})")
            chat_fig["status"] = "answered"
            chat_note = f"chat: {(chat.text or '').strip()[:60]!r}"
        elif _chat_template_missing(chat):
            chat_fig["status"] = "no chat template"
            chat_note = "chat skipped: the model has no chat template"
        else:
            ctx.outcomes.append(chat)
            chat_fig["status"] = "failed"
            problems.append(f"chat completion failed: {chat.error}")
        chat_fig["error"] = chat.error
        figures["chat"] = chat_fig
    phase.close()
    summary = f"{(completion.text or '').strip()[:60]!r} ({completion.output_tokens} tokens); {chat_note}"
    if problems:
        return CheckResult(
            name=NAME,
            title=TITLE,
            verdict=Verdict.FAIL,
            reason="; ".join(problems),
            summary=summary,
            figures=figures,
            duration_s=time.perf_counter() - start,
        )
    return CheckResult(
        name=NAME,
        title=TITLE,
        verdict=Verdict.PASS,
        reason="completion is non-trivial text"
        + ("; chat answered" if figures.get("chat", {}).get("status") == "answered" else ""),
        summary=summary,
        figures=figures,
        duration_s=time.perf_counter() - start,
    )
