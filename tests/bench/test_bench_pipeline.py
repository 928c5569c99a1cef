"""The check pipeline: declared dependencies, typed figures in and out of the report, pure judges."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from kvstack.bench.checks import batching, engine, kv_capacity, latency, prefix
from kvstack.bench.checks.pipeline import Check, CheckRecord, Deps, Judgement, Probe, check_order_problems
from kvstack.bench.config import VerifyConfig
from kvstack.bench.figures import ChatFigures, CompletionFigures, EngineFigures, KvCapacityFigures
from kvstack.bench.report import Verdict, VerifyReport
from kvstack.bench.verify import CHECKS


class _Fig(BaseModel):
    value: int


async def _measure(_probe: Probe, _deps: Deps) -> _Fig:  # pragma: no cover - never awaited here
    return _Fig(value=1)


def _judge(fig: _Fig, _config: VerifyConfig) -> Judgement:
    return Judgement(Verdict.PASS if fig.value > 0 else Verdict.FAIL, f"value {fig.value}")


CONFIG = VerifyConfig(endpoint="http://127.0.0.1:1")


def test_the_runner_order_satisfies_every_declared_need() -> None:
    assert check_order_problems(CHECKS) == []
    assert prefix.CHECK.needs == (kv_capacity.NAME,)
    assert set(latency.CHECK.needs) == {engine.NAME, batching.NAME, batching.SWEEP_NAME, prefix.NAME}


def test_order_problems_name_the_check_and_the_need() -> None:
    a = Check("a", "A", _Fig, _measure, _judge, needs=("b",))
    b = Check("b", "B", _Fig, _measure, _judge)
    assert check_order_problems((a, b)) == ["'a' needs 'b', which does not run before it"]
    assert check_order_problems((b, a)) == []
    assert check_order_problems((b, b)) == ["duplicate check name 'b'"]


def test_deps_give_only_what_was_declared() -> None:
    b = Check("b", "B", _Fig, _measure, _judge)
    c = Check("c", "C", _Fig, _measure, _judge)
    deps = Deps("a", {"b": CheckRecord("b", _Fig(value=3), ())})
    fig = deps.figures(b)
    assert fig is not None
    assert fig.value == 3
    with pytest.raises(KeyError, match="'a' did not declare that it needs 'c'"):
        deps.figures(c)
    assert Deps("a", {"b": None}).figures(b) is None  # declared, did not run
    assert Deps("a", {"b": CheckRecord("b", None, ())}).figures(b) is None  # ran, not measured


def test_result_is_judged_and_reads_back_typed_from_json() -> None:
    check = Check("x", "X", _Fig, _measure, _judge)
    result = check.result(_Fig(value=-2), CONFIG, 1.5)
    assert (result.verdict, result.reason, result.duration_s) == (Verdict.FAIL, "value -2", 1.5)
    report = VerifyReport(kvstack_version="t", started_at="now", endpoint="e", config={}, checks=[result])
    again = VerifyReport.model_validate_json(report.model_dump_json())
    assert check.figures_in(again) == _Fig(value=-2)
    assert again.figures("missing", _Fig) is None


def _engine(text: str, chat: ChatFigures | None = None, ok: bool = True) -> EngineFigures:
    return EngineFigures(
        completion=CompletionFigures(
            prompt="p", text=text, output_tokens=4, ttft_ms=1.0, error=None if ok else "boom", ok=ok
        ),
        chat=chat,
    )


def test_engine_judge_is_pure() -> None:
    assert engine.judge(_engine(" Paris."), CONFIG).verdict is Verdict.PASS
    assert engine.judge(_engine("!!!!!!"), CONFIG).verdict is Verdict.FAIL
    failed = engine.judge(_engine("", ok=False), CONFIG)
    assert (failed.verdict, failed.reason) == (Verdict.ERROR, "the completion request failed: boom")
    no_template = ChatFigures(prompt="q", text=None, output_tokens=None, status="no chat template", error="x")
    assert engine.judge(_engine(" Paris.", no_template), CONFIG).verdict is Verdict.PASS
    broken = ChatFigures(prompt="q", text=None, output_tokens=None, status="failed", error="500")
    assert engine.judge(_engine(" Paris.", broken), CONFIG).verdict is Verdict.FAIL


def test_capacity_judge_reads_typed_figures() -> None:
    fig = KvCapacityFigures(
        block_size=128,
        num_blocks=728,
        kv_tokens=93_184,
        max_model_len=2048,
        max_concurrency=45.5,
        server_max_concurrency=91.0,
        engines=1,
        prefix_caching_enabled=True,
        kv_cache_memory_bytes=None,
        cache_dtype="auto",
    )
    assert kv_capacity.judge(fig, CONFIG).verdict is Verdict.PASS
    small = fig.model_copy(update={"max_concurrency": 2.0})
    assert kv_capacity.judge(small, CONFIG).verdict is Verdict.FAIL
