"""Command line of ``kvstack verify``: flags -> ``VerifyConfig`` -> ``run_verify`` -> exit code.

``add_parser(subparsers)`` registers the subcommand on the ``kvstack`` parser; ``main(argv)`` runs it
standalone (``python -m kvstack.bench``; ``python -m kvstack verify`` adds kvstack.cli's error handling).
Flags override the config file; both are validated by one model.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kvstack.bench.baseline import BaselineError, read_report, workload_differences
from kvstack.bench.config import (
    VerifyConfig,
    build_config,
    deep_merge,
    read_config_file,
    read_stack_outputs,
)
from kvstack.bench.console import make_display, render_report, result_console
from kvstack.bench.report import EXIT_ERROR
from kvstack.errors import ConfigError
from kvstack.output_paths import OutputPathError, check_output_dir

DEFAULT_OUT = Path("reports/verify")
API_KEY_ENV = "VLLM_API_KEY"

# flag, config path(s), type, help
_VALUE_FLAGS: tuple[tuple[str, tuple[str, ...], type, str], ...] = (
    ("--model", ("model",), str, "served model name (default: the first of /v1/models)"),
    ("--metrics-url", ("metrics_url",), str, "where /metrics is, if not <endpoint>/metrics"),
    ("--prompts", ("batching.prompts",), int, "distinct prompts for the batching check (>= 16)"),
    (
        "--prompt-tokens",
        ("batching.prompt_tokens", "sweep.prompt_tokens", "open_loop.prompt_tokens"),
        int,
        "prompt length of load requests",
    ),
    (
        "--output-tokens",
        ("batching.output_tokens", "sweep.output_tokens", "open_loop.output_tokens"),
        int,
        "fixed output length (ignore_eos)",
    ),
    (
        "--sweep-max",
        ("sweep.max_concurrency",),
        int,
        "cap of the sweep's levels 1, 2, 4, ... (default: from the target: the KV max concurrency and "
        "--max-num-seqs, the smaller)",
    ),
    (
        "--max-num-seqs",
        ("sweep.max_num_seqs",),
        int,
        "the server's --max-num-seqs, bounds the sweep (stack outputs: slo.max_num_seqs)",
    ),
    ("--sweep-rounds", ("sweep.rounds",), int, "each sweep level completes at least rounds x level requests"),
    (
        "--saturation-gain",
        ("sweep.saturation_gain",),
        float,
        "the sweep stops when a level gains less than this share of output tok/s while TTFT grows",
    ),
    (
        "--min-phase-seconds",
        ("phases.min_duration_s",),
        float,
        "every load phase lasts at least this",
    ),
    (
        "--min-phase-requests",
        ("phases.min_requests",),
        int,
        "every load phase completes at least this many requests",
    ),
    (
        "--slo-ttft-ms",
        ("slo.ttft_ms",),
        float,
        "TTFT objective of goodput, ms (stack outputs: slo.ttft_seconds)",
    ),
    (
        "--slo-itl-ms",
        ("slo.itl_ms",),
        float,
        "mean inter-token latency (TPOT) objective of goodput, ms (stack outputs: slo.itl_seconds)",
    ),
    (
        "--slo-min-fraction",
        ("slo.min_fraction",),
        float,
        "share of a level's requests that must meet the SLO for the level to meet it",
    ),
    (
        "--min-goodput-concurrency",
        ("slo.min_goodput_concurrency",),
        int,
        "capacity check: this concurrency must meet the SLO (stack outputs: slo.min_goodput_concurrency)",
    ),
    ("--prefix-tokens", ("prefix.prefix_tokens",), int, "shared prefix length of the prefix-caching check"),
    ("--prefix-pairs", ("prefix.pairs",), int, "cold/warm pairs of the prefix-caching check"),
    ("--use-case-pairs", ("prefix.use_case_pairs",), int, "cold/warm pairs per prefix-caching use case"),
    ("--min-block-size", ("thresholds.min_block_size",), int, "pass mark"),
    ("--min-max-concurrency", ("thresholds.min_max_concurrency",), float, "pass mark"),
    ("--min-batching-speedup", ("thresholds.min_batching_speedup",), float, "pass mark"),
    (
        "--min-batching-throughput",
        ("thresholds.min_batching_throughput",),
        float,
        "tok/s pass mark",
    ),
    ("--min-prefix-speedup", ("thresholds.min_prefix_speedup",), float, "pass mark"),
    ("--max-errors", ("thresholds.max_errors",), int, "failed requests tolerated"),
    (
        "--expected-block-size",
        ("expected_capacity.block_size",),
        int,
        "expected capacity (e.g. stack outputs)",
    ),
    ("--expected-num-blocks", ("expected_capacity.num_blocks",), int, "expected KV blocks"),
    ("--expected-kv-tokens", ("expected_capacity.kv_tokens",), int, "expected KV tokens"),
    ("--expected-max-concurrency", ("expected_capacity.max_concurrency",), float, "expected max concurrency"),
    ("--connect-timeout", ("timeouts.connect_s",), float, "seconds"),
    ("--read-timeout", ("timeouts.read_s",), float, "longest silence of a response, seconds"),
    ("--request-timeout", ("timeouts.request_s",), float, "one request end to end, seconds"),
    ("--probe-timeout", ("timeouts.probe_s",), float, "each discovery request, seconds"),
    ("--run-timeout", ("timeouts.run_s",), float, "the whole run, seconds"),
    ("--max-connections", ("client.max_connections",), int, "HTTP connection pool size"),
    (
        "--prometheus",
        ("fleet.prometheus_url",),
        str,
        "a fleet behind the endpoint: read each engine's counters from this Prometheus",
    ),
    (
        "--prometheus-selector",
        ("fleet.prometheus_selector",),
        str,
        'with --prometheus: label matchers of the engines\' series, e.g. namespace="llm",job="vllm"',
    ),
    ("--routing-sessions", ("routing.sessions",), int, "routing check: concurrent sessions"),
    ("--routing-turns", ("routing.turns",), int, "routing check: turns per session"),
    (
        "--min-routing-efficiency",
        ("routing.min_efficiency",),
        float,
        "routing pass mark: fleet prefix-hit ratio / reusable share",
    ),
    ("--seed", ("seed",), int, "seed of the prompt texts and of the open-loop arrival schedules"),
    (
        "--burstiness",
        ("open_loop.burstiness",),
        float,
        "gamma shape of open-loop gaps: 1 Poisson (default), < 1 burstier, > 1 more even",
    ),
    ("--open-loop-requests", ("open_loop.max_requests",), int, "requests per open-loop rate at most"),
    (
        "--open-loop-duration",
        ("open_loop.max_duration_s",),
        float,
        "schedule length per rate at most, s; requests = min(max, rate x this)",
    ),
    (
        "--baseline",
        ("baseline.report",),
        Path,
        "a previous verify-report.json of the same workload: fail (exit 1) on a regression beyond both "
        "this run's noise and --baseline-floor (--baseline-latency-floor for latencies); another "
        "workload is refused (exit 2)",
    ),
    (
        "--baseline-floor",
        ("baseline.floor",),
        float,
        "smallest relative regression that fails the baseline gate",
    ),
    (
        "--baseline-latency-floor",
        ("baseline.latency_floor",),
        float,
        "the same for TTFT/TPOT percentiles, which vary more between identical runs",
    ),
)


def _dest(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", help="base URL of the vLLM server, e.g. http://vllm.prod:8000")
    parser.add_argument("--api-key", help=f"bearer token (default: ${API_KEY_ENV})")
    parser.add_argument(
        "--config", type=Path, help="YAML thresholds/workload file (bench/verify.example.yaml)"
    )
    parser.add_argument(
        "--stack-outputs",
        type=Path,
        metavar="JSON",
        help="the infra's stack outputs (`pulumi stack output --json > o.json`, or `kvstack render "
        "--outputs o.json`): served model, planned KV capacity to compare with, concurrency floor, "
        "SLO (TTFT/ITL objectives, goodput floor, max_num_seqs)",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"report directory (default {DEFAULT_OUT})"
    )
    defaults = VerifyConfig.model_construct()  # the model's defaults, read once for every flag's help
    for flag, paths, typ, help_text in _VALUE_FLAGS:
        parser.add_argument(flag, type=typ, default=None, help=_with_default(help_text, paths, defaults))
    parser.add_argument(
        "--sweep-levels", help="explicit sweep levels, e.g. 1,4,16,64 (overrides --sweep-max)"
    )
    parser.add_argument(
        "--engine-metrics",
        action="append",
        metavar="URL",
        help="a fleet behind the endpoint: one engine's own /metrics URL (repeat per engine)",
    )
    parser.add_argument(
        "--rates",
        help="open-loop arrival rates, requests/s, e.g. 1,2,4: seeded Poisson arrivals besides the sweep",
    )
    parser.add_argument("--no-use-cases", action="store_true", help="skip the prefix-caching use-case table")
    parser.add_argument("--no-chat", action="store_true", help="do not check /v1/chat/completions")
    parser.add_argument("--no-plots", action="store_true", help="do not write PNG plots")
    parser.add_argument(
        "--parse-every-event",
        action="store_true",
        help="decode every SSE event's JSON (slower, stricter client)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output, only the result table")


def config_default(defaults: VerifyConfig, path: str) -> Any:
    """The value at a dotted path of ``defaults`` (``VerifyConfig.model_construct()``): a field's default,
    as the model declares it; None under an optional section."""
    node: Any = defaults
    for part in path.split("."):
        node = getattr(node, part) if node is not None else None
    return node


def _with_default(help_text: str, paths: Sequence[str], defaults: VerifyConfig) -> str:
    """``help_text`` and the fields' default, read from the model (never written twice); none shown when
    the fields a flag sets differ in their defaults, or when the text already says what the default is."""
    values = [config_default(defaults, path) for path in paths]
    default = values[0]
    if default in (None, "") or any(v != default for v in values) or "default" in help_text:
        return help_text
    shown = f"{default:g}" if isinstance(default, float) else str(default)
    return f"{help_text} (default {shown})"


def add_parser(subparsers: Any) -> None:
    """Register ``verify`` on the ``kvstack`` sub-parsers."""
    parser = subparsers.add_parser(
        "verify",
        help="verify a live vLLM endpoint (capacity, batching, prefix caching, latency)",
        description=(
            "Measure a live vLLM endpoint and gate on it: engine answers, PagedAttention capacity, "
            "continuous batching, a concurrency sweep up to the target's bound or saturation, prefix "
            "caching, latency, and capacity under SLO (goodput); with --rates, open-loop (Poisson) arrivals; "
            "with --baseline, no regression against a previous report. Exit 0 all passed, 1 a check failed, "
            "2 the run could not be made. Writes verify-report.json, verify-junit.xml and PNGs to --out "
            "(the PNGs need the plots extra: pip install 'kvstack[plots]')."
        ),
        epilog="exit codes: 0 every check passed; 1 a check failed; 2 the run could not be made (bad "
        "config, flags or files, an unusable --out, the endpoint unreachable); 4 internal error "
        "(kvstack --debug verify ... prints the traceback)",
    )
    add_arguments(parser)
    parser.set_defaults(func=run_from_args)


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def overrides_from_args(args: argparse.Namespace, file_data: dict[str, Any]) -> dict[str, Any]:
    """The config overrides that the given flags stand for (flags left out override nothing)."""
    tree: dict[str, Any] = {}
    if args.endpoint:
        tree["endpoint"] = args.endpoint
    api_key = args.api_key or (None if "api_key" in file_data else os.environ.get(API_KEY_ENV))
    if api_key:
        tree["api_key"] = api_key
    for flag, paths, _typ, _help in _VALUE_FLAGS:
        value = getattr(args, _dest(flag))
        if value is not None:
            for path in paths:
                _set(tree, path, value)
    if args.sweep_levels:
        try:
            levels = [int(x) for x in args.sweep_levels.split(",") if x.strip()]
        except ValueError as exc:
            raise ConfigError(
                f"--sweep-levels: not a comma-separated list of integers: {args.sweep_levels!r}"
            ) from exc
        _set(tree, "sweep.levels", levels)
    if args.engine_metrics:
        _set(tree, "fleet.engine_metrics_urls", list(args.engine_metrics))
    if args.rates:
        try:
            rates = [float(x) for x in args.rates.split(",") if x.strip()]
        except ValueError as exc:
            raise ConfigError(f"--rates: not a comma-separated list of numbers: {args.rates!r}") from exc
        _set(tree, "open_loop.rates", rates)
    if args.no_use_cases:
        _set(tree, "prefix.use_cases", [])
    if args.no_chat:
        _set(tree, "engine.chat", False)
    if args.no_plots:
        tree["plots"] = False
    if args.parse_every_event:
        _set(tree, "client.parse_every_event", True)
    return tree


def config_from_args(args: argparse.Namespace) -> VerifyConfig:
    """The config file, then the stack outputs, then the flags: each overrides what came before."""
    file_data = read_config_file(args.config) if args.config is not None else {}
    sources = [str(args.config)] if args.config is not None else []
    if args.stack_outputs is not None:
        file_data = deep_merge(file_data, read_stack_outputs(args.stack_outputs))
        sources.append(str(args.stack_outputs))
    if not args.endpoint and "endpoint" not in file_data:
        raise ConfigError(
            "no endpoint: pass --endpoint URL, set 'endpoint' in the config file, or give --stack-outputs"
        )
    source = " + ".join([*sources, "flags"])
    return build_config(file_data, overrides_from_args(args, file_data), source=source)


def refuse_other_baseline(config: VerifyConfig) -> None:
    """Refuse a ``--baseline`` report of another workload before measuring (the model is compared once
    the server has answered)."""
    if config.baseline.report is None:
        return
    previous = read_report(config.baseline.report)
    differences = workload_differences(previous["config"], config.model_dump(mode="json"))
    if differences:
        raise BaselineError(
            f"{config.baseline.report}: another workload, not comparable:\n  " + "\n  ".join(differences)
        )


def run_from_args(args: argparse.Namespace) -> int:
    from kvstack.bench.verify import run_verify

    try:
        config = config_from_args(args)
        check_output_dir(args.out, "--out")  # before the run writes its first report
    except ConfigError as exc:
        print(f"kvstack verify: invalid configuration:\n{exc}", file=sys.stderr)
        return EXIT_ERROR
    except OutputPathError as exc:
        print(f"kvstack verify: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        refuse_other_baseline(config)
    except BaselineError as exc:
        print(f"kvstack verify: --baseline refused:\n{exc}", file=sys.stderr)
        return EXIT_ERROR
    result = run_verify(config, args.out, display=make_display(quiet=args.quiet))
    render_report(result.report, result_console())
    return result.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """``kvstack verify [flags]`` without the top-level command's error handling (tests call it)."""
    parser = argparse.ArgumentParser(prog="kvstack verify", description="Verify a live vLLM endpoint.")
    add_arguments(parser)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    return run_from_args(args)
