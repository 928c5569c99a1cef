"""Grafana dashboards generated with grafana-foundation-sdk and committed as sorted-key JSON.

This module only reads the committed JSON (package data), so infra can ship the dashboards without the
``monitoring`` extra; ``dashboards.generate`` (which imports the SDK) is what writes them.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

OVERVIEW_FILE = "kvstack-overview.json"
KV_CAPACITY_FILE = "kvstack-kv-capacity.json"

# file name -> dashboard uid (stable: links and provisioning refer to them)
DASHBOARD_UIDS: dict[str, str] = {
    OVERVIEW_FILE: "kvstack-overview",
    KV_CAPACITY_FILE: "kvstack-kv-capacity",
}


def dashboard_documents() -> dict[str, dict[str, Any]]:
    """File name -> parsed dashboard JSON, read from the committed package data."""
    package = resources.files(__name__)
    documents: dict[str, dict[str, Any]] = {}
    for name in DASHBOARD_UIDS:
        document = json.loads(package.joinpath(name).read_text(encoding="utf-8"))
        if not isinstance(document, dict):
            raise TypeError(f"{name} is not a JSON object")
        documents[name] = document
    return documents
