"""``kvstack verify``: run the checks against a live endpoint and write the report.

``run_verify(config, out_dir)`` is the entry point for code (tests, the demo); ``bench.cli`` is the
command-line shell around it. The run never raises on endpoint trouble: an unreachable, failing, hung or
dying server ends the run (exit 2) within the configured timeouts, and the report written so far stays on
disk. The JSON report is rewritten after every check, so even a run killed from outside leaves one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kvstack.bench.checks import (
    baseline,
    batching,
    engine,
    goodput,
    kv_capacity,
    latency,
    open_loop,
    prefix,
    routing,
)
from kvstack.bench.checks.pipeline import Check, CheckRecord, Deps, NotMeasured, Probe, check_order_problems
from kvstack.bench.client import EndpointClient, EndpointError, RequestOutcome
from kvstack.bench.config import VerifyConfig
from kvstack.bench.console import Display, QuietDisplay
from kvstack.bench.discovery import discover, fetch_metrics
from kvstack.bench.plots import write_plots
from kvstack.bench.report import (
    CheckResult,
    Verdict,
    VerifyReport,
    exit_code_for,
    outcome_for,
    summarize_errors,
    write_json,
    write_junit,
)

JSON_NAME = "verify-report.json"
JUNIT_NAME = "verify-junit.xml"

# in run order; a check's ``needs`` name checks before it
CHECKS: tuple[Check[Any], ...] = (
    engine.CHECK,
    kv_capacity.CHECK,
    batching.CHECK,
    batching.SWEEP_CHECK,
    open_loop.CHECK,  # only with rates
    prefix.CHECK,
    latency.CHECK,
    goodput.CHECK,
    routing.CHECK,  # after the others: a fleet's routing is judged once the single-engine checks ran
    baseline.CHECK,  # last, only with a previous report: compares the figures measured above
)


def checks_for(config: VerifyConfig) -> tuple[Check[Any], ...]:
    """The checks this run makes: the routing check only when the config names a fleet source (each
    engine's /metrics, or Prometheus), the open-loop check only with rates, the baseline gate only with a
    previous report: a single endpoint without them runs exactly the single-engine checks."""
    runs = {
        routing.NAME: config.fleet.given,
        open_loop.NAME: bool(config.open_loop.rates),
        baseline.NAME: config.baseline.report is not None,
    }
    return tuple(c for c in CHECKS if runs.get(c.name, True))


if _problems := check_order_problems(CHECKS):  # pragma: no cover - a programming error, caught by tests
    raise RuntimeError("; ".join(_problems))


@dataclass(frozen=True, slots=True)
class VerifyResult:
    report: VerifyReport
    exit_code: int
    out_dir: Path
    json_path: Path
    junit_path: Path


def _kvstack_version() -> str:
    try:
        from kvstack import __version__

        return __version__
    except ImportError:  # bench installed without the kvstack package
        return "unknown"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def run_verify(config: VerifyConfig, out_dir: Path, display: Display | None = None) -> VerifyResult:
    """Run every check against ``config.endpoint``; write JSON, JUnit and PNGs under ``out_dir``."""
    return asyncio.run(run_verify_async(config, out_dir, display))


async def run_verify_async(
    config: VerifyConfig, out_dir: Path, display: Display | None = None
) -> VerifyResult:
    display = display or QuietDisplay()
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / JSON_NAME
    junit_path = out_dir / JUNIT_NAME
    started = time.perf_counter()
    report = VerifyReport(
        kvstack_version=_kvstack_version(),
        started_at=_now(),
        endpoint=config.endpoint,
        config=config.model_dump(mode="json"),
        checks=[
            CheckResult(name=check.name, title=check.title, verdict=Verdict.SKIPPED, reason="not run yet")
            for check in checks_for(config)
        ],
        files={"json": str(json_path), "junit": str(junit_path)},
    )
    write_json(report, json_path)
    records: dict[str, CheckRecord] = {}
    run_outcomes: list[RequestOutcome] = []

    def set_result(result: CheckResult) -> None:
        report.checks = [result if c.name == result.name else c for c in report.checks]
        write_json(report, json_path)

    with display:
        try:
            async with asyncio.timeout(config.timeouts.run_s):
                async with EndpointClient(
                    config.endpoint,
                    api_key=config.api_key.get_secret_value() if config.api_key else None,
                    connect_s=config.timeouts.connect_s,
                    read_s=config.timeouts.read_s,
                    request_s=config.timeouts.request_s,
                    probe_s=config.timeouts.probe_s,
                    connection_limit=config.connection_limit(),
                    trust_env=config.client.trust_env,
                    parse_every_event=config.client.parse_every_event,
                    abort_after_consecutive_failures=config.client.abort_after_consecutive_failures,
                ) as client:
                    display.log(f"discovering {config.endpoint} ...")
                    server = await discover(client, config)
                    report.server = server
                    metrics_text, metrics_error = await fetch_metrics(client, config)
                    server.metrics_endpoint = metrics_text is not None
                    display.log(
                        f"model {server.model} (max_model_len {server.max_model_len}), "
                        f"vLLM {server.version or '?'}"
                    )

                    def probe() -> Probe:
                        return Probe(
                            config=config,
                            client=client,
                            server=server,
                            display=display,
                            metrics_text=metrics_text,
                            metrics_error=metrics_error,
                        )

                    await _run_checks(probe, config, display, records, run_outcomes, set_result)
        except EndpointError as exc:
            report.run_error = str(exc)
        except TimeoutError:
            report.run_error = f"the run did not finish within timeouts.run_s = {config.timeouts.run_s:g} s"
        if report.run_error is not None:
            report.checks = [
                c.model_copy(update={"reason": "not run: the run was aborted (see run_error)"})
                if c.reason == "not run yet"
                else c
                for c in report.checks
            ]
            display.log(f"run aborted: {report.run_error}")

    report.request_errors = summarize_errors(run_outcomes)
    report.exit_code = exit_code_for(report.checks, report.run_error)
    report.outcome = outcome_for(report.exit_code)
    report.finished_at = _now()
    report.duration_s = time.perf_counter() - started
    report.complete = True
    if config.plots:
        try:
            files, notes = write_plots(report, out_dir)
        except Exception as exc:  # a plotting bug must not lose the verdict
            files, notes = {}, [f"plots failed: {type(exc).__name__}: {exc}"]
        report.files.update(files)
        report.notes.extend(notes)
    write_junit(report, junit_path)
    write_json(report, json_path)
    return VerifyResult(
        report=report, exit_code=report.exit_code, out_dir=out_dir, json_path=json_path, junit_path=junit_path
    )


async def _run_checks(  # noqa: PLR0917
    new_probe: Callable[[], Probe],
    config: VerifyConfig,
    display: Display,
    records: dict[str, CheckRecord],
    run_outcomes: list[RequestOutcome],
    set_result: Callable[[CheckResult], None],
) -> None:
    """Run every check in order: measure (timed here), judge, record. Each check gets a probe of its own
    and the records of the checks it declared in ``needs``."""
    for check in checks_for(config):
        probe = new_probe()
        deps = Deps(check.name, {name: records.get(name) for name in check.needs})
        started = time.perf_counter()
        figures: Any = None
        try:
            figures = await check.measure(probe, deps)
            result = check.result(figures, config, time.perf_counter() - started)
        except NotMeasured as exc:
            result = _error(check, str(exc), started)
        except asyncio.CancelledError:
            run_outcomes.extend(probe.outcomes)
            set_result(_error(check, "interrupted (run deadline or cancellation)", started))
            raise
        except EndpointError as exc:
            seen = {id(o) for o in probe.outcomes}
            probe.outcomes.extend(o for o in exc.outcomes if id(o) not in seen)
            run_outcomes.extend(probe.outcomes)
            set_result(_error(check, str(exc), started))
            raise
        records[check.name] = CheckRecord(check.name, figures, tuple(probe.outcomes))
        run_outcomes.extend(probe.outcomes)
        set_result(result)
        display.log(f"{check.title}: {result.verdict.value.upper()} - {result.reason}")
        if check.name == engine.NAME and result.verdict is Verdict.ERROR:
            raise EndpointError(f"the engine did not answer: {result.reason}")


def _error(check: Check[Any], reason: str, started: float) -> CheckResult:
    return CheckResult(
        name=check.name,
        title=check.title,
        verdict=Verdict.ERROR,
        reason=reason,
        duration_s=time.perf_counter() - started,
    )
