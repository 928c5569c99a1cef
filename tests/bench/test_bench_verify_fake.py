"""kvstack verify end to end against the fake vLLM: every check passes with caching on, the prefix
check fails with caching off (exit 1), and the report files are all there."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from kvstack.bench.cli import main
from kvstack.bench.report import Verdict
from kvstack.bench.verify import JSON_NAME, JUNIT_NAME, run_verify
from tests.bench.bench_helpers import FakeServer, small_workload

ROOT = Path(__file__).resolve().parents[2]


def test_all_checks_pass(fake_vllm: Callable[..., FakeServer], tmp_path: Path) -> None:
    server = fake_vllm("ok")
    result = run_verify(small_workload(server.url), tmp_path)
    report = result.report
    assert result.exit_code == 0, [(c.name, c.verdict, c.reason) for c in report.checks]
    assert [c.name for c in report.checks] == [
        "engine",
        "capacity",
        "batching",
        "sweep",
        "prefix_caching",
        "latency",
        "goodput_capacity",
    ]
    assert all(c.verdict is Verdict.PASS for c in report.checks)
    assert report.server is not None
    assert (report.server.model, report.server.max_model_len, report.server.version) == (
        "fake-model",
        2048,
        "0.0.0-fake",
    )
    batching = report.check("batching")
    assert batching is not None
    assert batching.figures["speedup"] > 1.3
    assert batching.figures["sequential"]["output_tokens"] == 16 * 8  # counted from usage
    sweep = report.check("sweep")
    assert sweep is not None
    assert [lv["concurrency"] for lv in sweep.figures["levels"]] == [1, 2, 4]
    prefix = report.check("prefix_caching")
    assert prefix is not None
    assert prefix.figures["server_prefix_hits"] == prefix.figures["expected_cached_tokens"] > 0
    assert prefix.figures["use_cases"][0]["pays"] is True
    on_disk = json.loads((tmp_path / JSON_NAME).read_text())
    assert on_disk["complete"] is True
    assert on_disk["exit_code"] == 0
    assert on_disk["config"]["batching"]["prompts"] == 16
    suite = ET.parse(tmp_path / JUNIT_NAME).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("7", "0", "0")


def test_prefix_caching_off_fails_with_exit_1(fake_vllm: Callable[..., FakeServer], tmp_path: Path) -> None:
    server = fake_vllm("no-cache")
    result = run_verify(small_workload(server.url), tmp_path)
    assert result.exit_code == 1
    verdicts = {c.name: c.verdict for c in result.report.checks}
    assert verdicts.pop("prefix_caching") is Verdict.FAIL
    assert set(verdicts.values()) == {Verdict.PASS}
    prefix = result.report.check("prefix_caching")
    assert prefix is not None
    assert prefix.figures["server_prefix_hits"] == 0
    assert "prefix caching is off or not working" in prefix.reason


def test_cli_writes_plots_and_prints_the_table(
    fake_vllm: Callable[..., FakeServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = fake_vllm("ok")
    config = tmp_path / "verify.yaml"
    config.write_text(small_workload(server.url).model_dump_json(exclude={"plots"}))  # JSON is YAML
    code = main(["--config", str(config), "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "PASSED (exit 0)" in out
    assert "Continuous batching" in out
    report = json.loads((tmp_path / "out" / JSON_NAME).read_text())
    assert Path(report["files"]["sweep_png"]).stat().st_size > 1000
    assert Path(report["files"]["prefix_png"]).stat().st_size > 1000


def test_python_dash_m_bench_without_a_terminal(fake_vllm: Callable[..., FakeServer], tmp_path: Path) -> None:
    """What CD runs: no TTY, progress as plain lines on stderr, the table on stdout, exit code."""
    server = fake_vllm("no-cache")
    config = tmp_path / "verify.yaml"
    config.write_text(small_workload(server.url).model_dump_json())
    proc = subprocess.run(
        [sys.executable, "-m", "kvstack.bench", "--config", str(config), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "[verify] batching: 16 prompts one at a time: 16/16 done" in proc.stderr
    assert "\x1b[" not in proc.stderr  # no cursor movement or colour in a log
    assert "FAILED (exit 1)" in proc.stdout


def test_phases_are_sized_by_time_and_the_sweep_records_its_stop(
    fake_vllm: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_vllm("ok")
    config = small_workload(server.url, phases={"min_duration_s": 0.4, "min_requests": 3})
    result = run_verify(config, tmp_path)
    sweep = result.report.check("sweep")
    assert sweep is not None
    levels = sweep.figures["levels"]
    assert levels
    for lv in levels:
        assert lv["wall_s"] >= 0.4
        assert lv["requests"] >= max(3, lv["concurrency"])
    assert sweep.figures["bound"]["concurrency"] == 4
    assert sweep.figures["stop"]["reason"] in ("saturation", "upper bound")
    assert f"stopped at c{sweep.figures['stop']['concurrency']}" in sweep.reason
    assert sweep.figures["goodput_concurrency"] == levels[-1]["concurrency"]


def test_capacity_under_slo_fails_when_no_level_meets_it(
    fake_vllm: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_vllm("ok")
    result = run_verify(small_workload(server.url, slo={"ttft_ms": 0.001}), tmp_path)
    assert result.exit_code == 1
    check = result.report.check("goodput_capacity")
    assert check is not None
    assert check.verdict is Verdict.FAIL, check.reason
    assert "none < floor 4" in check.reason
    suite = ET.parse(tmp_path / JUNIT_NAME).getroot().find("testsuite")
    assert suite is not None
    assert suite.get("failures") == "1"


def test_without_an_slo_the_capacity_check_is_skipped_with_its_reason(
    fake_vllm: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_vllm("ok")
    result = run_verify(small_workload(server.url, slo={"ttft_ms": None, "itl_ms": None}), tmp_path)
    assert result.exit_code == 0
    check = result.report.check("goodput_capacity")
    assert check is not None
    assert check.verdict is Verdict.SKIPPED
    assert "no SLO given" in check.reason
