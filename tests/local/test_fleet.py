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

import httpx
import pytest
import yaml
from pydantic import ValidationError

from kvstack.bench.sse import SseTally
from kvstack.local import memory, rollout, stack
from kvstack.local import state as st
from kvstack.local.prometheus_config import prometheus_config
from kvstack.local.settings import (
    REPLICA_BASE_RSS_BYTES,
    LocalStackSettings,
    PrometheusSettings,
    RouterSettings,
    VllmSettings,
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
