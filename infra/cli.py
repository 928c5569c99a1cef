"""``kvstack plan``, ``kvstack render`` and ``kvstack lint``: the stack without the Pulumi engine.

Exit codes: 0 ok; 1 a check failed (lint findings, capacity below the floor); 2 bad config or usage
(the message names the field and the stack file, or the flag and the path); an unexpected error is
reported by ``kvstack.cli`` in one line (exit 4). Nothing here imports Pulumi.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from kvstack.infra.capacity import (
    PlanInputs,
    ShapeError,
    advise,
    builtin_shapes,
    describe,
    estimate,
    load_shape,
)
from kvstack.infra.config import (
    KNOWN_GPU_MEMORY_BYTES,
    CapacitySpec,
    ConfigError,
    EngineSpec,
    GpuSpec,
    StackConfig,
    load_stack,
    stack_file_path,
)
from kvstack.infra.stack import CapacityError, StackPlan, build_stack, plan_inputs
from kvstack.output_paths import OutputPathError, check_output_dir, check_output_file

OK, CHECK_FAILED, BAD_INPUT = 0, 1, 2
_EXIT_CODES = """
exit codes: 0 ok; 1 {failed}; 2 bad input (the message names the field and the file, or the flag and
the path; nothing is written); 4 internal error (kvstack --debug {name} ... prints the traceback)
"""


class InputError(ValueError):
    """A file given on the command line (or named by the stack) that cannot be read as text."""


def _unreadable(path: Path, exc: OSError | UnicodeDecodeError) -> InputError:
    if isinstance(exc, UnicodeDecodeError):
        return InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8")
    return InputError(f"{path}: cannot read: {exc.strerror or exc}")


_SECTION_OF: dict[type[BaseModel], str] = {EngineSpec: "engine", GpuSpec: "gpu", CapacitySpec: "capacity"}
_STACK_HELP = "stack name: reads Pulumi.NAME.yaml from the project directory"
_PROJECT_HELP = "folder with Pulumi.yaml and the stack files (default: current directory)"
_EPILOG_PLAN = """examples:
  kvstack plan --stack prod
  kvstack plan --stack prod --max-model-len 32768          # what if?
  kvstack plan --model llama-3.1-8b --gpu NVIDIA-H100-80GB-HBM3 --max-model-len 8192
  kvstack plan --model path/to/config.json --kv-cache-gib 2 --block-size 128 --max-model-len 1024

built-in model shapes: {shapes}
GPUs with known memory: {gpus}
"""


def add_parser(subparsers: Any) -> None:
    """Register plan, render and lint on the ``kvstack`` command line.

    A name the caller already registered (a placeholder for a command not being run) is left alone.
    """
    for name, add in (("plan", _add_plan), ("render", _add_render), ("lint", _add_lint)):
        if name not in subparsers.choices:
            add(subparsers)


def _add_plan(subparsers: Any) -> None:
    plan = subparsers.add_parser(
        "plan",
        help="estimate KV-cache capacity for a stack's model and engine knobs",
        description="Estimate KV bytes per token, KV tokens and blocks, and max concurrency at "
        "max_model_len, from a model's config.json and the engine knobs, the way vLLM sizes its KV "
        "cache at start-up. "
        "Exits 1 when max concurrency is below the floor, with the knobs that would fix it.",
        epilog=_EPILOG_PLAN.format(shapes=", ".join(builtin_shapes()), gpus=", ".join(KNOWN_GPU_MEMORY_BYTES))
        + _EXIT_CODES.format(failed="max concurrency below the floor", name="plan"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    plan.add_argument("--stack", metavar="NAME", help=_STACK_HELP + "; flags below override its values")
    plan.add_argument("--project-dir", type=Path, default=Path("."), metavar="DIR", help=_PROJECT_HELP)
    plan.add_argument("--model", metavar="SHAPE", help="built-in shape name or path to a config.json")
    _model_flag(plan, "--max-model-len", EngineSpec, "max_model_len", kind=int, metavar="TOKENS")
    plan.add_argument("--gpu", metavar="PRODUCT", help="GPU product with known memory (see below)")
    _model_flag(plan, "--gpu-memory-gib", GpuSpec, "memory_gib", kind=float, metavar="GIB")
    _model_flag(
        plan, "--gpu-memory-utilization", EngineSpec, "gpu_memory_utilization", kind=float, metavar="FRACTION"
    )
    _model_flag(
        plan,
        "--kv-cache-gib",
        EngineSpec,
        "kv_cache_memory_gib",
        kind=float,
        metavar="GIB",
        extra="CPU: VLLM_CPU_KVCACHE_SPACE",
    )
    _model_flag(plan, "--block-size", EngineSpec, "block_size", kind=int, metavar="TOKENS")
    _model_flag(plan, "--kv-cache-dtype", EngineSpec, "kv_cache_dtype", kind=str)
    _model_flag(plan, "--dtype", EngineSpec, "dtype", kind=str)
    _model_flag(plan, "--tensor-parallel-size", EngineSpec, "tensor_parallel_size", kind=int, metavar="N")
    _model_flag(plan, "--max-num-seqs", EngineSpec, "max_num_seqs", kind=int, metavar="N")
    _model_flag(plan, "--max-num-batched-tokens", EngineSpec, "max_num_batched_tokens", kind=int, metavar="N")
    _model_flag(plan, "--min-concurrency", CapacitySpec, "min_concurrency", kind=float, metavar="N")
    plan.add_argument("--json", action="store_true", help="print the estimate as JSON")
    plan.set_defaults(func=run_plan)


def model_flag_help(model: type[BaseModel], field: str, *, extra: str | None = None) -> str:
    """A flag's help from the config model: the field's description and default (``--help`` can't drift)."""
    info = model.model_fields[field]
    words = info.description or field.replace("_", " ")
    if extra:
        words += f" ({extra})"
    section = _SECTION_OF[model]
    if info.is_required():
        return f"{words}; overrides kvstack:{section}.{field}"
    default = info.get_default(call_default_factory=True)
    shown = "unset" if default is None else f"{default:g}" if isinstance(default, float) else str(default)
    return f"{words}; overrides kvstack:{section}.{field} (stack default {shown})"


def _model_flag(
    parser: argparse.ArgumentParser,
    flag: str,
    model: type[BaseModel],
    field: str,
    *,
    kind: type,
    metavar: str | None = None,
    extra: str | None = None,
) -> None:
    """A ``plan`` flag that overrides one config field: its choices and help come from the model."""
    parser.add_argument(
        flag,
        type=kind,
        metavar=metavar,
        choices=_literal_choices(model.model_fields[field].annotation),
        help=model_flag_help(model, field, extra=extra),
    )


def _literal_choices(annotation: Any) -> list[Any] | None:
    """The values of a ``Literal[...]`` (also inside ``X | None``), else None."""
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    for arg in typing.get_args(annotation):
        found = _literal_choices(arg)
        if found is not None:
            return found
    return None


def _add_render(subparsers: Any) -> None:
    render = subparsers.add_parser(
        "render",
        help="write a stack's Kubernetes manifests as YAML (no Pulumi engine needed)",
        description="Write the manifests `pulumi up` would apply for a stack, one NN-kind-name.yaml per "
        "object in apply order, for review or GitOps. Secrets whose values are Pulumi secrets are left out "
        "(a note says how to create them). Earlier NN-*.yaml files in DIR are replaced.",
        epilog="example:\n  kvstack render --stack prod --out rendered/prod\n"
        "  kvstack lint --manifests rendered/prod\n"
        + _EXIT_CODES.format(failed="max concurrency below the floor", name="render"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    render.add_argument("--stack", metavar="NAME", required=True, help=_STACK_HELP)
    render.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder to write the YAML files to"
    )
    render.add_argument("--project-dir", type=Path, default=Path("."), metavar="DIR", help=_PROJECT_HELP)
    render.add_argument(
        "--outputs", type=Path, metavar="FILE", help="also write the stack outputs as JSON here"
    )
    render.set_defaults(func=run_render)


def _add_lint(subparsers: Any) -> None:
    lint = subparsers.add_parser(
        "lint",
        help="check a stack's manifests against the production spec",
        description="Check a stack (or a folder of rendered YAML) against the production spec: vLLM args "
        "(--model --host --port --max-model-len --gpu-memory-utilization), GPU resources, readiness/liveness/"
        "startup probes, a Service serving /v1/completions, enableServiceLinks false, >= 4 monitored metrics "
        "(>= 1 vLLM-specific), complete autoscaling bounds, the router tier (a multi-replica stack without "
        "one warns; vllm-router pinned, discovering exactly the vLLM pods with get/list/watch-pods RBAC, "
        "probed, scraped, its engines serving the render routes a cache_aware policy reads), the capacity "
        "floor, and schemas (Kubernetes, CRDs, prometheus-adapter). Exits 1 naming each failure.",
        epilog="examples:\n  kvstack lint --stack prod\n"
        "  kvstack lint --manifests rendered/prod --kube-version 1.31\n"
        + _EXIT_CODES.format(failed="a check failed (each failure is named)", name="lint"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = lint.add_mutually_exclusive_group(required=True)
    source.add_argument("--stack", metavar="NAME", help=_STACK_HELP)
    source.add_argument("--manifests", type=Path, metavar="DIR", help="lint the YAML files in DIR instead")
    lint.add_argument("--project-dir", type=Path, default=Path("."), metavar="DIR", help=_PROJECT_HELP)
    lint.add_argument(
        "--kube-version",
        action="append",
        metavar="X.Y",
        help="Kubernetes version(s) to validate against (repeat; default 1.30 and 1.34)",
    )
    lint.add_argument("--no-schema", action="store_true", help="skip the schema validation")
    lint.set_defaults(func=run_lint)


def _err(message: str) -> None:
    print(message, file=sys.stderr)


def _load(stack: str, project_dir: Path) -> tuple[str, StackConfig]:
    try:
        stack_file, config = load_stack(stack, project_dir)
    except (OSError, UnicodeDecodeError) as exc:
        raise _unreadable(stack_file_path(stack, project_dir), exc) from exc
    return stack_file.source, config


# ------------------------------------------------------------------------------------------------ plan

_OVERRIDES = {
    "max_model_len": "max_model_len",
    "gpu_memory_gib": "gpu_memory_gib",
    "gpu_memory_utilization": "gpu_memory_utilization",
    "kv_cache_gib": "kv_cache_memory_gib",
    "block_size": "block_size",
    "kv_cache_dtype": "kv_cache_dtype",
    "dtype": "dtype",
    "tensor_parallel_size": "tensor_parallel_size",
    "max_num_seqs": "max_num_seqs",
    "max_num_batched_tokens": "max_num_batched_tokens",
}


def _plan_inputs(args: argparse.Namespace) -> tuple[PlanInputs, float, str]:
    """Inputs from --stack and/or flags; raises ConfigError/ShapeError/ValueError on bad input."""
    base: dict[str, Any] = {}
    floor, source = CapacitySpec().min_concurrency, "flags"
    if args.stack:
        source, config = _load(args.stack, args.project_dir)
        stack_inputs = plan_inputs(config, base_dir=args.project_dir, source=source)
        base = {name: getattr(stack_inputs, name) for name in PlanInputs.model_fields}
        floor = config.capacity.min_concurrency
    if args.model:
        try:
            base["shape"] = load_shape(args.model, base_dir=Path.cwd())
        except (OSError, UnicodeDecodeError) as exc:
            raise _unreadable(Path(args.model), exc) from exc
    if args.gpu:
        if args.gpu not in KNOWN_GPU_MEMORY_BYTES:
            raise ValueError(
                f"--gpu {args.gpu!r} is not known; use --gpu-memory-gib "
                f"(known: {', '.join(KNOWN_GPU_MEMORY_BYTES)})"
            )
        base["gpu_memory_gib"] = KNOWN_GPU_MEMORY_BYTES[args.gpu] / 1024**3
    for flag, field in _OVERRIDES.items():
        value = getattr(args, flag)
        if value is not None:
            base[field] = value
    if args.min_concurrency is not None:
        floor = args.min_concurrency
    missing = [
        f"--{n}" for n, key in (("model", "shape"), ("max-model-len", "max_model_len")) if key not in base
    ]
    if base.get("gpu_memory_gib") is None and base.get("kv_cache_memory_gib") is None:
        missing.append("--gpu-memory-gib/--gpu or --kv-cache-gib")
    if missing:
        raise ValueError(f"without --stack, give {', '.join(missing)}")
    return PlanInputs.model_validate(base), floor, source


def run_plan(args: argparse.Namespace) -> int:
    try:
        inputs, floor, source = _plan_inputs(args)
    except ConfigError as exc:
        _err(str(exc))
        return BAD_INPUT
    except (ShapeError, ValueError) as exc:
        _err(f"kvstack plan: {exc}")
        return BAD_INPUT
    est = estimate(inputs)
    advice = advise(inputs, floor)
    meets = est.max_concurrency >= floor
    if args.json:
        print(
            json.dumps(
                {
                    "source": source,
                    "model": inputs.shape.name,
                    "estimate": est.as_output(),
                    "min_concurrency": floor,
                    "meets_floor": meets,
                    "advice": [a.model_dump() for a in advice],
                },
                indent=2,
            )
        )
    else:
        print(f"kvstack plan: {source}, model shape {inputs.shape.name}")
        if inputs.kv_cache_memory_gib is None and inputs.gpu_memory_gib is not None:
            print(
                f"GPU {inputs.gpu_memory_gib:.2f} GiB x utilization {inputs.gpu_memory_utilization:g} = "
                f"{inputs.gpu_memory_gib * inputs.gpu_memory_utilization:.2f} GiB for vLLM per GPU "
                f"(tensor parallel {inputs.tensor_parallel_size})"
            )
        print(describe(est, floor))
        if advice:
            print("turn one of these knobs:")
            for a in advice:
                print(f"  - {a}")
        elif not meets:
            print("no single knob reaches the floor: a bigger GPU, more GPUs per replica or a smaller model")
    return OK if meets else CHECK_FAILED


# ---------------------------------------------------------------------------------------------- render


def _build(stack: str, project_dir: Path, *, enforce_floor: bool) -> StackPlan:
    source, config = _load(stack, project_dir)
    return build_stack(config, base_dir=project_dir, source=source, enforce_floor=enforce_floor)


def run_render(args: argparse.Namespace) -> int:
    from kvstack.infra.render import render

    try:
        # the output paths first: a refused run writes nothing
        check_output_dir(args.out, "--out")
        if args.outputs:
            check_output_file(args.outputs, "--outputs")
        plan = _build(args.stack, args.project_dir, enforce_floor=True)
    except ConfigError as exc:
        _err(str(exc))
        return BAD_INPUT
    except (InputError, OutputPathError, ShapeError) as exc:
        _err(f"kvstack render: {exc}")
        return BAD_INPUT
    except CapacityError as exc:
        _err(str(exc))
        return CHECK_FAILED
    result = render(plan.manifests, plan.config, args.out)
    print(f"kvstack render: {plan.source} -> {args.out}")
    for path in result.files:
        print(f"  wrote {path}")
    for path in result.removed:
        print(f"  removed stale {path}")
    for note in result.notes:
        print(f"  note: {note}")
    if args.outputs:
        args.outputs.parent.mkdir(parents=True, exist_ok=True)
        args.outputs.write_text(json.dumps(plan.outputs, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        print(f"  wrote stack outputs to {args.outputs}")
    return OK


# ------------------------------------------------------------------------------------------------ lint


def run_lint(args: argparse.Namespace) -> int:
    from kvstack.infra.lint import Finding, failed, lint
    from kvstack.infra.render import ManifestError, load_manifest_dir

    findings: list[Finding] = []
    if args.manifests:
        if not args.manifests.is_dir():
            _err(f"kvstack lint: {args.manifests} is not a folder")
            return BAD_INPUT
        try:
            bodies = load_manifest_dir(args.manifests)
        except ManifestError as exc:
            _err(f"kvstack lint: {exc}")
            return BAD_INPUT
        title = str(args.manifests)
    else:
        try:
            plan = _build(args.stack, args.project_dir, enforce_floor=False)
        except ConfigError as exc:
            _err(str(exc))
            return BAD_INPUT
        except (InputError, ShapeError) as exc:
            _err(f"kvstack lint: {exc}")
            return BAD_INPUT
        bodies = [m.body for m in plan.manifests]
        title = plan.source
        floor, est = plan.config.capacity.min_concurrency, plan.estimate
        findings.append(
            Finding(
                "capacity",
                "ok" if plan.meets_floor else "fail",
                f"max concurrency {est.max_concurrency:.1f} at max_model_len {est.max_model_len} "
                f"({est.kv_tokens:,} KV tokens) vs floor {floor:g}",
            )
        )
    findings = lint(bodies) + findings
    if not args.no_schema:
        from kvstack.infra.schema import (
            FIRST_ERROR_ONLY_NOTE,
            KUBE_VERSIONS,
            is_builtin_problem,
            validate_all,
        )

        versions = tuple(args.kube_version or KUBE_VERSIONS)
        try:
            problems = validate_all(bodies, versions)
        except ImportError as exc:
            _err(
                f"kvstack lint: schema validation needs {exc.name} "
                "(pip install 'kvstack[infra]'), or pass --no-schema"
            )
            return BAD_INPUT
        findings += [Finding("schema", "fail", str(p)) for p in problems]
        if any(is_builtin_problem(p) for p in problems):
            findings.append(Finding("schema", "note", FIRST_ERROR_ONLY_NOTE))
        if not problems:
            findings.append(
                Finding(
                    "schema", "ok", f"{len(bodies)} objects valid (Kubernetes {', '.join(versions)}, CRDs)"
                )
            )
    print(f"kvstack lint: {title}")
    for finding in findings:
        print(f"  {finding}")
    bad = failed(findings)
    warnings = [f for f in findings if f.status == "warn"]
    summary = f"{len(bad)} failed" if bad else "all checks passed"
    if warnings:
        summary += f" ({len(warnings)} warning{'s' if len(warnings) > 1 else ''})"
    print(summary)
    return CHECK_FAILED if bad else OK
