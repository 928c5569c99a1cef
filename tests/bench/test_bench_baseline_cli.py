"""``kvstack verify --baseline`` and ``--rates`` wired end to end (fake vLLM; the live proof is in
test_bench_live_baseline.py): refusal of another workload, the baseline check in the JSON, the JUnit, the
console table and the PNG; the open-loop check per rate."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from kvstack.bench.cli import main
from kvstack.bench.report import Verdict
from kvstack.bench.verify import JSON_NAME, JUNIT_NAME, run_verify
from tests.bench.bench_helpers import FakeServer, small_workload


def _config_file(tmp_path: Path, url: str, name: str) -> Path:
    path = tmp_path / name
    path.write_text(small_workload(url).model_dump_json(exclude={"plots"}))  # JSON is YAML
    return path


def test_a_baseline_of_another_workload_is_refused_before_measuring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    previous = tmp_path / "prev" / JSON_NAME
    previous.parent.mkdir()
    report = {
        "report_version": "kvstack.verify/v1",
        "complete": True,
        "config": small_workload("http://127.0.0.1:1").model_dump(mode="json"),
        "checks": [],
    }
    previous.write_text(json.dumps(report))
    config = _config_file(tmp_path, "http://127.0.0.1:1", "verify.yaml")  # nothing listens there
    code = main(["--config", str(config), "--baseline", str(previous), "--output-tokens", "12", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--baseline refused" in err
    assert str(previous) in err
    assert "batching.output_tokens: 8 in the baseline, 12 now" in err
    assert "Traceback" not in err


def test_missing_baseline_file_is_exit_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config_file(tmp_path, "http://127.0.0.1:1", "verify.yaml")
    code = main(["--config", str(config), "--baseline", str(tmp_path / "nope.json"), "--quiet"])
    assert code == 2
    assert "nope.json: cannot read" in capsys.readouterr().err


def test_baseline_gate_compares_side_by_side_and_fails_when_caching_is_gone(
    fake_vllm: Callable[..., FakeServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = fake_vllm("ok")
    first = run_verify(small_workload(good.url), tmp_path / "first")
    assert first.exit_code == 0
    worse = fake_vllm("no-cache")
    config = _config_file(tmp_path, worse.url, "verify.yaml")
    out = tmp_path / "second"
    code = main(["--config", str(config), "--baseline", str(first.json_path), "--out", str(out), "--quiet"])
    assert code == 1
    report = json.loads((out / JSON_NAME).read_text())
    gate = next(c for c in report["checks"] if c["name"] == "baseline")
    assert gate["verdict"] == "fail"
    regressed = {m["key"] for m in gate["figures"]["metrics"] if m["regressed"]}
    assert "prefix_speedup" in regressed
    speedup = next(m for m in gate["figures"]["metrics"] if m["key"] == "prefix_speedup")
    assert speedup["baseline"] == first.report.check("prefix_caching").figures["speedup"]  # type: ignore[union-attr]
    assert speedup["regression"] > speedup["tolerance"] >= 0.10
    assert gate["figures"]["baseline"]["report"] == str(first.json_path)
    assert gate["figures"]["current"]["sweep"]["concurrency"] == [1, 2, 4]
    printed = capsys.readouterr().out
    assert "prefix-caching speedup (higher is better)" in printed
    assert "Baseline regression gate" in printed
    assert Path(report["files"]["baseline_png"]).stat().st_size > 1000
    case = next(
        c for c in ET.parse(out / JUNIT_NAME).getroot().iter("testcase") if c.get("name") == "baseline"
    )
    failure = case.find("failure")
    assert failure is not None
    assert "prefix-caching speedup" in failure.get("message", "")


def test_a_report_of_another_model_is_refused_after_discovery(
    fake_vllm: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_vllm("ok")
    config = small_workload(server.url)
    previous = tmp_path / "prev.json"
    previous.write_text(
        json.dumps(
            {
                "report_version": "kvstack.verify/v1",
                "complete": True,
                "config": config.model_dump(mode="json"),
                "server": {"model": "another-model"},
                "checks": [],
            }
        )
    )
    result = run_verify(small_workload(server.url, baseline={"report": str(previous)}), tmp_path / "out")
    assert result.exit_code == 2
    gate = result.report.check("baseline")
    assert gate is not None
    assert gate.verdict is Verdict.ERROR
    assert "model: 'another-model' in the baseline, 'fake-model' now" in gate.reason


def test_open_loop_rates_are_measured_and_reported(
    fake_vllm: Callable[..., FakeServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = fake_vllm("ok")
    config = _config_file(tmp_path, server.url, "verify.yaml")
    out = tmp_path / "out"
    code = main(
        [
            "--config",
            str(config),
            "--rates",
            "20,5",
            "--open-loop-requests",
            "6",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    report = json.loads((out / JSON_NAME).read_text())
    names = [c["name"] for c in report["checks"]]
    assert names.index("open_loop") == names.index("sweep") + 1
    fig = next(c for c in report["checks"] if c["name"] == "open_loop")["figures"]
    assert [r["rate"] for r in fig["rates"]] == [5.0, 20.0]
    assert [r["requests"] for r in fig["rates"]] == [6, 6]
    # the last request is sent at count/rate s: the phase cannot end before it
    assert [r["schedule_span_s"] for r in fig["rates"]] == pytest.approx([1.2, 0.3])
    assert all(r["wall_s"] >= r["schedule_span_s"] for r in fig["rates"])
    assert report["config"]["open_loop"]["rates"] == [5.0, 20.0]
    # goodput under the run's (generous) SLO, judged with the sweep's rule
    assert [r["goodput"]["met"] for r in fig["rates"]] == [6, 6]
    assert [r["meets_slo"] for r in fig["rates"]] == [True, True]
    assert fig["max_rate_meeting_slo"] == 20.0
    assert Path(report["files"]["open_loop_png"]).stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "open-loop arrivals (burstiness 1; 1 = Poisson)" in printed
    assert "highest offered rate meeting the SLO: 20 req/s" in printed


def test_bad_rates_name_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--endpoint", "http://127.0.0.1:1", "--rates", "1,fast"]) == 2
    assert "--rates: not a comma-separated list of numbers" in capsys.readouterr().err
    assert main(["--endpoint", "http://127.0.0.1:1", "--rates", "0"]) == 2
    assert "open_loop.rates" in capsys.readouterr().err
