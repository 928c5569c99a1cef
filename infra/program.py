"""The Pulumi program: read the stack's ``kvstack:*`` config, build the plan, create the component, export.

Everything that decides anything lives in the pure modules; this only talks to the Pulumi engine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from kvstack.infra.component import VllmService
from kvstack.infra.config import NAMESPACE, ConfigError, StackConfig, parse_stack_config
from kvstack.infra.config.stack import is_near_miss
from kvstack.infra.manifests import secret_manifests
from kvstack.infra.manifests.workload import stack_secrets
from kvstack.infra.stack import CapacityError, build_stack


def project_dir() -> Path:
    """The folder holding Pulumi.yaml (the program may run with ``infra/`` as working directory)."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "Pulumi.yaml").is_file():
            return folder
    return here


def stack_source() -> str:
    stack = pulumi.get_stack()
    return f"Pulumi.{stack}.yaml (stack {stack})"


def config_keys() -> set[str]:
    """Every ``kvstack:`` key the engine passed, so that a misspelled key is reported, not ignored; keys of
    a near miss of the namespace (``kvstak:api_key``) are kept whole, so that they are reported too."""
    keys: set[str] = set(StackConfig.model_fields)
    every: dict[str, Any] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    for full_key in every:
        namespace, _, key = str(full_key).partition(":")
        if namespace == NAMESPACE and key:
            keys.add(key)
        elif key and is_near_miss(namespace):
            keys.add(str(full_key))
    prefix = f"PULUMI_CONFIG_{NAMESPACE.upper()}_"
    for env_key in os.environ:
        if env_key.startswith(prefix):
            keys.add(env_key.removeprefix(prefix).lower())
    return keys


def read_config() -> tuple[dict[str, Any], set[str]]:
    """The namespace-stripped raw values and the keys that are Pulumi secrets."""
    cfg = pulumi.Config(NAMESPACE)
    raw: dict[str, Any] = {}
    secret_keys: set[str] = set()
    env_secrets = set(runtime_config.get_config_secret_keys_env())
    for key in sorted(config_keys()):
        full_key = key if ":" in key else f"{NAMESPACE}:{key}"
        if runtime_config.is_config_secret(full_key) or full_key in env_secrets:
            secret_keys.add(key)
            raw[key] = None
            continue
        namespace, _, bare = full_key.partition(":")
        value = cfg.get(bare) if namespace == NAMESPACE else pulumi.Config(namespace).get(bare)
        if value is None:
            continue
        try:
            raw[key] = json.loads(value)
        except json.JSONDecodeError:
            raw[key] = value  # a plain string such as kvstack:namespace
    return raw, secret_keys


def main() -> VllmService:
    """Run the program: a bad config or a stack under the capacity floor fails preview with the reason."""
    source = stack_source()
    raw, secret_keys = read_config()
    try:
        config = parse_stack_config(raw, source=source, secret_keys=secret_keys, base_dir=project_dir())
        plan = build_stack(config, base_dir=project_dir(), source=source)
    except (ConfigError, CapacityError) as exc:
        raise pulumi.RunError(str(exc)) from None
    cfg = pulumi.Config(NAMESPACE)
    values: dict[str, object] = {which: cfg.require_secret(which) for which in stack_secrets(config)}
    service = VllmService(config.name, plan, secrets=secret_manifests(config, values))
    for key, value in service.stack_outputs.items():
        pulumi.export(key, value)
    return service
