"""The local Prometheus's config: a pure function of the vLLM target and the settings."""

from __future__ import annotations

from typing import Any

from kvstack.local.settings import PrometheusSettings


def prometheus_config(
    vllm_target: str, settings: PrometheusSettings, rule_files: list[str]
) -> dict[str, Any]:
    """Scrape vLLM every few seconds with the labels a Kubernetes pod scrape would carry."""
    interval = f"{settings.scrape_interval_s}s"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": rule_files,
        "scrape_configs": [
            {
                "job_name": "vllm",
                "metrics_path": "/metrics",
                "static_configs": [
                    {
                        "targets": [vllm_target],
                        "labels": {"namespace": settings.namespace_label, "pod": settings.pod_label},
                    }
                ],
            }
        ],
    }
