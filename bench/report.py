"""The verify report: a versioned JSON document, JUnit XML for CD, and the exit code rule.

Exit codes: 0 every check passed; 1 at least one check failed its threshold; 2 the run could not be made
(endpoint unreachable, failing, hung or dying, bad config, or a check that could not measure).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from kvstack.bench.client import RequestOutcome

REPORT_VERSION = "kvstack.verify/v1"
# additions within v1 (keys only added, never renamed or re-meant): 1 = typed figures (engine "chat": null
# when not checked, prefix "notes"), 2 = phases sized by time and requests, the sweep's bound and stop,
# goodput under SLO and the goodput_capacity check
REPORT_MINOR_VERSION = 2

_F = TypeVar("_F", bound=BaseModel)

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_ERROR = 2


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"  # could not be measured
    SKIPPED = "skipped"  # not run (run aborted before it, or not applicable)


class CheckResult(BaseModel):
    name: str
    title: str
    verdict: Verdict
    reason: str
    summary: str = ""
    figures: dict[str, Any] = Field(default_factory=dict)
    duration_s: float = 0.0


class ServerInfo(BaseModel):
    endpoint: str
    model: str
    models: list[str]
    max_model_len: int | None = None
    root: str | None = None
    version: str | None = None
    tokenizer_endpoint: bool = False
    metrics_endpoint: bool = False


class ErrorSummary(BaseModel):
    phase: str
    kind: str
    count: int
    example: str


class VerifyReport(BaseModel):
    report_version: str = REPORT_VERSION
    report_minor_version: int = REPORT_MINOR_VERSION
    kvstack_version: str
    started_at: str
    finished_at: str | None = None
    duration_s: float | None = None
    exit_code: int | None = None
    outcome: str | None = None  # passed | failed | error
    complete: bool = False  # False while running, and in a partial report
    run_error: str | None = None
    endpoint: str
    config: dict[str, Any]
    server: ServerInfo | None = None
    checks: list[CheckResult] = Field(default_factory=list)
    request_errors: list[ErrorSummary] = Field(default_factory=list)
    files: dict[str, str] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)

    def check(self, name: str) -> CheckResult | None:
        return next((c for c in self.checks if c.name == name), None)

    def figures(self, name: str, model: type[_F]) -> _F | None:
        """Check ``name``'s figures as the typed ``model`` (``bench.figures``); ``None`` if it has none."""
        entry = self.check(name)
        if entry is None or not entry.figures:
            return None
        return model.model_validate(entry.figures)


def exit_code_for(checks: list[CheckResult], run_error: str | None) -> int:
    if run_error is not None or any(c.verdict is Verdict.ERROR for c in checks):
        return EXIT_ERROR
    if any(c.verdict is Verdict.FAIL for c in checks):
        return EXIT_FAILED
    return EXIT_PASSED


def outcome_for(exit_code: int) -> str:
    return {EXIT_PASSED: "passed", EXIT_FAILED: "failed"}.get(exit_code, "error")


def write_json(report: VerifyReport, path: Path) -> None:
    """Write atomically (a CD step may read the file while a later write is under way)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def junit_xml(report: VerifyReport) -> str:
    """One ``testcase`` per check: ``failure`` for fail, ``error`` for error, ``skipped`` for not run."""
    checks = list(report.checks)
    failures = sum(1 for c in checks if c.verdict is Verdict.FAIL)
    errors = sum(1 for c in checks if c.verdict is Verdict.ERROR)
    skipped = sum(1 for c in checks if c.verdict is Verdict.SKIPPED)
    run_error_case = report.run_error is not None and not any(c.verdict is Verdict.ERROR for c in checks)
    if run_error_case:
        errors += 1
    total = len(checks) + (1 if run_error_case else 0)
    time_s = f"{report.duration_s or 0.0:.3f}"
    suites = ET.Element(
        "testsuites",
        name="kvstack verify",
        tests=str(total),
        failures=str(failures),
        errors=str(errors),
        skipped=str(skipped),
        time=time_s,
    )
    suite = ET.SubElement(
        suites,
        "testsuite",
        name="kvstack.verify",
        tests=str(total),
        failures=str(failures),
        errors=str(errors),
        skipped=str(skipped),
        time=time_s,
        timestamp=report.started_at,
    )
    props = ET.SubElement(suite, "properties")
    prop_values = {
        "endpoint": report.endpoint,
        "report_version": report.report_version,
        "kvstack_version": report.kvstack_version,
        "model": report.server.model if report.server else "",
        "server_version": (report.server.version or "") if report.server else "",
    }
    for key, value in prop_values.items():
        ET.SubElement(props, "property", name=key, value=value)
    if run_error_case:
        case = ET.SubElement(suite, "testcase", classname="kvstack.verify", name="run", time="0")
        err = ET.SubElement(case, "error", message=report.run_error or "", type="RunError")
        err.text = report.run_error
    for check in checks:
        case = ET.SubElement(
            suite, "testcase", classname="kvstack.verify", name=check.name, time=f"{check.duration_s:.3f}"
        )
        detail = json.dumps(check.figures, indent=2, sort_keys=True, default=str)
        if check.verdict is Verdict.FAIL:
            el = ET.SubElement(case, "failure", message=check.reason, type="ThresholdNotMet")
            el.text = detail
        elif check.verdict is Verdict.ERROR:
            el = ET.SubElement(case, "error", message=check.reason, type="NotMeasured")
            el.text = detail
        elif check.verdict is Verdict.SKIPPED:
            ET.SubElement(case, "skipped", message=check.reason)
        out = ET.SubElement(case, "system-out")
        out.text = f"{check.title}: {check.verdict.value}: {check.reason}\n{check.summary}\n"
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(report: VerifyReport, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(junit_xml(report), encoding="utf-8")


def summarize_errors(outcomes: list[RequestOutcome]) -> list[ErrorSummary]:
    """Group failed ``RequestOutcome``s by (phase, kind)."""
    groups: dict[tuple[str, str], ErrorSummary] = {}
    for o in outcomes:
        if o.ok:
            continue
        key = (o.phase, o.error_kind or "unknown")
        if key in groups:
            groups[key].count += 1
        else:
            groups[key] = ErrorSummary(phase=key[0], kind=key[1], count=1, example=(o.error or "")[:500])
    return list(groups.values())
