"""Engine answers: a completion that is real text, and a chat completion when the model has a template."""

from __future__ import annotations

import re

from kvstack.bench.checks.pipeline import Check, Deps, Judgement, Probe
from kvstack.bench.client import RequestOutcome
from kvstack.bench.config import VerifyConfig
from kvstack.bench.figures import ChatFigures, CompletionFigures, EngineFigures
from kvstack.bench.report import Verdict

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


async def measure(probe: Probe, _deps: Deps) -> EngineFigures:
    cfg = probe.config.engine
    phase = probe.display.phase("engine answers", 2 if cfg.chat else 1)
    completion = await probe.client.stream(
        "/v1/completions",
        {
            "model": probe.model,
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
    probe.outcomes.append(completion)
    phase.advance()
    figures = EngineFigures(
        completion=CompletionFigures(
            prompt=cfg.prompt,
            text=completion.text,
            output_tokens=completion.output_tokens,
            ttft_ms=completion.ttft * 1000 if completion.ttft is not None else None,
            error=completion.error,
            ok=completion.ok,
        )
    )
    if not completion.ok or not cfg.chat:
        phase.close("no answer" if not completion.ok else "")
        return figures
    chat = await probe.client.stream(
        "/v1/chat/completions",
        {
            "model": probe.model,
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
    if chat.ok:
        status = "answered"
    elif _chat_template_missing(chat):
        status = "no chat template"
    else:
        status = "failed"
    if status != "no chat template":
        probe.outcomes.append(chat)
    phase.close()
    return figures.model_copy(
        update={
            "chat": ChatFigures(
                prompt=cfg.chat_prompt,
                text=chat.text,
                output_tokens=chat.output_tokens,
                status=status,
                error=chat.error,
            )
        }
    )


def judge(fig: EngineFigures, _config: VerifyConfig) -> Judgement:
    """Pure: a failed completion is ``error`` (the run stops there), trivial text a ``fail``."""
    completion = fig.completion
    if not completion.ok:
        return Judgement(Verdict.ERROR, f"the completion request failed: {completion.error}")
    problems: list[str] = []
    why = triviality(completion.text or "")
    if why is not None:
        problems.append(f"completion is not real text ({why})")
    chat_note = "chat not checked (disabled)"
    chat = fig.chat
    if chat is not None:
        if chat.status == "answered":
            chat_why = triviality(chat.text or "")
            if chat_why is not None:
                problems.append(f"chat answer is not real text ({chat_why})")
            chat_note = f"chat: {(chat.text or '').strip()[:60]!r}"
        elif chat.status == "no chat template":
            chat_note = "chat skipped: the model has no chat template"
        else:
            problems.append(f"chat completion failed: {chat.error}")
    summary = f"{(completion.text or '').strip()[:60]!r} ({completion.output_tokens} tokens); {chat_note}"
    if problems:
        return Judgement(Verdict.FAIL, "; ".join(problems), summary)
    answered = chat is not None and chat.status == "answered"
    return Judgement(
        Verdict.PASS, "completion is non-trivial text" + ("; chat answered" if answered else ""), summary
    )


CHECK = Check(NAME, TITLE, EngineFigures, measure, judge)
