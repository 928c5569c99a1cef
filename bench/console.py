"""What a person (or a CD log) sees while ``kvstack verify`` runs, and the final table.

On a terminal: rich progress bars, one per phase. Elsewhere (CI logs, pipes): one plain line when a phase
starts and one when it ends, never cursor movement. Progress goes to stderr; the result table to stdout.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Protocol

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from kvstack.bench.baseline import BaselineFigures
from kvstack.bench.figures import OpenLoopFigures, PrefixFigures, SweepFigures
from kvstack.bench.report import Verdict, VerifyReport


class Phase(Protocol):
    def advance(self, n: int = 1) -> None: ...

    def close(self, note: str = "") -> None: ...


class Display(Protocol):
    def __enter__(self) -> Display: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def phase(self, title: str, total: int) -> Phase: ...

    def log(self, message: str) -> None: ...


class _NullPhase:
    def advance(self, n: int = 1) -> None:
        pass

    def close(self, note: str = "") -> None:
        pass


class QuietDisplay:
    """Shows nothing (tests, library use)."""

    def __enter__(self) -> QuietDisplay:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass

    def phase(self, title: str, total: int) -> Phase:
        return _NullPhase()

    def log(self, message: str) -> None:
        pass


class _LinePhase:
    def __init__(self, console: Console, title: str, total: int) -> None:
        self._console = console
        self._title = title
        self._total = total
        self._done = 0
        self._start = time.perf_counter()
        self._closed = False
        console.print(
            f"[verify] {title}: {total} request(s) ...", highlight=False, markup=False, soft_wrap=True
        )

    def advance(self, n: int = 1) -> None:
        self._done += n

    def close(self, note: str = "") -> None:
        if self._closed:
            return
        self._closed = True
        took = time.perf_counter() - self._start
        extra = f" - {note}" if note else ""
        self._console.print(
            f"[verify] {self._title}: {self._done}/{self._total} done in {took:.1f} s{extra}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


class LineDisplay:
    """Plain lines, for logs that are not a terminal."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def __enter__(self) -> LineDisplay:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass

    def phase(self, title: str, total: int) -> Phase:
        return _LinePhase(self._console, title, total)

    def log(self, message: str) -> None:
        self._console.print(f"[verify] {message}", highlight=False, markup=False, soft_wrap=True)


class _BarPhase:
    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress = progress
        self._task = task

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)

    def close(self, note: str = "") -> None:
        task = self._progress.tasks[self._progress.task_ids.index(self._task)]
        if note:
            self._progress.update(self._task, description=f"{task.description} [dim]{note}[/dim]")
        self._progress.stop_task(self._task)


class BarDisplay:
    """Rich progress bars on a terminal."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )

    def __enter__(self) -> BarDisplay:
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def phase(self, title: str, total: int) -> Phase:
        return _BarPhase(self._progress, self._progress.add_task(title, total=total))

    def log(self, message: str) -> None:
        self._progress.console.print(message, highlight=False, markup=False)


def make_display(quiet: bool = False) -> Display:
    """Bars on a terminal, plain lines otherwise, nothing when quiet. Progress goes to stderr."""
    if quiet:
        return QuietDisplay()
    console = Console(stderr=True)
    if console.is_terminal:
        return BarDisplay(console)
    return LineDisplay(console)


_STYLE = {
    Verdict.PASS: "bold green",
    Verdict.FAIL: "bold red",
    Verdict.ERROR: "bold magenta",
    Verdict.SKIPPED: "yellow",
}


def result_console() -> Console:
    """stdout; 150 columns wide when it is not a terminal (rich would assume 80 and wrap every cell)."""
    console = Console(file=sys.stdout)
    return console if console.is_terminal else Console(file=sys.stdout, width=150)


def render_report(report: VerifyReport, console: Console | None = None) -> None:
    """The result table, the sweep and use-case tables, notes and the verdict line."""
    console = console or result_console()
    title = f"kvstack verify: {report.endpoint}"
    if report.server is not None:
        title += f"  model {report.server.model}  vLLM {report.server.version or '?'}"
    table = Table(title=title, show_lines=True)
    table.add_column("check")
    table.add_column("verdict")
    table.add_column("figures")
    table.add_column("reason")
    for check in report.checks:
        style = _STYLE[check.verdict]
        table.add_row(  # summaries and reasons quote server text and URLs: never markup
            Text(check.title),
            f"[{style}]{check.verdict.value.upper()}[/{style}]",
            Text(check.summary),
            Text(check.reason),
        )
    console.print(table)
    sweep = report.figures("sweep", SweepFigures)
    if sweep is not None and sweep.levels:
        st = Table(title="concurrency sweep")
        with_slo = any(lv.goodput is not None for lv in sweep.levels)
        columns = [
            "concurrency",
            "requests",
            "failed",
            "wall s",
            "output tok/s",
            "TTFT p50 ms",
            "TPOT p50 ms",
        ]
        columns += ["E2E p50 ms", *(("within SLO", "goodput tok/s") if with_slo else ())]
        for col in columns:
            st.add_column(col, justify="right")
        for level in sweep.levels:
            cells = [
                str(level.concurrency),
                str(level.requests),
                str(level.failed),
                f"{level.wall_s:.1f}",
                f"{level.output_throughput:.1f}",
                _ms(level.ttft.p50_ms),
                _ms(level.tpot.p50_ms),
                _ms(level.e2e.p50_ms),
            ]
            if with_slo:
                gp = level.goodput
                cells.append(f"{gp.fraction:.0%}" if gp is not None and gp.fraction is not None else "-")
                cells.append(f"{gp.output_throughput:.1f}" if gp is not None else "-")
            st.add_row(*cells)
        console.print(st)
        if sweep.knee_note:
            console.print(f"knee: {sweep.knee_note}", highlight=False, markup=False)
        if sweep.stop is not None:
            console.print(
                f"sweep stopped at concurrency {sweep.stop.concurrency}: {sweep.stop.reason} "
                f"({sweep.stop.detail}); rule: {sweep.saturation_rule}",
                highlight=False,
                markup=False,
            )
    prefix = report.figures("prefix_caching", PrefixFigures)
    if prefix is not None and prefix.use_cases:
        ut = Table(title="where prefix caching pays (cold vs warm TTFT)")
        for col in ("use case", "prefix tokens", "cold p50 ms", "warm p50 ms", "speedup", "pays"):
            ut.add_column(col, justify="right")
        for case in prefix.use_cases:
            ut.add_row(
                case.name,
                str(case.prefix_tokens or "-"),
                _ms(case.cold_ttft_ms),
                _ms(case.warm_ttft_ms),
                f"{case.speedup:.2f}x" if case.speedup is not None else "-",
                "yes" if case.pays else "no",
            )
        console.print(ut)
    _open_loop_table(report, console)
    _baseline_table(report, console)
    for note in report.notes:
        console.print(f"note: {note}", highlight=False, markup=False)
    if report.run_error:
        console.print(f"[bold magenta]run error:[/bold magenta] {escape(report.run_error)}", highlight=False)
    verdict_style = {"passed": "bold green", "failed": "bold red"}.get(report.outcome or "", "bold magenta")
    console.print(
        f"[{verdict_style}]{(report.outcome or 'error').upper()}[/{verdict_style}] "
        f"(exit {report.exit_code}) in {report.duration_s or 0:.1f} s; "
        f"report: {escape(report.files.get('json', '-'))}",
        highlight=False,
    )


def _ms(value: object) -> str:
    return f"{value:.0f}" if isinstance(value, int | float) else "-"


def _open_loop_table(report: VerifyReport, console: Console) -> None:
    fig = report.figures("open_loop", OpenLoopFigures)
    if fig is None or not fig.rates:
        return
    with_slo = any(r.goodput is not None for r in fig.rates)
    table = Table(title=f"open-loop arrivals (burstiness {fig.burstiness:g}; 1 = Poisson)")
    columns = ["offered req/s", "requests", "failed", "achieved req/s", "output tok/s", "TTFT p50/p99 ms"]
    columns += ["TPOT p50/p99 ms", "E2E p50/p99 ms", *(("within SLO", "goodput req/s") if with_slo else ())]
    for col in columns:
        table.add_column(col, justify="right")
    for r in fig.rates:
        cells = [
            f"{r.rate:g}",
            str(r.requests),
            str(r.failed),
            f"{r.achieved_request_rate:.2f}",
            f"{r.output_throughput:.1f}",
            f"{_ms(r.ttft.p50_ms)}/{_ms(r.ttft.p99_ms)}",
            f"{_ms(r.tpot.p50_ms)}/{_ms(r.tpot.p99_ms)}",
            f"{_ms(r.e2e.p50_ms)}/{_ms(r.e2e.p99_ms)}",
        ]
        if with_slo:
            gp = r.goodput
            cells.append(f"{gp.fraction:.0%}" if gp is not None and gp.fraction is not None else "-")
            cells.append(f"{gp.request_throughput:.2f}" if gp is not None else "-")
        table.add_row(*cells)
    console.print(table)
    if with_slo:
        best = fig.max_rate_meeting_slo
        console.print(
            f"highest offered rate meeting the SLO: {f'{best:g} req/s' if best is not None else 'none'}",
            highlight=False,
            markup=False,
        )


def _baseline_table(report: VerifyReport, console: Console) -> None:
    fig = report.figures("baseline", BaselineFigures)
    if fig is None or not fig.metrics:
        return
    table = Table(
        title=(
            f"baseline: {fig.baseline.report} ({fig.baseline.started_at or '?'}) vs this run; "
            f"tolerance = max(noise, floor {fig.floor:.0%}; latency {fig.latency_floor:.0%})"
        )
    )
    for col in ("figure", "baseline", "this run", "change", "noise", "tolerance", "regressed"):
        table.add_column(col, justify="right")
    for m in fig.metrics:
        table.add_row(
            f"{m.label} ({m.better} is better)",
            _num(m.baseline, m.unit),
            _num(m.current, m.unit),
            _pct(m.change),
            _pct(m.noise),
            _pct(m.tolerance),
            "[bold red]YES[/bold red]" if m.regressed else ("no" if m.judged else escape(m.note)),
        )
    console.print(table)


def _num(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:.4g} {unit}".rstrip()


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f}%"
