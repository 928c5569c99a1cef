"""bench.report: the exit-code rule, the JUnit XML a CD system reads, the versioned JSON."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kvstack.bench.report import (
    REPORT_VERSION,
    CheckResult,
    Verdict,
    VerifyReport,
    exit_code_for,
    junit_xml,
    write_json,
)


def check(name: str, verdict: Verdict) -> CheckResult:
    return CheckResult(name=name, title=name.title(), verdict=verdict, reason=f"{name} {verdict.value}")


@pytest.mark.parametrize(
    ("verdicts", "run_error", "code"),
    [
        ([Verdict.PASS, Verdict.PASS], None, 0),
        ([Verdict.PASS, Verdict.FAIL], None, 1),
        ([Verdict.FAIL, Verdict.ERROR], None, 2),
        ([Verdict.PASS, Verdict.SKIPPED], "endpoint down", 2),
        ([Verdict.PASS, Verdict.SKIPPED], None, 0),
    ],
)
def test_exit_code(verdicts: list[Verdict], run_error: str | None, code: int) -> None:
    checks = [check(f"c{i}", v) for i, v in enumerate(verdicts)]
    assert exit_code_for(checks, run_error) == code


def report(*checks: CheckResult, run_error: str | None = None) -> VerifyReport:
    return VerifyReport(
        kvstack_version="0.1.0",
        started_at="2026-11-26T00:00:00+00:00",
        endpoint="http://h:8000",
        config={"endpoint": "http://h:8000"},
        checks=list(checks),
        run_error=run_error,
        duration_s=1.5,
    )


def test_junit_counts_and_elements() -> None:
    xml = junit_xml(
        report(
            check("engine", Verdict.PASS),
            check("batching", Verdict.FAIL),
            check("prefix_caching", Verdict.ERROR),
            check("latency", Verdict.SKIPPED),
        )
    )
    root = ET.fromstring(xml)
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == (
        "4",
        "1",
        "1",
        "1",
    )
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["batching"].find("failure") is not None
    assert cases["prefix_caching"].find("error") is not None
    assert cases["latency"].find("skipped") is not None
    assert cases["engine"].find("failure") is None


def test_junit_run_error_without_a_failed_check_is_an_error_case() -> None:
    root = ET.fromstring(junit_xml(report(check("engine", Verdict.SKIPPED), run_error="cannot connect")))
    suite = root.find("testsuite")
    assert suite is not None
    assert suite.get("errors") == "1"
    run = [c for c in suite.iter("testcase") if c.get("name") == "run"]
    assert run
    err = run[0].find("error")
    assert err is not None
    assert err.get("message") == "cannot connect"


def test_json_is_versioned(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    write_json(report(check("engine", Verdict.PASS)), path)
    data = json.loads(path.read_text())
    assert data["report_version"] == REPORT_VERSION
    assert data["checks"][0]["verdict"] == "pass"
    assert not list(tmp_path.glob("*.tmp"))
