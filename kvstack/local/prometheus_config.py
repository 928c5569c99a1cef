"""The local Prometheus's config: a pure function of the scrape targets and the settings."""

from __future__ import annotations

from typing import Any

from kvstack.local.settings import PrometheusSettings

VLLM_JOB = "vllm"
# Not "vllm-…": the alerts scope `up` to jobs matching AlertThresholds.scrape_job_regex (`.*vllm.*`),
# and the router is not a vLLM engine.
ROUTER_JOB = "kvstack-router"


def prometheus_config(
    vllm_targets: list[str],
    settings: PrometheusSettings,
    rule_files: list[str],
    router_target: str | None = None,
) -> dict[str, Any]:
    """Scrape every vLLM replica (and the router, if any) every few seconds, with the labels a
    Kubernetes pod scrape would carry: replica i is pod ``<pod_label_prefix><i>``."""
    interval = f"{settings.scrape_interval_s}s"
    scrape_configs: list[dict[str, Any]] = [
        {
            "job_name": VLLM_JOB,
            "metrics_path": "/metrics",
            "static_configs": [
                {
                    "targets": [target],
                    "labels": {
                        "namespace": settings.namespace_label,
                        "pod": f"{settings.pod_label_prefix}{i}",
                    },
                }
                for i, target in enumerate(vllm_targets)
            ],
        }
    ]
    if router_target is not None:
        scrape_configs.append(
            {
                "job_name": ROUTER_JOB,
                "metrics_path": "/metrics",
                "static_configs": [
                    {
                        "targets": [router_target],
                        "labels": {"namespace": settings.namespace_label, "pod": settings.router_pod_label},
                    }
                ],
            }
        )
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": rule_files,
        "scrape_configs": scrape_configs,
    }
