"""The ``kvstack`` command line: a thin shell that hands each subcommand to the package that owns it.

Every subcommand module exposes ``add_parser(subparsers)``; the parser it adds sets ``func``, a callable
taking the parsed namespace and returning the process exit code. Only the module of the subcommand that
runs is imported, so that the bench (``kvstack verify``) runs on an image without Pulumi installed
(import-linter holds this module to importing no subcommand module; docs/architecture.md).

No traceback reaches the user: an unexpected error prints one line saying what failed and how to see the
traceback (``--debug`` or ``KVSTACK_DEBUG=1``). A missing third-party package of an extra is reported as
the extra to install; a bug in our own code (an ImportError of a ``kvstack`` module, a SyntaxError, a
missing name) is reported as the internal error it is, never as "not installed".
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import cast

from kvstack import __version__
from kvstack.output_paths import OutputPathError

OK, CHECK_FAILED, BAD_INPUT, NO_LOCAL_STACK, INTERNAL_ERROR, INTERRUPTED = 0, 1, 2, 3, 4, 130
BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader went away
DEBUG_ENV = "KVSTACK_DEBUG"

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

# The extra each subcommand needs. plan, render and lint are the infra side (the stack the Pulumi program
# deploys; lint validates against kubernetes-validate's schemas): a CD image with the core install runs
# `kvstack verify`, and is told to install the infra extra for the rest.
EXTRA_OF_SUBCOMMAND: dict[str, str] = {"plan": "infra", "render": "infra", "lint": "infra"}

# Top-level import name of each third-party package an extra brings -> the extra
# (tests/test_cli_errors.py checks it against pyproject.toml's extras).
EXTRA_OF_IMPORT: dict[str, str] = {
    "pulumi": "infra",
    "pulumi_kubernetes": "infra",
    "kubernetes_validate": "infra",
    "cloudcoil": "infra",
    "grafana_foundation_sdk": "monitoring",
    "prometheus_api_client": "monitoring",
    "matplotlib": "plots",
}

EPILOG = f"""\
exit codes:
  0    ok
  1    a check failed (verify, lint, plan below the floor; local: a part failed to start or is unhealthy)
  2    bad input or usage, or the run could not be made (the message names the field, flag or file)
  3    kvstack local status/url: no local stack recorded here
  4    internal error: a bug in kvstack (one line; --debug or {DEBUG_ENV}=1 prints the traceback)
  130  interrupted (Ctrl-C)
  141  the reader of the output went away (e.g. `| head`); nothing more is printed

Each subcommand's --help details its own codes.
"""


class MissingExtra(Exception):
    """A third-party package that an extra (or the core install) provides is not installed."""

    def __init__(self, package: str, extra: str | None) -> None:
        self.package = package
        self.extra = extra
        super().__init__(package)

    def advice(self) -> str:
        if self.extra is None:
            return (
                f"the Python package '{self.package}' is not installed (kvstack needs it): "
                "reinstall kvstack (pip install kvstack)"
            )
        return (
            f"the Python package '{self.package}' is not installed: it comes with the '{self.extra}' extra, "
            f"pip install 'kvstack[{self.extra}]'"
        )


def missing_extra(exc: ImportError) -> MissingExtra | None:
    """The missing third-party package behind ``exc``, or None when ``exc`` is a bug of ours.

    Only a ModuleNotFoundError for a module outside ``kvstack`` counts as "not installed"; an ImportError
    of a name (``cannot import name``) or of one of our own modules is a bug, whatever caused it.
    """
    if type(exc) is not ModuleNotFoundError or not exc.name:
        return None
    top = exc.name.split(".")[0]
    if top == "kvstack":
        return None
    return MissingExtra(top, EXTRA_OF_IMPORT.get(top))


def missing_distributions(extra: str) -> list[str] | None:
    """The distributions of kvstack's ``extra`` that are not installed (None: kvstack itself is not
    installed, e.g. run from a source folder, so its metadata cannot say)."""
    try:
        requirements = importlib.metadata.requires("kvstack") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    missing = []
    for requirement in requirements:
        marker = re.search(r"extra\s*==\s*[\"']([^\"']+)[\"']", requirement)
        name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        if marker is None or marker.group(1) != extra or name is None:
            continue
        try:
            importlib.metadata.distribution(name.group(0))
        except importlib.metadata.PackageNotFoundError:
            missing.append(name.group(0))
    return missing


def _debug_requested(argv: Sequence[str]) -> bool:
    return "--debug" in _top_level_options(argv) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _top_level_options(argv: Sequence[str]) -> list[str]:
    """The options before the subcommand's name (those are the top-level command's)."""
    options = []
    for arg in argv:
        if not arg.startswith("-"):
            break
        options.append(arg)
    return options


def _wanted(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def _import(module_name: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        missing = missing_extra(exc)
        if missing is None:
            raise
        raise missing from exc


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser, with the full subparser of the subcommand being run and placeholders for the rest."""
    parser = argparse.ArgumentParser(
        prog="kvstack",
        description="Run vLLM in production on Kubernetes: deploy (Pulumi), verify (bench), monitor.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"kvstack {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"print the traceback of an internal error (also: {DEBUG_ENV}=1)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = _wanted(argv)
    if wanted in _SUBCOMMANDS:
        # only import what runs: `kvstack verify` must not import the Pulumi side
        _import(_SUBCOMMANDS[wanted]).add_parser(sub)
    for name, summary in _SUMMARIES.items():
        if name not in sub.choices:
            sub.add_parser(name, help=summary)
    return parser


def _run(argv: list[str]) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return BAD_INPUT
    extra = EXTRA_OF_SUBCOMMAND.get(args.command)
    if extra is not None and (missing := missing_distributions(extra)):
        print(
            f"kvstack {args.command}: needs the '{extra}' extra (not installed: {', '.join(missing)}): "
            f"pip install 'kvstack[{extra}]'",
            file=sys.stderr,
        )
        return BAD_INPUT
    return cast(Callable[[argparse.Namespace], int], func)(args)


def _where(exc: BaseException) -> str:
    """file:line of the innermost frame, for the one-line report of an internal error."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" at {os.path.basename(last.filename)}:{last.lineno}"


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    wanted = _wanted(args_list)
    prog = f"kvstack {wanted}" if wanted in _SUBCOMMANDS else "kvstack"
    debug = _debug_requested(args_list)
    try:
        try:
            return _run(args_list)
        finally:
            sys.stdout.flush()  # a reader that went away shows up here at the latest (BrokenPipeError)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except MissingExtra as exc:
        print(f"{prog}: {exc.advice()}", file=sys.stderr)
        return BAD_INPUT
    except OutputPathError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return BAD_INPUT
    except BrokenPipeError:
        # the reader closed the pipe: not a bug; point stdout at /dev/null so the interpreter's final
        # flush does not raise again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return BROKEN_PIPE
    except ImportError as exc:  # a lazy import inside a subcommand
        missing = missing_extra(exc)
        if missing is None:
            return _internal(prog, exc, debug)
        print(f"{prog}: {missing.advice()}", file=sys.stderr)
        return BAD_INPUT
    except UnicodeDecodeError as exc:
        if debug:
            traceback.print_exc()
        print(
            f"{prog}: a file is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8",
            file=sys.stderr,
        )
        return BAD_INPUT
    except OSError as exc:
        if exc.filename is None:
            return _internal(prog, exc, debug)
        if debug:
            traceback.print_exc()
        print(f"{prog}: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return BAD_INPUT
    except Exception as exc:
        return _internal(prog, exc, debug)


def _internal(prog: str, exc: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    detail = str(exc).splitlines()[0] if str(exc) else ""
    see = "the traceback is above" if debug else f"run with --debug (or {DEBUG_ENV}=1) for the traceback"
    print(
        f"{prog}: internal error: {type(exc).__name__}{_where(exc)}"
        + (f": {detail}" if detail else "")
        + f"; {see}",
        file=sys.stderr,
    )
    return INTERNAL_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
