"""Generate kvstack's Grafana dashboards with grafana-foundation-sdk and write them as sorted-key JSON.

``python -m kvstack.monitoring.dashboards.generate`` rewrites ``dashboards/*.json``; a test fails when the
committed JSON differs from what this module makes. UIDs are stable; the Prometheus datasource is a variable.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dashboard_models

from kvstack.contract import kube
from kvstack.contract import metrics as m
from kvstack.contract import router as r
from kvstack.monitoring.dashboards import DASHBOARD_UIDS, KV_CAPACITY_FILE, OVERVIEW_FILE
from kvstack.monitoring.dashboards import panels as p

PanelBuilder = timeseries.Panel | table.Panel
PanelFactory = Callable[[], PanelBuilder]
TAGS = ["kvstack", "vllm"]


def _query_variable(name: str, label: str, query: str, *, all_value: str | None) -> dashboard.QueryVariable:
    variable = (
        dashboard.QueryVariable(name)
        .label(label)
        .query(query)
        .datasource(p.DATASOURCE)
        .refresh(dashboard_models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard_models.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .current(dashboard_models.VariableOption(selected=True, text="All", value="$__all"))
    )
    return variable.all_value(all_value) if all_value is not None else variable


def variables() -> list[cogbuilder.Builder[dashboard_models.VariableModel]]:
    """``$datasource`` first; the others are read from vLLM's own series, so they list only vLLM pods."""
    return [
        dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        # ".*" also matches series without the label (a Prometheus outside Kubernetes)
        _query_variable(
            "namespace", "Namespace", f"label_values({m.REQUESTS_RUNNING}, namespace)", all_value=".*"
        ),
        _query_variable(
            "model_name",
            "Model",
            f'label_values({m.REQUESTS_RUNNING}{{namespace=~"$namespace"}}, model_name)',
            all_value=".*",
        ),
        # no custom all value: "All" is the regex of vLLM's jobs, so http_requests_total of other apps
        # sharing the namespace stays out
        _query_variable(
            "job",
            "Scrape job",
            f'label_values({m.REQUESTS_RUNNING}{{namespace=~"$namespace"}}, job)',
            all_value=None,
        ),
    ]


def hpa_variable() -> dashboard.QueryVariable:
    return _query_variable(
        "hpa",
        "HPA",
        f'label_values({kube.HPA_MAX_REPLICAS}{{namespace=~"$namespace"}}, horizontalpodautoscaler)',
        all_value=".*",
    )


def router_job_variable() -> dashboard.QueryVariable:
    """The router's scrape jobs, read from its own series (".*" for All: only a router has them)."""
    return _query_variable(
        "router_job",
        "Router job",
        f'label_values({r.ACTIVE_WORKERS}{{namespace=~"$namespace"}}, job)',
        all_value=".*",
    )


def _dashboard(
    uid: str,
    title: str,
    description: str,
    rows: Sequence[tuple[str, Sequence[PanelFactory]]],
    extra_variables: Sequence[cogbuilder.Builder[dashboard_models.VariableModel]] = (),
) -> dashboard.Dashboard:
    board = (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR)
        .variables([*variables(), *extra_variables])
    )
    panel_id = 0
    for row_title, factories in rows:
        panel_id += 1
        board = board.with_row(dashboard.Row(row_title).id(panel_id))
        for factory in factories:
            panel_id += 1
            board = board.with_panel(factory().id(panel_id))
    return board


def overview() -> dashboard.Dashboard:
    return _dashboard(
        DASHBOARD_UIDS[OVERVIEW_FILE],
        "kvstack / vLLM overview",
        "Traffic, latency, saturation and autoscaling of the vLLM fleet, and the router in front of it "
        "(queries shared with the alerts).",
        [
            ("Traffic", [p.requests_per_second, p.tokens_per_second, p.errors]),
            ("Latency", [p.time_to_first_token, p.inter_token_latency, p.end_to_end_latency]),
            (
                "Saturation",
                [p.running_and_waiting, p.kv_cache_usage_per_pod, p.prefix_cache_hit_rate, p.preemptions],
            ),
            ("Autoscaling", [p.replicas_vs_desired, p.autoscaler_inputs]),
            (
                "Router",
                [
                    p.router_requests_per_engine,
                    p.requests_per_pod,
                    p.router_decisions,
                    p.router_without_tokens,
                    p.router_in_flight,
                    p.router_errors,
                    p.router_workers,
                    p.fleet_prefix_hit_ratio,
                ],
            ),
        ],
        extra_variables=[hpa_variable(), router_job_variable()],
    )


def kv_capacity() -> dashboard.Dashboard:
    return _dashboard(
        DASHBOARD_UIDS[KV_CAPACITY_FILE],
        "kvstack / vLLM KV capacity",
        "PagedAttention capacity and how requests use it: KV blocks, queueing for blocks, preemptions, "
        "prefix-cache reuse, request lengths.",
        [
            ("Capacity", [p.cache_config]),
            ("Usage", [p.kv_cache_usage_per_pod, p.running_and_waiting, p.waiting_by_reason, p.preemptions]),
            ("Reuse and demand", [p.prompt_tokens_cached_share, p.request_lengths, p.queue_time]),
        ],
    )


def build_dashboards() -> dict[str, dict[str, Any]]:
    """File name -> dashboard JSON (as parsed), exactly what gets committed."""
    encoder = JSONEncoder(sort_keys=True, indent=2)
    built = {OVERVIEW_FILE: overview(), KV_CAPACITY_FILE: kv_capacity()}
    documents: dict[str, dict[str, Any]] = {}
    for name, board in built.items():
        doc = json.loads(encoder.encode(board.build()))
        if not isinstance(doc, dict):
            raise TypeError(f"{name}: the encoder did not produce an object")
        documents[name] = doc
    return documents


def dashboard_json(document: dict[str, Any]) -> str:
    """The committed text: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def write_dashboards(directory: Path | None = None) -> list[Path]:
    target = directory or Path(__file__).parent
    written = []
    for name, document in build_dashboards().items():
        path = target / name
        path.write_text(dashboard_json(document), encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    for path in write_dashboards(Path(args[0]) if args else None):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
