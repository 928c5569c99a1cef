"""The ``kvstack`` command line: a thin shell that hands each subcommand to the package that owns it.

Every subcommand module exposes ``add_parser(subparsers)``; the parser it adds sets ``func``, a callable
taking the parsed namespace and returning the process exit code. Imports are lazy so that the bench
(``kvstack verify``) runs on an image without Pulumi installed (import-linter holds this module to importing
no subcommand module; docs/architecture.md). A subcommand whose third-party package is missing is reported
as needing its extra; an ImportError inside kvstack itself is a bug and is raised as one.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import cast

from kvstack import __version__

# subcommand -> module that registers it
_SUBCOMMANDS: dict[str, str] = {
    "local": "kvstack.local.cli",
    "verify": "kvstack.bench.cli",
    "plan": "kvstack.infra.cli",
    "render": "kvstack.infra.cli",
    "lint": "kvstack.infra.cli",
}

_SUMMARIES: dict[str, str] = {
    "local": "start, stop or inspect the local real-vLLM + Prometheus stack",
    "verify": "verify a live vLLM endpoint (capacity, batching, prefix caching, latency)",
    "plan": "estimate KV-cache capacity for a stack's model and engine knobs",
    "render": "write a stack's Kubernetes manifests as YAML (no Pulumi engine needed)",
    "lint": "check a stack's manifests against the production spec",
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kvstack",
        description="Run vLLM in production on Kubernetes: deploy (Pulumi), verify (bench), monitor.",
    )
    parser.add_argument("--version", action="version", version=f"kvstack {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = next((a for a in argv if not a.startswith("-")), None)
    registered: set[str] = set()
    for name, module_name in _SUBCOMMANDS.items():
        if wanted in _SUBCOMMANDS and module_name != _SUBCOMMANDS[wanted]:
            # only import what runs: `kvstack verify` must not import the Pulumi side
            sub.add_parser(name, help=_SUMMARIES[name])
            continue
        if module_name in registered:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            if exc.name is None or exc.name.partition(".")[0] == "kvstack":
                raise  # our own code is broken: not a missing extra
            missing = exc.name
            p = sub.add_parser(name, help=f"{_SUMMARIES[name]} (unavailable: needs {missing})")
            p.set_defaults(func=_unavailable(name, missing))
            continue
        registered.add(module_name)
        module.add_parser(sub)
    return parser


def _unavailable(name: str, missing: str) -> Callable[[argparse.Namespace], int]:
    def run(_: argparse.Namespace) -> int:
        print(
            f"kvstack {name}: the Python package '{missing}' is not installed. "
            "Install the extra that provides it, e.g. pip install 'kvstack[infra]'.",
            file=sys.stderr,
        )
        return 2

    return run


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list)
    args = parser.parse_args(args_list)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return cast(Callable[[argparse.Namespace], int], func)(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
