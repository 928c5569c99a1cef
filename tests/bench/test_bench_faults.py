"""Faults: each ends with exit 2, a clear message and a report on disk, within a bounded time.

The fake servers run with the small workload's timeouts (2 s connect/read/probe, 10 s per request,
60 s per run), so "bounded" is asserted against those.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kvstack.bench.report import Verdict
from kvstack.bench.verify import JSON_NAME, JUNIT_NAME, VerifyResult, run_verify
from tests.bench.bench_helpers import FakeServer, small_workload


def verify(url: str, out: Path, **overrides: object) -> tuple[VerifyResult, float]:
    start = time.perf_counter()
    result = run_verify(small_workload(url, **overrides), out)
    return result, time.perf_counter() - start


def assert_partial_report(result: VerifyResult, out: Path, message: str) -> dict[str, Any]:
    assert result.exit_code == 2
    assert result.report.run_error is not None
    assert message in result.report.run_error
    data: dict[str, Any] = json.loads((out / JSON_NAME).read_text())
    assert data["exit_code"] == 2
    assert data["outcome"] == "error"
    assert message in data["run_error"]
    assert (out / JUNIT_NAME).read_text().count("<testcase") >= 1
    return data


def test_unreachable_endpoint(closed_port: int, tmp_path: Path) -> None:
    result, took = verify(f"http://127.0.0.1:{closed_port}", tmp_path)
    assert_partial_report(result, tmp_path, "cannot connect")
    assert took < 5
    assert all(c.verdict is Verdict.SKIPPED for c in result.report.checks)


def test_server_that_accepts_and_never_answers(fake_vllm: Callable[..., FakeServer], tmp_path: Path) -> None:
    server = fake_vllm("hang")
    result, took = verify(server.url, tmp_path)
    assert_partial_report(result, tmp_path, "no answer within 2 s")
    assert took < 6


def test_completions_that_never_answer(fake_vllm: Callable[..., FakeServer], tmp_path: Path) -> None:
    server = fake_vllm("hang-completions")
    result, took = verify(server.url, tmp_path)
    assert_partial_report(result, tmp_path, "no bytes from the server for 2 s")
    assert took < 6
    engine = result.report.check("engine")
    assert engine is not None
    assert engine.verdict is Verdict.ERROR


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("http500", "HTTP 500: EngineCore encountered an issue"),
        ("http400", "HTTP 400: This model's maximum context length"),
        ("malformed", "not valid JSON"),
        ("truncated", "without 'data: [DONE]'"),
        ("cut", "the engine did not answer"),
    ],
)
def test_failing_streams(
    fake_vllm: Callable[..., FakeServer], tmp_path: Path, mode: str, message: str
) -> None:
    server = fake_vllm(mode)
    result, took = verify(server.url, tmp_path)
    data = assert_partial_report(result, tmp_path, message)
    assert took < 5
    assert data["request_errors"]


def test_malformed_streams_under_load_are_caught_by_the_fast_parser(
    fake_vllm: Callable[..., FakeServer], tmp_path: Path
) -> None:
    """The engine check decodes every event; load requests only the first and last: still caught."""
    server = fake_vllm("malformed-load")
    result, took = verify(server.url, tmp_path)
    assert_partial_report(result, tmp_path, "first event is not valid JSON")
    assert took < 10
    verdicts = {c.name: c.verdict for c in result.report.checks}
    assert verdicts["engine"] is Verdict.PASS
    assert verdicts["batching"] is Verdict.ERROR


def test_server_dies_mid_run(fake_vllm: Callable[..., FakeServer], tmp_path: Path) -> None:
    server = fake_vllm("ok", "--die-after", "8")
    result, took = verify(server.url, tmp_path)
    data = assert_partial_report(result, tmp_path, "endpoint down")
    assert took < 15
    assert server.proc.wait(timeout=5) == 1
    checks = {c["name"]: c for c in data["checks"]}
    assert checks["engine"]["verdict"] == "pass"  # done before the death, kept in the report
    assert checks["capacity"]["verdict"] == "pass"
    assert checks["batching"]["verdict"] == "error"
    assert checks["latency"]["verdict"] == "skipped"
    assert "not run" in checks["latency"]["reason"]


def test_run_deadline(fake_vllm: Callable[..., FakeServer], tmp_path: Path) -> None:
    server = fake_vllm("ok")
    result, took = verify(
        server.url, tmp_path, timeouts={"run_s": 1.0}, batching={"prompts": 64, "output_tokens": 64}
    )
    assert_partial_report(result, tmp_path, "did not finish within timeouts.run_s = 1 s")
    assert took < 4
    interrupted = [c for c in result.report.checks if c.reason.startswith("interrupted")]
    assert len(interrupted) == 1


def test_one_hung_request_among_good_ones_does_not_end_the_run(
    fake_vllm: Callable[..., FakeServer], tmp_path: Path
) -> None:
    """Request 25 (in the all-at-once batching phase) never answers: it times out after read_s, is
    recorded, and the run goes on to the end; the latency check counts the error."""
    server = fake_vllm("ok", "--hang-request", "25")
    result, took = verify(server.url, tmp_path)
    report = result.report
    assert report.run_error is None, report.run_error
    assert result.exit_code == 1  # the latency check fails on the error (max_errors 0)
    assert took < 30
    verdicts = {c.name: c.verdict for c in report.checks}
    assert Verdict.SKIPPED not in verdicts.values()
    assert Verdict.ERROR not in verdicts.values()
    assert verdicts["engine"] is Verdict.PASS
    assert verdicts["prefix_caching"] is Verdict.PASS
    latency = report.check("latency")
    assert latency is not None
    assert latency.verdict is Verdict.FAIL
    assert latency.figures["failed"] == 1
    assert latency.figures["errors_by_kind"] == {"timeout": 1}
    assert "1 failed request(s)" in latency.reason
    batching = report.check("batching")
    assert batching is not None
    assert batching.figures["concurrent"]["failed"] == 1
    assert [(e.kind, e.count) for e in report.request_errors] == [("timeout", 1)]
