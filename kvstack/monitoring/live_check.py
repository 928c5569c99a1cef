"""Evaluate shipped expressions on a live Prometheus: each must parse, return data where it should, and
every series it reads must exist.

Used by the live proof against the local real-vLLM stack; pointed at a production Prometheus it answers
"which of our panels and alerts are blind here?". Needs ``prometheus-api-client`` (``monitoring`` extra).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from kvstack.contract.kube import NAMESPACE_LABEL, POD_LABEL
from kvstack.contract.metrics import REQUESTS_RUNNING
from kvstack.monitoring.alerts.autoscaling import workload_pod_regex
from kvstack.monitoring.shipped import EvaluationContext, ShippedExpression, reads_router

# Matchers that select an outcome whose series only exists once it happened: the instrumentator creates
# http_requests_total{status="5xx"} on the first 5xx. A selector with one of these is checked without it
# (the rest of the selector must still match), and the matcher's value format is checked offline.
MAY_BE_EMPTY_MATCHERS: Mapping[str, str] = {
    'status="5xx"': "prometheus-fastapi-instrumentator creates a status series on its first such response",
    # only while the engines do not serve /v1/completions/render: with --enable-scale-out it may never come
    'outcome="missing_tokens"': "vllm-router creates an outcome series on its first such decision",
}


class PromQLClient(Protocol):
    """What we use of ``prometheus_api_client.PrometheusConnect``."""

    def custom_query(self, query: str, params: dict[str, Any] | None = None) -> Any: ...


@dataclass(frozen=True)
class Problem:
    origin: str
    query: str
    reason: str

    def __str__(self) -> str:
        return f"{self.origin}: {self.reason}\n    {self.query}"


def _without_may_be_empty(selector_text: str) -> str:
    text = selector_text
    for matcher in MAY_BE_EMPTY_MATCHERS:
        text = text.replace("," + matcher, "").replace(matcher + ",", "").replace(matcher, "")
    return text.replace("{}", "")


def _values(result: Sequence[Mapping[str, Any]]) -> list[float]:
    values: list[float] = []
    for sample in result:
        if "value" in sample:
            values.append(float(sample["value"][1]))
        for _, v in sample.get("values", []):
            values.append(float(v))
    return values


class LiveChecker:
    """Runs the checks with a cache of selector results (many expressions share selectors).

    ``router``: whether the Prometheus scrapes a vllm-router. Without one, what reads the router tier
    (:func:`kvstack.monitoring.shipped.reads_router`) must still evaluate, but need not return data.
    """

    def __init__(self, client: PromQLClient, *, router: bool = False) -> None:
        self.client = client
        self.router = router
        self._selector_cache: dict[str, bool] = {}

    def query(self, promql: str) -> list[dict[str, Any]]:
        result = self.client.custom_query(query=promql)
        if not isinstance(result, list):
            raise TypeError(f"unexpected result type {type(result).__name__} for {promql!r}")
        return result

    def _selector_has_series(self, selector_text: str) -> bool:
        if selector_text not in self._selector_cache:
            self._selector_cache[selector_text] = bool(self.query(selector_text))
        return self._selector_cache[selector_text]

    def check(self, expression: ShippedExpression) -> list[Problem]:
        problems: list[Problem] = []
        try:
            result = self.query(expression.promql)
        except Exception as exc:  # the client raises its own exception type for bad_data
            return [Problem(expression.origin, expression.promql, f"does not evaluate: {exc}")]
        excused = not self.router and bool(expression.router_selectors)
        if expression.needs_data and not excused:
            if not result:
                problems.append(Problem(expression.origin, expression.promql, "returned no data"))
            elif not any(math.isfinite(v) for v in _values(result)):
                problems.append(Problem(expression.origin, expression.promql, "returned only NaN/Inf"))
        for selector in expression.checked_selectors:
            if not self.router and reads_router(selector):
                continue
            text = _without_may_be_empty(selector.text)
            if not self._selector_has_series(text):
                problems.append(Problem(expression.origin, text, f"selector {text} matches no series"))
        return problems

    def check_all(self, expressions: Iterable[ShippedExpression]) -> list[Problem]:
        return [p for e in expressions for p in self.check(e)]


def discover_context(
    client: PromQLClient, *, prometheus_address: str, rate_interval: str = "1m"
) -> EvaluationContext:
    """Fill the adapter's pod, KEDA's workload and Grafana's ``$job`` from the live vLLM series.

    Requires the ``namespace`` and ``pod`` labels a Kubernetes scrape attaches (the local stack's
    Prometheus attaches them too): the adapter and KEDA select on them.
    """
    series = client.custom_query(query=REQUESTS_RUNNING)
    if not series:
        raise LookupError(f"no {REQUESTS_RUNNING} series: is vLLM being scraped?")
    labels = series[0]["metric"]
    missing = [k for k in (NAMESPACE_LABEL, POD_LABEL, "job") if k not in labels]
    if missing:
        raise LookupError(f"vLLM series lack the labels {missing}; the scrape must attach them: {labels}")
    pod = str(labels[POD_LABEL])
    app_label = pod.rsplit("-", 1)[0]
    if not re.fullmatch(workload_pod_regex(app_label), pod):
        raise LookupError(f"pod {pod!r} is not named like a workload's pod")
    jobs = sorted({str(s["metric"]["job"]) for s in series})
    return replace(
        EvaluationContext(),
        namespace=str(labels[NAMESPACE_LABEL]),
        pod=pod,
        app_label=app_label,
        prometheus_address=prometheus_address,
        rate_interval=rate_interval,
        variables={"job": "(" + "|".join(jobs) + ")"},  # what Grafana's "All" sends
    )
