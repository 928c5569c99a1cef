"""Offline schema validation of rendered manifests.

* Built-in kinds: ``kubernetes-validate`` in strict mode (unknown fields are errors) for each requested
  Kubernetes version.
* Custom resources (PrometheusRule, ServiceMonitor, PodMonitor, ScaledObject): the cloudcoil pydantic
  models generated from the operators' CRDs. Those models ignore unknown fields, so a field the CRD does
  not know is caught by comparing the document with the model's round trip.
* The prometheus-adapter config (a ConfigMap's ``config.yaml``): its shape is checked here.

The validators are imported lazily: they come with the ``infra`` extra.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from kvstack.infra.manifests.monitoring import (
    ADAPTER_ANNOTATION,
    ADAPTER_ANNOTATION_VALUE,
    ADAPTER_CONFIG_KEY,
)

KUBE_VERSIONS = ("1.30", "1.34")

CRD_MODELS: dict[tuple[str, str], tuple[str, str]] = {
    ("monitoring.coreos.com/v1", "PrometheusRule"): (
        "cloudcoil.models.prometheus_operator.v1",
        "PrometheusRule",
    ),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): (
        "cloudcoil.models.prometheus_operator.v1",
        "ServiceMonitor",
    ),
    ("monitoring.coreos.com/v1", "PodMonitor"): ("cloudcoil.models.prometheus_operator.v1", "PodMonitor"),
    ("keda.sh/v1alpha1", "ScaledObject"): ("cloudcoil.models.keda.v1alpha1", "ScaledObject"),
}


@dataclass(frozen=True)
class SchemaProblem:
    """One schema failure: which object, against what, and why."""

    target: str  # Kind/name
    against: str  # "kubernetes 1.30", "CRD ServiceMonitor", "prometheus-adapter config"
    message: str

    def __str__(self) -> str:
        return f"{self.target} ({self.against}): {self.message}"


def describe(body: dict[str, Any]) -> str:
    return f"{body.get('kind', '?')}/{(body.get('metadata') or {}).get('name', '?')}"


def _path(parts: Iterable[Any]) -> str:
    return ".".join(str(p) for p in parts) or "<root>"


FIRST_ERROR_ONLY_NOTE = (
    "kubernetes-validate stops at the first error of each object (per Kubernetes version): fix the "
    "ones shown and lint again to see any further errors of the same objects"
)
"""Its only API, ``kubernetes_validate.validate``, raises the first error; it has no iter/all-errors call."""


def is_builtin_problem(problem: SchemaProblem) -> bool:
    """A problem found by kubernetes-validate (the ones capped at one per object and version)."""
    return problem.against.startswith("kubernetes ")


def validate_builtin(body: dict[str, Any], version: str) -> list[str]:
    """Problems of a built-in kind against Kubernetes ``version`` (strict): at most one, see
    :data:`FIRST_ERROR_ONLY_NOTE`. Custom resources (pydantic) and the adapter config report every error."""
    kv = importlib.import_module("kubernetes_validate")
    try:
        kv.validate(body, version, strict=True)
    except kv.ValidationError as exc:
        return [f"{_path(exc.path)}: {exc.message}"]
    except kv.SchemaNotFoundError as exc:
        return [str(exc.message)]
    return []


def _differences(original: Any, dumped: Any, path: tuple[Any, ...] = ()) -> list[str]:
    if isinstance(original, dict) and isinstance(dumped, dict):
        out: list[str] = []
        for key, value in original.items():
            if key not in dumped:
                out.append(f"{_path((*path, key))}: field not in the CRD schema")
            else:
                out += _differences(value, dumped[key], (*path, key))
        return out
    if isinstance(original, list) and isinstance(dumped, list):
        if len(original) != len(dumped):
            return [f"{_path(path)}: list changed length in validation"]
        return [
            d
            for i, (a, b) in enumerate(zip(original, dumped, strict=True))
            for d in _differences(a, b, (*path, i))
        ]
    if original != dumped:
        return [f"{_path(path)}: {original!r} is read as {dumped!r}"]
    return []


def validate_custom(body: dict[str, Any]) -> list[str]:
    """Problems of a custom resource against its CRD's pydantic model (unknown fields included)."""
    key = (str(body.get("apiVersion")), str(body.get("kind")))
    module_name, class_name = CRD_MODELS[key]
    model = getattr(importlib.import_module(module_name), class_name)
    pydantic = importlib.import_module("pydantic")
    try:
        obj = model.model_validate(body)
    except pydantic.ValidationError as exc:
        return [f"{_path(e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False)]
    dumped = json.loads(json.dumps(obj.model_dump(mode="json", by_alias=True, exclude_unset=True)))
    return _differences(json.loads(json.dumps(body)), dumped)


ADAPTER_RULE_KEYS = {"seriesQuery", "seriesFilters", "resources", "name", "metricsQuery"}
ADAPTER_TOP_KEYS = {"rules", "resourceRules", "externalRules"}


def validate_adapter_config(document: Any) -> list[str]:
    """The prometheus-adapter config document (``rules:``) as the adapter parses it."""
    if not isinstance(document, dict):
        return ["config.yaml must be a mapping with rules:"]
    problems = [f"{k}: unknown top-level key" for k in document if k not in ADAPTER_TOP_KEYS]
    rules = document.get("rules")
    if not isinstance(rules, list) or not rules:
        return [*problems, "rules: must be a non-empty list"]
    for i, rule in enumerate(rules):
        where = f"rules[{i}]"
        if not isinstance(rule, dict):
            problems.append(f"{where}: must be a mapping")
            continue
        problems += [f"{where}.{k}: unknown key" for k in rule if k not in ADAPTER_RULE_KEYS]
        if not isinstance(rule.get("seriesQuery"), str) or not rule["seriesQuery"]:
            problems.append(f"{where}.seriesQuery: required string")
        resources = rule.get("resources")
        if not isinstance(resources, dict) or not (
            isinstance(resources.get("overrides"), dict) or isinstance(resources.get("template"), str)
        ):
            problems.append(f"{where}.resources: needs overrides or template")
        else:
            for label, target in (resources.get("overrides") or {}).items():
                if not isinstance(target, dict) or not isinstance(target.get("resource"), str):
                    problems.append(f"{where}.resources.overrides.{label}: needs resource: <name>")
        name = rule.get("name")
        if name is not None and (not isinstance(name, dict) or not isinstance(name.get("as", ""), str)):
            problems.append(f"{where}.name: must be {{matches, as}}")
        query = rule.get("metricsQuery")
        if not isinstance(query, str):
            problems.append(f"{where}.metricsQuery: required string")
        else:
            for field in ("<<.Series>>", "<<.LabelMatchers>>", "<<.GroupBy>>"):
                if field not in query:
                    problems.append(f"{where}.metricsQuery: must use {field}")
    return problems


def adapter_document(body: dict[str, Any]) -> Any:
    return yaml.safe_load(body["data"][ADAPTER_CONFIG_KEY])


def is_adapter_configmap(body: dict[str, Any]) -> bool:
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return body.get("kind") == "ConfigMap" and annotations.get(ADAPTER_ANNOTATION) == ADAPTER_ANNOTATION_VALUE


def validate(body: dict[str, Any], versions: Iterable[str] = KUBE_VERSIONS) -> list[SchemaProblem]:
    """Every schema problem of one manifest."""
    target = describe(body)
    key = (str(body.get("apiVersion")), str(body.get("kind")))
    if key in CRD_MODELS:
        return [SchemaProblem(target, f"CRD {key[1]}", m) for m in validate_custom(body)]
    problems = [
        SchemaProblem(target, f"kubernetes {version}", m)
        for version in versions
        for m in validate_builtin(body, version)
    ]
    if is_adapter_configmap(body):
        try:
            document = adapter_document(body)
        except (KeyError, yaml.YAMLError) as exc:
            problems.append(
                SchemaProblem(target, "prometheus-adapter config", f"config.yaml unreadable: {exc}")
            )
        else:
            problems += [
                SchemaProblem(target, "prometheus-adapter config", m)
                for m in validate_adapter_config(document)
            ]
    return problems


def validate_all(
    bodies: Iterable[dict[str, Any]], versions: Iterable[str] = KUBE_VERSIONS
) -> list[SchemaProblem]:
    versions = tuple(versions)
    return [p for body in bodies for p in validate(body, versions)]
