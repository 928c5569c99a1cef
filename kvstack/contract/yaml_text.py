"""YAML as the documents kvstack writes for Prometheus and Kubernetes read it best: key order kept and
multi-line strings (PromQL, dashboards' JSON, adapter config) as ``|`` literal blocks."""

from __future__ import annotations

from typing import Any

import yaml


class _LiteralBlockDumper(yaml.SafeDumper):
    """A safe dumper that writes every multi-line string as a literal block."""


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_LiteralBlockDumper.add_representer(str, _str_representer)


def dump_yaml(document: Any, *, width: int) -> str:
    """``document`` as YAML: keys in insertion order, multi-line strings as literal blocks, plain
    scalars folded at ``width`` columns."""
    return yaml.dump(document, Dumper=_LiteralBlockDumper, sort_keys=False, width=width, allow_unicode=True)
