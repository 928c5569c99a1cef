"""The baseline regression gate: compare this run's figures with a previous report of the same workload.

``kvstack verify --baseline PREVIOUS.json`` reads a previous ``verify-report.json``. It is refused (exit 2)
when it is not a complete kvstack report or when its workload differs (model, prompt and output lengths,
sweep levels, prefix shape, seed: every config field that shapes the requests sent); see
:func:`workload_differences`. Otherwise these figures are compared:

================================  ===========  ==========================================================
figure                            better       where it is read (report JSON)
================================  ===========  ==========================================================
peak output throughput (tok/s)    higher       ``sweep.peak_throughput``
goodput concurrency               higher       ``goodput_capacity.goodput_concurrency`` (both runs)
TTFT p50 / p99 (ms)               lower        ``sweep.levels[].ttft`` at the baseline's peak level
TPOT p50 / p99 (ms)               lower        ``sweep.levels[].tpot`` at the baseline's peak level
prefix-caching speedup            higher       ``prefix_caching.speedup``: median cold / median warm TTFT
================================  ===========  ==========================================================

A figure regresses when it got worse by more than BOTH the noise and its floor: 10% by default, 20% for the
latency percentiles (``latency_floor``; on the H200 TTFT p50 at the peak level moved 8-15% between
identical runs while peak throughput moved under 6%, see docs/gpu.md). The noise is measured on this run,
from the per-request samples behind each figure, as the half-width of a ``confidence`` interval relative
to the figure. The baseline is an estimate of the same workload with the same sample sizes, so the noise
of the difference is sqrt(2) times that: tolerance = max(sqrt(2) x noise, floor). The intervals count
requests as independent, which the requests of one closed-loop level are not (a wave shares its queue),
so they measure less than the variation between runs: the floors carry that. The samples and intervals:

- peak throughput: the per-request output rates (output tokens / end-to-end latency) of the peak sweep
  level; in a closed loop the level's throughput is its concurrency times their mean, so the mean's
  relative spread is the throughput's. Seeded bootstrap (``resamples`` draws with replacement).
- TTFT and TPOT percentiles: the per-request TTFT and TPOT of that sweep level. The distribution-free
  interval of a percentile: the order statistics X(l) <= X(u) that hold the true percentile with at least
  ``confidence`` (binomial ranks, equal tails). A bootstrap cannot do this for a tail percentile: from 32
  requests p99 is about the largest, every resample's largest is one of the few largest, and it reported
  0.1% noise where the next run's p99 was 92% higher (CI, the 2-core box). When the sample is too small
  for the interval to close (fewer than ``samples_to_bound``: 368 requests for p99 at 95%), the figure is
  shown and its change, but it is not judged: the report says so and how many requests would do.
- prefix speedup: the cold/warm pairs (bootstrap: a resample draws pairs, then takes median cold /
  median warm);
- goodput concurrency: a level of the sweep, not a sample statistic: only the floor applies.

Everything here is pure: a report dict and samples in, figures and a verdict out.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from itertools import accumulate
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

from kvstack.bench.stats import median, percentile

REPORT_VERSION_PREFIX = "kvstack.verify/"

T = TypeVar("T")

# Both runs' figures are estimates of the same workload with the same sample sizes: the spread of their
# difference is sqrt(2) times one run's (independent, equal variances).
DIFFERENCE_NOISE = math.sqrt(2.0)

# config fields that say where and how strictly to measure, not what load is sent
NOT_WORKLOAD = frozenset(
    {
        "version",
        "endpoint",
        "api_key",
        "metrics_url",
        "model",  # compared as the model the server answered with, see workload_differences
        "thresholds",
        "expected_capacity",
        "timeouts",
        "client",
        "plots",
        "baseline",
        "fleet",  # where each engine's counters are read, not what is sent
    }
)


class BaselineError(ValueError):
    """The previous report cannot be used as a baseline; the message says why and names the file."""


class Better(StrEnum):
    HIGHER = "higher"
    LOWER = "lower"


class MetricSpec(BaseModel):
    key: str
    label: str
    unit: str
    better: Better
    # a latency percentile (judged against the latency floor): of which per-request samples, which one
    distribution: Literal["ttft", "tpot"] | None = None
    percentile: float | None = None  # 0-100

    @property
    def latency(self) -> bool:
        return self.distribution is not None


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        key="peak_output_throughput", label="peak output throughput", unit="tok/s", better=Better.HIGHER
    ),
    MetricSpec(key="goodput_concurrency", label="goodput concurrency", unit="", better=Better.HIGHER),
    MetricSpec(
        key="ttft_p50_ms",
        label="TTFT p50",
        unit="ms",
        better=Better.LOWER,
        distribution="ttft",
        percentile=50,
    ),
    MetricSpec(
        key="ttft_p99_ms",
        label="TTFT p99",
        unit="ms",
        better=Better.LOWER,
        distribution="ttft",
        percentile=99,
    ),
    MetricSpec(
        key="tpot_p50_ms",
        label="TPOT p50",
        unit="ms",
        better=Better.LOWER,
        distribution="tpot",
        percentile=50,
    ),
    MetricSpec(
        key="tpot_p99_ms",
        label="TPOT p99",
        unit="ms",
        better=Better.LOWER,
        distribution="tpot",
        percentile=99,
    ),
    MetricSpec(key="prefix_speedup", label="prefix-caching speedup", unit="x", better=Better.HIGHER),
)


class ComparedFigures(BaseModel):
    """The figures of one run that the gate compares; ``None`` where the run did not measure it."""

    peak_output_throughput: float | None = None
    peak_concurrency: int | None = None
    latency_concurrency: int | None = None  # the sweep level the latency percentiles are read at
    goodput_concurrency: float | None = None
    ttft_p50_ms: float | None = None
    ttft_p99_ms: float | None = None
    tpot_p50_ms: float | None = None
    tpot_p99_ms: float | None = None
    prefix_speedup: float | None = None
    ttft_count: int | None = None  # requests behind the TTFT percentiles
    tpot_count: int | None = None

    def value(self, key: str) -> float | None:
        value = getattr(self, key)
        return None if value is None else float(value)

    def count(self, distribution: str) -> int | None:
        """Requests behind the percentiles of ``distribution`` (``ttft`` or ``tpot``)."""
        count: int | None = getattr(self, f"{distribution}_count")
        return count


class SweepCurve(BaseModel):
    """Throughput per sweep level, for the side-by-side plot."""

    concurrency: list[int]
    output_throughput: list[float]


class MetricComparison(BaseModel):
    key: str
    label: str
    unit: str
    better: Better
    baseline: float | None
    current: float | None
    change: float | None  # (current - baseline) / baseline
    regression: float | None  # the change in the "worse" direction (negative: it improved)
    noise: float | None  # relative, measured on this run
    tolerance: float | None  # max(sqrt(2) x noise, floor); None when the figure is not judged
    regressed: bool
    judged: bool = True  # False: not measured in both runs, or this run's samples cannot bound it
    note: str = ""


class RunSide(BaseModel):
    """One run of the comparison, for the report's side-by-side view."""

    report: str  # file, or "this run"
    started_at: str | None
    kvstack_version: str | None
    server_version: str | None
    model: str | None
    figures: ComparedFigures
    sweep: SweepCurve


class BaselineFigures(BaseModel):
    floor: float
    latency_floor: float
    confidence: float
    resamples: int
    baseline: RunSide
    current: RunSide
    metrics: list[MetricComparison]

    @property
    def regressions(self) -> list[MetricComparison]:
        return [m for m in self.metrics if m.regressed]

    @property
    def compared(self) -> list[MetricComparison]:
        """Measured in both runs: the change is shown."""
        return [m for m in self.metrics if m.change is not None]

    @property
    def judged(self) -> list[MetricComparison]:
        """Compared and held to a tolerance: these decide the verdict."""
        return [m for m in self.compared if m.judged]


# ---- reading reports -------------------------------------------------------------------------


def read_report(path: Path) -> dict[str, Any]:
    """A previous verify report as a dict; ``BaselineError`` naming the file when it cannot be one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BaselineError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise BaselineError(f"{path}: not JSON: {exc}") from exc
    if not isinstance(data, dict) or not str(data.get("report_version", "")).startswith(
        REPORT_VERSION_PREFIX
    ):
        raise BaselineError(
            f"{path}: not a kvstack verify report (no report_version {REPORT_VERSION_PREFIX}*)"
        )
    if not data.get("complete"):
        raise BaselineError(f"{path}: an incomplete (partial) report cannot be a baseline")
    if not isinstance(data.get("config"), dict) or not isinstance(data.get("checks"), list):
        raise BaselineError(f"{path}: report without 'config' or 'checks'")
    return data


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat |= _flatten(value, f"{prefix}{key}.")
        return flat
    return {prefix.removesuffix("."): tree}


def workload_differences(previous_config: dict[str, Any], current_config: dict[str, Any]) -> list[str]:
    """The workload fields (every config field but ``NOT_WORKLOAD``) whose values differ, as lines."""
    prev = _flatten({k: v for k, v in previous_config.items() if k not in NOT_WORKLOAD})
    cur = _flatten({k: v for k, v in current_config.items() if k not in NOT_WORKLOAD})
    return [
        f"{key}: {prev.get(key, '(absent)')!r} in the baseline, {cur.get(key, '(absent)')!r} now"
        for key in sorted(prev.keys() | cur.keys())
        if prev.get(key) != cur.get(key)
    ]


def check_figures(report: dict[str, Any], name: str) -> dict[str, Any]:
    for check in report.get("checks") or []:
        if isinstance(check, dict) and check.get("name") == name:
            figures = check.get("figures")
            return figures if isinstance(figures, dict) else {}
    return {}


def _num(tree: dict[str, Any], *path: str) -> float | None:
    node: Any = tree
    for part in path:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return float(node) if isinstance(node, int | float) and not isinstance(node, bool) else None


def compared_figures(report: dict[str, Any], latency_concurrency: int | None = None) -> ComparedFigures:
    """The compared figures of a report (a saved JSON or ``VerifyReport.model_dump(mode="json")``).

    Latency percentiles are those of the sweep level at ``latency_concurrency`` (default: the report's
    own peak level): the same load in both runs, not a mix of one-at-a-time and concurrent requests."""
    sweep = check_figures(report, "sweep")
    prefix = check_figures(report, "prefix_caching")
    capacity = check_figures(report, "goodput_capacity")
    peak_c = _num(sweep, "peak_concurrency")
    at = latency_concurrency if latency_concurrency is not None else peak_c
    levels = [lv for lv in sweep.get("levels") or [] if isinstance(lv, dict)]
    latency = next((lv for lv in levels if at is not None and lv.get("concurrency") == at), {})
    return ComparedFigures(
        peak_output_throughput=_num(sweep, "peak_throughput"),
        peak_concurrency=int(peak_c) if peak_c is not None else None,
        latency_concurrency=int(at) if at is not None and latency else None,
        goodput_concurrency=_num(capacity, "goodput_concurrency"),
        ttft_p50_ms=_num(latency, "ttft", "p50_ms"),
        ttft_p99_ms=_num(latency, "ttft", "p99_ms"),
        tpot_p50_ms=_num(latency, "tpot", "p50_ms"),
        tpot_p99_ms=_num(latency, "tpot", "p99_ms"),
        prefix_speedup=_num(prefix, "speedup"),
        ttft_count=_count(latency, "ttft"),
        tpot_count=_count(latency, "tpot"),
    )


def _count(level: dict[str, Any], dist: str) -> int | None:
    count = _num(level, dist, "count")
    return int(count) if count is not None else None


def sweep_curve(report: dict[str, Any]) -> SweepCurve:
    levels = [lv for lv in check_figures(report, "sweep").get("levels") or [] if isinstance(lv, dict)]
    usable = [lv for lv in levels if (lv.get("requests") or 0) > (lv.get("failed") or 0)]
    return SweepCurve(
        concurrency=[int(lv["concurrency"]) for lv in usable],
        output_throughput=[float(lv["output_throughput"]) for lv in usable],
    )


def run_side(report: dict[str, Any], label: str, latency_concurrency: int | None = None) -> RunSide:
    server = report.get("server") if isinstance(report.get("server"), dict) else None
    return RunSide(
        report=label,
        started_at=report.get("started_at"),
        kvstack_version=report.get("kvstack_version"),
        server_version=(server or {}).get("version"),
        model=(server or {}).get("model"),
        figures=compared_figures(report, latency_concurrency),
        sweep=sweep_curve(report),
    )


# ---- noise -----------------------------------------------------------------------------------


def bootstrap_noise(
    samples: Sequence[T],
    statistic: Callable[[Sequence[T]], float],
    *,
    resamples: int,
    confidence: float,
    seed: int,
) -> float | None:
    """Half-width of the bootstrap ``confidence`` interval of ``statistic``, relative to its value.

    ``None`` with fewer than 2 samples or a zero statistic (no spread can be measured)."""
    if len(samples) < 2 or resamples < 2:
        return None
    point = statistic(samples)
    if point == 0:
        return None
    rng = random.Random(seed)
    n = len(samples)
    values = [statistic([samples[rng.randrange(n)] for _ in range(n)]) for _ in range(resamples)]
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = percentile(values, tail), percentile(values, 100.0 - tail)
    return abs(high - low) / 2.0 / abs(point)


class RunSamples(BaseModel):
    """Per-request samples of this run behind the compared figures (seconds; pairs of TTFTs)."""

    peak_level_output_rates: list[float] = []  # output tokens / e2e of each request of the peak level
    ttft_s: list[float] = []  # of each request of the level the latency percentiles are read at
    tpot_s: list[float] = []
    prefix_pairs: list[tuple[float, float]] = []  # (cold TTFT, warm TTFT)

    def latencies(self, distribution: str) -> list[float]:
        """The per-request samples of ``distribution`` (``ttft`` or ``tpot``)."""
        values: list[float] = getattr(self, f"{distribution}_s")
        return values


def _speedup(pairs: Sequence[tuple[float, float]]) -> float:
    warm = median([w for _, w in pairs])
    return median([c for c, _ in pairs]) / warm if warm > 0 else 0.0


def quantile_ranks(n: int, q: float, confidence: float) -> tuple[int, int] | None:
    """1-based ranks (l, u) of the order statistics X(l) <= X(u) of ``n`` samples that hold the true
    q-th percentile (0 < q < 100) with probability at least ``confidence``, equal tails; ``None`` when
    ``n`` samples cannot bound it on both sides (see :func:`samples_to_bound`).

    The number B of samples at or below the true percentile is Binomial(n, q/100), so
    P(X(l) > true) = P(B <= l - 1) and P(X(u) < true) = P(B >= u); l is the largest rank and u the
    smallest whose tail is at most (1 - confidence) / 2. Distribution-free: nothing is assumed of the
    latencies but that they are independent draws."""
    if n < 1 or not 0 < q < 100:
        return None
    p = q / 100.0
    tail = (1.0 - confidence) / 2.0
    log_p, log_1p = math.log(p), math.log1p(-p)
    pmf = [
        math.exp(
            math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_p + (n - k) * log_1p
        )
        for k in range(n + 1)
    ]
    at_most = list(accumulate(pmf))  # at_most[k] = P(B <= k)
    at_least = list(accumulate(reversed(pmf)))[::-1]  # at_least[k] = P(B >= k), summed from its own tail
    lower = [rank for rank in range(1, n + 1) if at_most[rank - 1] <= tail]
    upper = [rank for rank in range(1, n + 1) if at_least[rank] <= tail]
    if not lower or not upper:
        return None
    return max(lower), min(upper)


def samples_to_bound(q: float, confidence: float) -> int:
    """The fewest samples whose order statistics bound the q-th percentile at ``confidence``: both the
    smallest and the largest sample must lie beyond it with the tail probability, so
    max(p, 1 - p)^n <= (1 - confidence) / 2. 6 for a median, 368 for p99, at 95%."""
    p = q / 100.0
    return math.ceil(math.log((1.0 - confidence) / 2.0) / math.log(max(p, 1.0 - p)))


def quantile_noise(samples: Sequence[float], q: float, confidence: float) -> float | None:
    """Half-width of the distribution-free ``confidence`` interval of the q-th percentile, relative to
    the percentile; ``None`` when it cannot be measured (too few samples to bound it, or a zero figure)."""
    ranks = quantile_ranks(len(samples), q, confidence)
    point = percentile(samples, q) if samples else 0.0
    if ranks is None or point == 0:
        return None
    ordered = sorted(samples)
    low, high = ordered[ranks[0] - 1], ordered[ranks[1] - 1]
    return (high - low) / 2.0 / abs(point)


def run_noise(
    samples: RunSamples, *, resamples: int, confidence: float, seed: int
) -> dict[str, float | None]:
    """Relative noise of each compared figure from this run's samples (see the module doc)."""

    def noise(values: Sequence[T], stat: Callable[[Sequence[T]], float], salt: int) -> float | None:
        return bootstrap_noise(values, stat, resamples=resamples, confidence=confidence, seed=seed + salt)

    def mean(xs: Sequence[float]) -> float:
        return sum(xs) / len(xs)

    return {
        "peak_output_throughput": noise(samples.peak_level_output_rates, mean, 1),
        "goodput_concurrency": None,
        "prefix_speedup": noise(samples.prefix_pairs, _speedup, 6),
    } | {
        spec.key: quantile_noise(samples.latencies(spec.distribution), spec.percentile, confidence)
        for spec in METRICS
        if spec.distribution is not None and spec.percentile is not None
    }


def unbounded_figures(
    samples: RunSamples, confidence: float, baseline: ComparedFigures | None = None
) -> dict[str, str]:
    """The percentile figures too few requests bound, each with why: this run's, or the baseline's when
    it had fewer (its count is in its report). They are shown with their change but not judged: a p99
    of 32 requests is about their largest, one request's luck."""
    unbounded: dict[str, str] = {}
    for spec in METRICS:
        if spec.distribution is None or spec.percentile is None:
            continue
        n = len(samples.latencies(spec.distribution))
        before = None if baseline is None else baseline.count(spec.distribution)
        need = samples_to_bound(spec.percentile, confidence)
        fewest = min(n, before) if before else n
        if 0 < fewest < need:
            counts = f"{n} requests" + (
                f" (the baseline {before})" if before is not None and before != n else ""
            )
            unbounded[spec.key] = (
                f"not judged: {counts} cannot bound a p{spec.percentile:g} at {confidence:.0%} "
                f"confidence, {need} can (--min-phase-requests)"
            )
    return unbounded


# ---- comparison ------------------------------------------------------------------------------


def compare_metric(
    spec: MetricSpec,
    baseline: float | None,
    current: float | None,
    noise: float | None,
    floor: float,
    *,
    unbounded: str = "",
) -> MetricComparison:
    """One figure: regressed when it got worse by more than both the noise of the difference
    (``DIFFERENCE_NOISE x noise``) and ``floor`` (all relative). ``unbounded``: why this run's samples
    cannot bound the figure; its change is shown and not judged."""
    change: float | None = None
    regression: float | None = None
    note = ""
    if baseline is None or current is None:
        note = f"not compared: not measured in {'the baseline' if baseline is None else 'this run'}"
    elif baseline <= 0:
        note = "not compared: baseline value is zero"
    else:
        change = (current - baseline) / baseline
        regression = -change if spec.better is Better.HIGHER else change
        note = unbounded
    judged = change is not None and not unbounded
    tolerance: float | None = None
    if judged:
        tolerance = max(floor, DIFFERENCE_NOISE * noise) if noise is not None else floor
    return MetricComparison(
        key=spec.key,
        label=spec.label,
        unit=spec.unit,
        better=spec.better,
        baseline=baseline,
        current=current,
        change=change,
        regression=regression,
        noise=noise,
        tolerance=tolerance,
        regressed=judged and regression is not None and tolerance is not None and regression > tolerance,
        judged=judged,
        note=note,
    )


def compare_runs(
    baseline: RunSide,
    current: RunSide,
    noise: dict[str, float | None],
    *,
    floor: float,
    latency_floor: float | None = None,
    confidence: float,
    resamples: int,
    unbounded: Mapping[str, str] | None = None,
) -> BaselineFigures:
    """Compare every figure of ``METRICS``: pure. Latency percentiles are held to ``latency_floor``
    (default: ``floor``), the other figures to ``floor``; those in ``unbounded`` (figure -> why, from
    :func:`unbounded_figures`) are shown and not judged."""
    lat_floor = floor if latency_floor is None else latency_floor
    metrics = [
        compare_metric(
            spec,
            baseline.figures.value(spec.key),
            current.figures.value(spec.key),
            noise.get(spec.key),
            lat_floor if spec.latency else floor,
            unbounded=(unbounded or {}).get(spec.key, ""),
        )
        for spec in METRICS
    ]
    return BaselineFigures(
        floor=floor,
        latency_floor=lat_floor,
        confidence=confidence,
        resamples=resamples,
        baseline=baseline,
        current=current,
        metrics=metrics,
    )


def judge_baseline(fig: BaselineFigures) -> tuple[bool | None, str]:
    """(passed, reason): ``None`` when nothing could be compared (the gate cannot judge)."""
    if not fig.compared:
        return None, "no figure was measured in both runs"
    if not fig.judged:
        return None, "no figure measured in both runs could be judged: " + "; ".join(
            f"{m.label}: {m.note}" for m in fig.compared
        )
    bad = fig.regressions
    if bad:
        return False, "; ".join(
            f"{m.label} {_fmt(m.baseline)} -> {_fmt(m.current)}{m.unit and ' ' + m.unit} "
            f"({_pct(m.regression)} worse > tolerance {_pct(m.tolerance)})"
            for m in bad
        )
    worst = max(fig.judged, key=lambda m: (m.regression or 0.0) - (m.tolerance or 0.0))
    unjudged = len(fig.compared) - len(fig.judged)
    return True, (
        f"{len(fig.judged)} figures within tolerance of the baseline (closest: {worst.label} "
        f"{_pct(worst.regression)} worse, tolerance {_pct(worst.tolerance)})"
        + (f"; {unjudged} shown but not judged (too few requests to bound them)" if unjudged else "")
    )


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f}%"
