"""Helpers shared by the infra tests: the example stacks of the repo and their plans.

(``from tests.infra.infra_stacks import ...``; the package under test is ``kvstack.infra``.)
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from kvstack.infra.config import StackConfig, load_stack
from kvstack.infra.stack import StackPlan, build_stack

PROJECT_DIR = Path(__file__).resolve().parents[2]
DATA_DIR = Path(__file__).resolve().parent / "data"
# The GPU kit's calibration shapes: Llama-3.1-8B / 3.2-1B layer shapes with a 32,000-token vocabulary, as
# started (load_format dummy) on the lent H100 for the memory-profile reference runs. Test data, not
# product data: users plan with the real models' shapes (llama-3.1-8b, llama-3.2-1b).
CALIBRATION_SHAPES = DATA_DIR / "calibration-shapes"
LLAMA8B_CALIBRATION = str(CALIBRATION_SHAPES / "llama8b")
EXAMPLE_STACKS = ("dev", "prod")
# the router tier's lint checks on a stack with a router (router-service only reports a failure)
ROUTER_CHECKS = frozenset(
    {"router-image", "router-select", "router-rbac", "router-probes", "router-metrics", "router-render"}
)


def stack_document(stack: str) -> dict[str, Any]:
    """The parsed ``Pulumi.<stack>.yaml`` of the repo (a fresh copy each call)."""
    document = yaml.safe_load((PROJECT_DIR / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return copy.deepcopy(document)


def example_config(stack: str) -> StackConfig:
    return load_stack(stack, PROJECT_DIR)[1]


def example_plan(stack: str) -> StackPlan:
    stack_file, config = load_stack(stack, PROJECT_DIR)
    return build_stack(config, base_dir=PROJECT_DIR, source=stack_file.source)
