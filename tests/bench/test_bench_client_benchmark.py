"""The client benchmark script still runs and every client it compares times every token.

Figures are not asserted here (a tiny run on a shared CI box says nothing); docs/bench-client.md has them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "scripts" / "client_benchmark.py"


def test_client_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--concurrency", "8", "--requests", "32", "--tokens", "16", "--repeats", "1",
            "--clients", "vllm,vllm-lines,kvstack,kvstack-parse-all,httpx-aiohttp",
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
    assert set(rows) == {"vllm", "vllm-lines", "kvstack", "kvstack-parse-all", "httpx-aiohttp"}
    for name, row in rows.items():
        assert row["valid"], (name, row)
        assert row["output_tokens"] == 32 * 16
        assert row["timed_token_events"] == 32 * 16
        assert row["tok_s"] > 0
    assert rows["vllm"]["ratio_to_vllm"] == 1.0
    assert "ratio to the vllm bench serve client" in proc.stdout
