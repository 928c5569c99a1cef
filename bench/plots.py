"""PNG plots from a report: throughput and TTFT against concurrency (where the sweep stopped marked),
goodput under the SLO per level, cold against warm TTFT.

Read from the report's figures (so a saved JSON can be re-plotted). matplotlib is the ``plots`` extra:
without it the plots are skipped and the report (and the console) says what to install.
"""

from __future__ import annotations

from pathlib import Path

from kvstack.bench.baseline import BaselineFigures
from kvstack.bench.figures import OpenLoopFigures, PrefixFigures, SweepFigures
from kvstack.bench.report import VerifyReport

SWEEP_PNG = "sweep.png"
PLOTS_MISSING_NOTE = (
    "matplotlib is not installed: PNG plots skipped (JSON and JUnit are written); "
    "pip install 'kvstack[plots]' for them"
)
PREFIX_PNG = "prefix_cold_vs_warm.png"
GOODPUT_PNG = "goodput.png"
OPEN_LOOP_PNG = "open_loop.png"
BASELINE_PNG = "baseline.png"


def matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_plots(report: VerifyReport, out_dir: Path) -> tuple[dict[str, str], list[str]]:
    """Write the PNGs that the report has data for: ({name: path}, notes)."""
    if not matplotlib_available():
        return {}, [PLOTS_MISSING_NOTE]
    import matplotlib

    matplotlib.use("Agg")
    files: dict[str, str] = {}
    sweep = report.figures("sweep", SweepFigures)
    if sweep is not None and sweep.levels:
        path = out_dir / SWEEP_PNG
        _plot_sweep(sweep, path, report.endpoint)
        files["sweep_png"] = str(path)
        if any(lv.goodput is not None for lv in sweep.levels):
            path = out_dir / GOODPUT_PNG
            _plot_goodput(sweep, path, report.endpoint)
            files["goodput_png"] = str(path)
    prefix = report.figures("prefix_caching", PrefixFigures)
    if prefix is not None and (prefix.speedup or prefix.use_cases):
        path = out_dir / PREFIX_PNG
        if _plot_prefix(prefix, path, report.endpoint):
            files["prefix_png"] = str(path)
    open_loop = report.figures("open_loop", OpenLoopFigures)
    if open_loop is not None and any(r.requests > r.failed for r in open_loop.rates):
        path = out_dir / OPEN_LOOP_PNG
        _plot_open_loop(open_loop, path, report.endpoint)
        files["open_loop_png"] = str(path)
    baseline = report.figures("baseline", BaselineFigures)
    if baseline is not None and baseline.metrics:
        path = out_dir / BASELINE_PNG
        _plot_baseline(baseline, path, report.endpoint)
        files["baseline_png"] = str(path)
    return files, []


def _plot_open_loop(fig_data: OpenLoopFigures, path: Path, endpoint: str) -> None:
    import matplotlib.pyplot as plt

    rates = [r for r in fig_data.rates if r.requests > r.failed]
    offered = [r.rate for r in rates]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.plot(offered, [r.achieved_request_rate for r in rates], marker="o", label="achieved")
    ax1.plot(offered, offered, linestyle="--", color="grey", label="offered")
    ax1.set_xlabel("offered requests/s")
    ax1.set_ylabel("completed requests/s")
    ax1.set_title("open loop: achieved rate")
    ax1.legend()
    ax2.plot(offered, [r.ttft.p50_ms or 0.0 for r in rates], marker="o", label="TTFT p50")
    ax2.plot(offered, [r.ttft.p99_ms or 0.0 for r in rates], marker="^", label="TTFT p99")
    ax2.plot(offered, [r.tpot.p50_ms or 0.0 for r in rates], marker="s", label="TPOT p50")
    ax2.set_xlabel("offered requests/s")
    ax2.set_ylabel("ms")
    ax2.set_title("latency")
    ax2.legend()
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"open-loop arrivals (burstiness {fig_data.burstiness:g}) - {endpoint}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_baseline(fig_data: BaselineFigures, path: Path, endpoint: str) -> None:
    """Left: both runs' sweep throughput; right: each figure's change (worse is up) against its tolerance."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.6))
    for side, marker in ((fig_data.baseline, "o"), (fig_data.current, "s")):
        ax1.plot(side.sweep.concurrency, side.sweep.output_throughput, marker=marker, label=side.report)
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel("concurrency")
    ax1.set_ylabel("output tokens/s")
    ax1.set_title("sweep throughput, both runs")
    ax1.legend(fontsize=8)
    ax1.grid(True, alpha=0.3)
    compared = fig_data.compared
    xs = list(range(len(compared)))
    worse = [(m.regression or 0.0) * 100 for m in compared]
    colours = ["tab:red" if m.regressed else "tab:green" if m.judged else "tab:grey" for m in compared]
    ax2.bar(xs, worse, color=colours)
    judged = [(x, m.tolerance * 100) for x, m in zip(xs, compared, strict=True) if m.tolerance is not None]
    ax2.scatter([x for x, _ in judged], [t for _, t in judged], marker="_", s=600, color="black")
    ax2.axhline(0, color="grey", linewidth=0.8)
    ax2.set_xticks(xs, [m.label for m in compared], rotation=30, ha="right", fontsize=8)
    ax2.set_ylabel("% worse than baseline (bar); tolerance (line)")
    ax2.set_title("regression per figure (red: beyond tolerance; grey: too few requests to judge)")
    ax2.grid(True, axis="y", alpha=0.3)
    fig.suptitle(f"baseline gate - {endpoint}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_sweep(sweep: SweepFigures, path: Path, endpoint: str) -> None:
    import matplotlib.pyplot as plt

    levels = [lv for lv in sweep.levels if lv.requests > lv.failed]
    conc = [lv.concurrency for lv in levels]
    tput = [lv.output_throughput for lv in levels]
    ttft50 = [lv.ttft.p50_ms or 0.0 for lv in levels]
    ttft99 = [lv.ttft.p99_ms or 0.0 for lv in levels]
    tpot50 = [lv.tpot.p50_ms or 0.0 for lv in levels]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.plot(conc, tput, marker="o")
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel("concurrency")
    ax1.set_ylabel("output tokens/s")
    ax1.set_title("throughput")
    knee = sweep.knee_concurrency
    if knee is not None and knee in conc:
        ax1.axvline(knee, linestyle="--", color="grey")
        ax1.annotate("knee", (knee, max(tput) * 0.5), rotation=90, color="grey")
    if sweep.stop is not None and sweep.stop.concurrency in conc:
        ax1.axvline(sweep.stop.concurrency, linestyle=":", color="red")
        ax1.annotate(
            f"stop: {sweep.stop.reason}", (sweep.stop.concurrency, max(tput) * 0.1), rotation=90, color="red"
        )
    ax2.plot(conc, ttft50, marker="o", label="TTFT p50")
    ax2.plot(conc, ttft99, marker="^", label="TTFT p99")
    ax2.plot(conc, tpot50, marker="s", label="TPOT p50")
    ax2.set_xscale("log", base=2)
    ax2.set_xlabel("concurrency")
    ax2.set_ylabel("ms")
    ax2.set_title("latency")
    ax2.legend()
    for ax in (ax1, ax2):
        ax.set_xticks(conc, [str(c) for c in conc])
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"concurrency sweep - {endpoint}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_goodput(sweep: SweepFigures, path: Path, endpoint: str) -> None:
    import matplotlib.pyplot as plt

    levels = [lv for lv in sweep.levels if lv.goodput is not None]
    conc = [lv.concurrency for lv in levels]
    xs = list(range(len(levels)))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.bar(
        [x - 0.2 for x in xs],
        [lv.output_throughput for lv in levels],
        0.4,
        label="all requests",
        color="#bbb",
    )
    ax1.bar(
        [x + 0.2 for x in xs],
        [lv.goodput.output_throughput if lv.goodput else 0.0 for lv in levels],
        0.4,
        label="requests within SLO (goodput)",
    )
    ax1.set_ylabel("output tokens/s")
    ax1.set_title("goodput per level")
    ax1.legend()
    fractions = [(lv.goodput.fraction or 0.0) * 100 if lv.goodput else 0.0 for lv in levels]
    ax2.bar(xs, fractions, 0.6)
    if sweep.slo_min_fraction is not None:
        ax2.axhline(sweep.slo_min_fraction * 100, linestyle="--", color="grey")
        ax2.annotate(f"meets: >= {sweep.slo_min_fraction:.0%}", (0, sweep.slo_min_fraction * 100 + 1))
    ax2.set_ylim(0, 105)
    ax2.set_ylabel("% of requests within SLO")
    objectives = ", ".join(
        part
        for part in (
            f"TTFT <= {sweep.slo_ttft_ms:g} ms" if sweep.slo_ttft_ms is not None else "",
            f"ITL <= {sweep.slo_itl_ms:g} ms" if sweep.slo_itl_ms is not None else "",
        )
        if part
    )
    ax2.set_title(
        f"within SLO ({objectives})\nhighest concurrency meeting it: {sweep.goodput_concurrency or 'none'}",
        fontsize=9,
    )
    for ax in (ax1, ax2):
        ax.set_xticks(xs, [str(c) for c in conc])
        ax.set_xlabel("concurrency")
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(f"goodput under SLO - {endpoint}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_prefix(prefix: PrefixFigures, path: Path, endpoint: str) -> bool:
    import matplotlib.pyplot as plt

    labels: list[str] = []
    cold: list[float] = []
    warm: list[float] = []
    if prefix.cold_ttft_ms and prefix.warm_ttft_ms:
        labels.append(f"check\n{prefix.prefix_tokens or '?'} tok")
        cold.append(prefix.cold_ttft_ms)
        warm.append(prefix.warm_ttft_ms)
    for case in prefix.use_cases:
        if case.cold_ttft_ms and case.warm_ttft_ms:
            labels.append(f"{case.name}\n{case.prefix_tokens or '?'} tok")
            cold.append(case.cold_ttft_ms)
            warm.append(case.warm_ttft_ms)
    if not labels:
        return False
    xs = list(range(len(labels)))
    width = 0.38
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(labels)), 4.2))
    ax.bar([x - width / 2 for x in xs], cold, width, label="cold (prefix never seen)")
    ax.bar([x + width / 2 for x in xs], warm, width, label="warm (same prefix)")
    for x, c, w in zip(xs, cold, warm, strict=True):
        ax.annotate(f"{c / w:.1f}x", (x, max(c, w)), ha="center", va="bottom", fontsize=9)
    ax.set_xticks(xs, labels, fontsize=8)
    ax.set_ylabel("median TTFT, ms")
    ax.set_title(f"prefix caching: cold vs warm - {endpoint}", fontsize=10)
    ax.legend()
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
