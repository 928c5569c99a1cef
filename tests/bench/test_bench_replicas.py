"""Several vLLM processes behind one endpoint (a Service with replicas): counter reads from different
processes, or counters that went down, make the prefix check refuse the data (exit 2)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kvstack.bench.checks.prefix import replica_problem
from kvstack.bench.metrics import backends_differ, counter_delta, parse_counters
from kvstack.bench.report import Verdict
from kvstack.bench.verify import run_verify
from tests.bench.bench_helpers import CPU_METRICS, H100_METRICS, FakeServer, small_workload

ENDPOINT = "http://vllm.prod:8000"
ADVICE = (
    f"several vLLM processes answer behind {ENDPOINT} (a Service with more than one replica?): "
    "point verify at one pod, e.g. kubectl port-forward pod/<name> 8000"
)


def without_process_start(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if "process_start_time_seconds" not in line) + "\n"


def test_the_backend_is_the_process_start_time() -> None:
    cpu = parse_counters(CPU_METRICS.read_text())
    h100 = parse_counters(H100_METRICS.read_text())
    assert cpu.backend == "process_start_time_seconds=1795638232.14"
    assert h100.backend == "process_start_time_seconds=1795639027.07"
    assert not backends_differ([cpu, cpu])
    assert backends_differ([cpu, h100])


def test_the_backend_falls_back_on_the_counters_creation_times() -> None:
    cpu = parse_counters(without_process_start(CPU_METRICS.read_text()))
    h100 = parse_counters(without_process_start(H100_METRICS.read_text()))
    assert cpu.backend is not None
    assert "vllm:prefix_cache_queries_created" in cpu.backend
    assert h100.backend is not None
    assert cpu.backend != h100.backend
    assert backends_differ([cpu, h100])
    assert parse_counters("# TYPE x counter\nx_total 1.0\n").backend is None


def test_one_process_is_measurable() -> None:
    before = parse_counters(CPU_METRICS.read_text())
    assert replica_problem(ENDPOINT, [before, before], counter_delta(before, before)) is None


def test_two_processes_are_not_measurable() -> None:
    a = parse_counters(CPU_METRICS.read_text())
    b = parse_counters(H100_METRICS.read_text())
    problem = replica_problem(ENDPOINT, [a, b, a], counter_delta(a, a))
    assert problem is not None
    assert problem.startswith(ADVICE)
    assert "answered by 2 processes" in problem


def test_a_counter_that_went_down_is_not_measurable() -> None:
    """Two pods with no per-process series: only the negative delta shows it."""
    a = parse_counters(without_process_start(CPU_METRICS.read_text()).replace("_created", "_ignored"))
    b = parse_counters(without_process_start(H100_METRICS.read_text()).replace("_created", "_ignored"))
    assert a.backend is None
    assert b.backend is None
    high, low = (a, b) if (a.prefix_queries or 0) > (b.prefix_queries or 0) else (b, a)
    delta = counter_delta(high, low)
    assert "vllm:prefix_cache_queries_total" in delta.negative
    problem = replica_problem(ENDPOINT, [high, low], delta)
    assert problem is not None
    assert problem.startswith(ADVICE)
    assert "counters went down" in problem


def test_verify_against_two_replicas_exits_2(fake_vllm: Callable[..., FakeServer], tmp_path: Path) -> None:
    server = fake_vllm("replicas")
    result = run_verify(small_workload(server.url), tmp_path)
    report = result.report
    assert result.exit_code == 2, [(c.name, c.verdict, c.reason) for c in report.checks]
    assert report.run_error is not None
    assert report.run_error.startswith(
        f"several vLLM processes answer behind {server.url} (a Service with more than one replica?): "
        "point verify at one pod, e.g. kubectl port-forward pod/<name> 8000"
    )
    verdicts = {c.name: c.verdict for c in report.checks}
    assert verdicts["prefix_caching"] is Verdict.ERROR  # never PASS or FAIL on such data
    assert verdicts["latency"] is Verdict.SKIPPED
